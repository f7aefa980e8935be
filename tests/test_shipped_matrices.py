"""The shipped matrices expand to the pinned number of cells, per experiment and per device.

EXPECTED is the one place to update when a matrix gains or loses a slice (the coordinator keeps it in step
with matrices/*.toml at merge). A change in expansion (a sweep, seed list, device list, "extends" merge or
filter that yields more or fewer cells than the TOML says) fails here even if every cell still validates.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from blobench.engine.matrix import load_matrix

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {'smoke': {'cells': 8,
           'devices': {'cpu': 8},
           'experiments': {'quadratic-budget': 3, 'quadratic-matched-budgets': 2, 'quadratic-noisy-bias': 3}},
 'default': {'cells': 156,
             'devices': {'cpu': 156},
             'experiments': {'quadratic-error-vs-inner-steps': 6,
                             'quadratic-error-vs-solver-steps': 2,
                             'quadratic-stochastic-bias-variance': 10,
                             'logreg-l2-error-vs-inner-steps': 3,
                             'hyper-cleaning-convergence': 2,
                             'maml-meta-quadratic-alpha-scaled': 2,
                             'maml-meta-quadratic-alpha-fixed': 6,
                             'anil-fewshot-convergence': 4,
                             'ji-error-vs-solver-steps': 3,
                             'ji-itd-truncated-error': 1,
                             'ji-stocbio-bias-variance': 9,
                             'ji-bio-convergence': 2,
                             'ji-stocbio-convergence': 1,
                             'quadratic-memory-vs-inner-steps': 3,
                             'ufo-memory-vs-unroll-steps': 2,
                             'quadratic-time-vs-inner-steps': 2,
                             'quadratic-batched-time-vs-inner-steps': 1,
                             'ufo-counterexample-bias-variance': 4,
                             'ufo-meta-linreg-bias-variance': 3,
                             'ufo-counterexample-sgd': 3,
                             'ufo-memory-vs-unroll': 2,
                             'ufo-digits-fewshot-bias-variance': 3,
                             'lb-scsc-complexity': 6,
                             'lb-scsc-minimax-complexity': 3,
                             'jl-scsc-complexity': 6,
                             'stocbio-quadratic-sample-complexity': 3,
                             'solvers-quadratic-convergence': 14,
                             'solvers-quadratic-zeroth-order-convergence': 2,
                             'solvers-finite-sum-quadratic-convergence': 8,
                             'solvers-logreg-l2-convergence': 13,
                             'solvers-logreg-l2-zeroth-order-convergence': 2,
                             'solvers-quadratic-complexity': 17,
                             'solvers-finite-sum-quadratic-sample-complexity': 8}},
 'full': {'cells': 5640,
          'devices': {'cpu': 5640},
          'experiments': {'quadratic-error-vs-inner-steps': 360,
                          'quadratic-error-vs-solver-steps': 180,
                          'quadratic-stochastic-bias-variance': 100,
                          'logreg-l2-error-vs-inner-steps': 80,
                          'hyper-cleaning-convergence': 20,
                          'maml-meta-quadratic-alpha-scaled': 20,
                          'maml-meta-quadratic-alpha-fixed': 60,
                          'anil-fewshot-convergence': 40,
                          'ji-error-vs-solver-steps': 30,
                          'ji-itd-truncated-error': 10,
                          'ji-stocbio-bias-variance': 90,
                          'ji-bio-convergence': 20,
                          'ji-stocbio-convergence': 10,
                          'quadratic-memory-vs-inner-steps': 30,
                          'ufo-memory-vs-unroll-steps': 20,
                          'quadratic-time-vs-inner-steps': 20,
                          'quadratic-batched-time-vs-inner-steps': 10,
                          'ufo-counterexample-bias-variance': 40,
                          'ufo-meta-linreg-bias-variance': 30,
                          'ufo-counterexample-sgd': 30,
                          'ufo-memory-vs-unroll': 20,
                          'ufo-digits-fewshot-bias-variance': 30,
                          'lb-scsc-complexity': 60,
                          'lb-scsc-minimax-complexity': 30,
                          'jl-scsc-complexity': 60,
                          'stocbio-quadratic-sample-complexity': 30,
                          'solvers-quadratic-convergence': 140,
                          'solvers-quadratic-zeroth-order-convergence': 20,
                          'solvers-finite-sum-quadratic-convergence': 80,
                          'solvers-logreg-l2-convergence': 130,
                          'solvers-logreg-l2-zeroth-order-convergence': 20,
                          'solvers-quadratic-complexity': 170,
                          'solvers-finite-sum-quadratic-sample-complexity': 80,
                          'quadratic-matched-budgets': 450,
                          'quadratic-stochastic-bias-variance-large': 2940,
                          'hyper-cleaning-error-vs-solver-steps': 180}},
 'gpu': {'cells': 40,
         'devices': {'cpu': 20, 'cuda': 20},
         'experiments': {'quadratic-large-error-vs-inner-steps': 24,
                         'quadratic-large-stochastic-bias-variance': 16}},
 # issue 25 (real data; expands without the data files: their digests in the cell keys are then '-')
 'real': {'cells': 45, 'devices': {'cpu': 45},
          'experiments': {'datacleaning-mnist-soba': 3, 'datacleaning-mnist-fsla': 3, 'datacleaning-mnist-mrbo': 3,
                          'datacleaning-mnist-sustain': 3, 'datacleaning-mnist-ttsa': 3, 'datacleaning-mnist-srba': 3,
                          'datacleaning-mnist-stocbio': 3, 'datacleaning-mnist-amigo': 3, 'datacleaning-mnist-bsa': 3,
                          'datacleaning-mnist-vrbo': 3, 'datacleaning-fashion-soba': 3,
                          'datacleaning-fashion-stocbio': 3, 'multilogreg-letter': 9}},
 'real-small': {'cells': 30, 'devices': {'cpu': 30},
                'experiments': {'datacleaning-mnist-soba': 2, 'datacleaning-mnist-fsla': 2, 'datacleaning-mnist-mrbo': 2,
                                'datacleaning-mnist-sustain': 2, 'datacleaning-mnist-ttsa': 2,
                                'datacleaning-mnist-srba': 2, 'datacleaning-mnist-stocbio': 2,
                                'datacleaning-mnist-amigo': 2, 'datacleaning-mnist-bsa': 2, 'datacleaning-mnist-vrbo': 2,
                                'datacleaning-fashion-soba': 2, 'datacleaning-fashion-stocbio': 2,
                                'multilogreg-letter': 6}},
 'real-seed1': {'cells': 15, 'devices': {'cpu': 15},
                'experiments': {'datacleaning-mnist-soba': 1, 'datacleaning-mnist-fsla': 1, 'datacleaning-mnist-mrbo': 1,
                                'datacleaning-mnist-sustain': 1, 'datacleaning-mnist-ttsa': 1,
                                'datacleaning-mnist-srba': 1, 'datacleaning-mnist-stocbio': 1,
                                'datacleaning-mnist-amigo': 1, 'datacleaning-mnist-bsa': 1, 'datacleaning-mnist-vrbo': 1,
                                'datacleaning-fashion-soba': 1, 'datacleaning-fashion-stocbio': 1,
                                'multilogreg-letter': 3}},
 'real-seed1-rest': {'cells': 7, 'devices': {'cpu': 7},
                     'experiments': {'datacleaning-mnist-bsa': 1, 'datacleaning-mnist-vrbo': 1,
                                     'datacleaning-fashion-soba': 1, 'datacleaning-fashion-stocbio': 1,
                                     'multilogreg-letter': 3}},
 'real-slice': {'cells': 4, 'devices': {'cpu': 4}, 'experiments': {'datacleaning-mnist-slice': 4}},
 'real-scaling': {'cells': 4, 'devices': {'cpu': 4},
                  'experiments': {'datacleaning-mnist-soba': 1, 'datacleaning-mnist-fsla': 1,
                                  'datacleaning-mnist-ttsa': 1, 'datacleaning-mnist-srba': 1}}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_matrix_cell_counts(name):
    m = load_matrix(ROOT / "matrices" / f"{name}.toml")
    want = EXPECTED[name]
    assert dict(Counter(c.experiment for c in m.cells)) == want["experiments"]
    assert dict(Counter(c.device for c in m.cells)) == want["devices"]
    assert len(m.cells) == want["cells"] == sum(want["experiments"].values())
    keys = [c.key() for c in m.cells]
    assert len(set(keys)) == len(keys)  # no cell twice


def test_every_shipped_matrix_is_pinned():
    assert {p.stem for p in (ROOT / "matrices").glob("*.toml")} == set(EXPECTED)


def test_real_seed1_cells_are_real_cells():
    """matrices/real-seed1.toml is real.toml's seed-1 slice key for key (a later real.toml run into the same run
    folder reuses its cells)."""
    real = {c.key() for c in load_matrix(ROOT / "matrices" / "real.toml").cells}
    seed1 = {c.key() for c in load_matrix(ROOT / "matrices" / "real-seed1.toml").cells}
    assert seed1 <= real and len(seed1) == 15


def test_real_scaling_is_a_subset_of_real_seed_one():
    """docs/data.md's scaling check runs real.toml's own cells (the same keys), so its rows compare with the full run."""
    real = {c.key() for c in load_matrix(ROOT / "matrices" / "real.toml").cells if c.seed == 1}
    scaling = {c.key() for c in load_matrix(ROOT / "matrices" / "real-scaling.toml").cells}
    assert len(scaling) == 4 and scaling <= real
