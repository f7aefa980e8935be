"""Issue 28's zeroth-order, PZOBO, SOBA and TTSA claims: their reference quantities against independent truth, the
mutation helper, the directions check, and the zeroth-order mutation the bias claim must NOT fail on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.claims import _common, hong2020, nesterov_spokoiny2017 as ns, sow2022
from blobench.core.errors import BlobenchError
from blobench.estimators.zeroth_order import ES, PZOBO, ZerothOrderBase
from blobench.gate.mutations import source_patch
from blobench.measure.outer import outer_loop


def test_smoothed_gradient_matches_a_tensor_gauss_hermite_grid():
    """The 1-D shortcut (flat-tail's Phi is a sum of one-variable terms) against the full 2-D Gaussian cubature."""
    p = harness.problem("flat-tail", **ns._FLAT)
    x = p.x0() + torch.tensor([0.3, -0.2], dtype=torch.float64)
    t, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    for mu in (0.05, 0.4):
        grid = torch.tensor([[ti, tj] for ti in t for tj in t], dtype=torch.float64)
        weights = torch.tensor([wi * wj for wi in w for wj in w], dtype=torch.float64)
        full = weights @ p.hypergradient(x + mu * grid)  # flat-tail's grad Phi acts row-wise on a stack of points
        assert torch.allclose(ns.smoothed_gradient(p, x, mu), full, rtol=0, atol=1e-14)
    b = ns.smoothed_gradient(p, x, 0.05) - p.hypergradient(x)
    assert 0 < float(b.norm()) < 1e-3  # a true mu^2 term: nonzero third derivative at this x


def test_direction_moment_catches_mis_scaled_directions():
    p = harness.problem("flat-tail", **ns._FLAT)
    e = harness.estimator("es", directions=4)
    m, tol = ns.direction_moment(p, e, 250000, 99)
    assert m <= tol < 0.01
    for name, _, patch in ns.MUTATIONS:
        if name.startswith("zo-directions"):
            with patch():
                assert ns.direction_moment(p, e, 250000, 99)[0] > 10 * tol, name


def test_source_patch_edits_real_code_and_restores():
    before = ES.estimate
    patch = source_patch(ES, "estimate", ("(coef.unsqueeze(1) * u).mean(0)", "(coef.unsqueeze(1) * u).sum(0)"))
    p = harness.problem("flat-tail", **ns._FLAT)
    e = harness.estimator("es", directions=3, inner_steps=10)
    g = harness.estimate(p, e, p.x0(), n=1).grads[0]
    with patch():
        assert ES.estimate is not before
        assert torch.allclose(harness.estimate(p, e, p.x0(), n=1).grads[0], 3 * g, rtol=1e-12, atol=0)
    assert ES.estimate is before
    with pytest.raises(BlobenchError, match="occurs 0 times"):
        with source_patch(ES, "estimate", ("no such text", "x"))():
            pass


def test_pzobo_mutations_restore():
    """Every mutation of sow2022 changes PZOBO or the perturbed solves while applied and leaves nothing behind
    (dagreou2022's, hong2020's and nesterov_spokoiny2017's are checked in test_solvers_claims.py)."""
    def snap():
        return (PZOBO.estimate, ZerothOrderBase.directions, sow2022.zo.solve_at_points)

    before = snap()
    for name, _, patch in sow2022.MUTATIONS:
        with patch():
            assert snap() != before, name
        assert snap() == before, name


def test_reference_descent_is_the_outer_loop_with_exact_hypergradients():
    """The level's reference (the claim's own gamma_t) reproduces the shared outer loop run with the exact estimator."""
    p = harness.problem("flat-tail", **_common.FLAT_TAIL)
    tr = outer_loop(p, harness.estimator("exact"), 50, _common.OUTER_LR, "power", power=_common.OUTER_POWER)
    ref = _common.reference_descent(p, p.x0(), 50, lambda t, x: p.hypergradient(x))
    np.testing.assert_allclose(tr.grad_norm_sq, ref, rtol=1e-10)


def test_ttsa_reference_is_ttsa_with_an_exact_inner_solve():
    """TTSA's predicted trajectory equals TTSA itself when its y-steps solve the inner problem exactly (many steps of
    GD at step 1/L on flat-tail's quadratic inner problem), with the same seed: same truncation draws, same steps."""
    p = harness.problem("flat-tail", **_common.FLAT_TAIL)
    e = harness.estimator("ttsa", inner_lr=0.5, decay=0.0, inner_steps=80, solver_steps=5, solver_lr=0.5)
    tr = outer_loop(p, e, 40, _common.OUTER_LR, "power", seed=3, power=_common.OUTER_POWER)
    ref = hong2020._ttsa_reference(p, e, 40, 3)
    np.testing.assert_allclose(tr.grad_norm_sq, ref, rtol=1e-9)


def test_forward_difference_holds_the_bias_claim():
    """Issue 28: forward differences have the mean grad Phi_mu of the central scheme, so the smoothing-bias claim must
    hold on them (the old per-draw rule failed them). Their value noise is four times larger, which the variance
    claim's constant catches (the mutation suite runs that: es-forward-difference)."""
    patch = dict((m[0], m[2]) for m in ns.MUTATIONS)["es-forward-difference"]
    with patch():
        assert ns.ZOSmoothingBias().evaluate("ci", control=False).holds
