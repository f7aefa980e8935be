"""The SOBA/SABA (dagreou2022), TTSA (hong2020), F2SA (kwon2023) and ES (nesterov_spokoiny2017) claim modules: their
mutation lists, the shared fitting helper (claims/_common.py), and (slow) every mutation caught by its claims."""
from __future__ import annotations

import numpy as np
import pytest

from blobench import harness
from blobench.claims import _common, dagreou2022, hong2020, kwon2023, nesterov_spokoiny2017
from blobench.core.registry import CLAIMS
from blobench.estimators.first_order import F2SA
from blobench.estimators.single_loop import SOBA, TTSA
from blobench.estimators.variance_reduced import SABA
from blobench.estimators.stocbio import BSA
from blobench.estimators.zeroth_order import ES, ZerothOrderBase
import blobench.measure.outer as outer_mod

MUTATIONS = dagreou2022.MUTATIONS + hong2020.MUTATIONS + kwon2023.MUTATIONS + nesterov_spokoiny2017.MUTATIONS


def test_fit_power_recovers_exponent_and_interval():
    xs = [1, 2, 4, 8, 16]
    a, lo, hi = _common.fit_power(xs, [3.0 * x ** -1.5 for x in xs])
    assert a == pytest.approx(-1.5) and lo == pytest.approx(-1.5) and hi == pytest.approx(-1.5)
    rng = np.random.default_rng(0)
    a, lo, hi = _common.fit_power(xs, [x ** 2 * np.exp(0.1 * rng.standard_normal()) for x in xs])
    assert lo < a < hi and lo < 2 < hi


def _attrs() -> tuple:
    """Everything a mutation of these modules may patch."""
    return (SABA.update_memory, F2SA.use_outer_in_y, ES.central_scale, ES.estimate, ZerothOrderBase.directions,
            SOBA.steps, SOBA.estimate, TTSA.track_y, TTSA.estimate, BSA.solve, outer_mod.step_size)


def test_mutations_are_well_formed_and_restore():
    names = set(CLAIMS.names())
    before = _attrs()
    assert len(MUTATIONS) >= 4
    for name, caught_by, patch in MUTATIONS:
        assert isinstance(name, str) and caught_by and set(caught_by) <= names, (name, caught_by)
        with patch():
            assert _attrs() != before, name
        assert _attrs() == before, name
    assert "steps" not in vars(SOBA)  # the inherited method is not left shadowed


@pytest.mark.slow
@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(mutation):
    name, caught_by, patch = mutation
    with patch():
        results = harness.check(list(caught_by))
    assert all(not r.passed for r in results), [(r.name, r.measured) for r in results]
