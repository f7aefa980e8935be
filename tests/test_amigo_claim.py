"""blobench/claims/amigo.py: the warm-start claim's mechanism, its mutation, and the rule it applies."""
from __future__ import annotations

from blobench import harness
from blobench.claims import amigo
from blobench.estimators.single_loop import AmIGO
from blobench.core.registry import CLAIMS


def test_claim_registered_and_mutation_restores():
    assert "amigo-warm-start-linear" in CLAIMS.names()
    orig = AmIGO.estimate
    (name, caught_by, patch), = amigo.MUTATIONS
    assert set(caught_by) <= set(CLAIMS.names())
    with patch():
        assert AmIGO.estimate is not orig
    assert AmIGO.estimate is orig


def test_mutation_drops_the_state_and_is_caught():
    """Under the mutation the warm-started estimator behaves exactly like warm_start = false (the control) and the
    claim's rule fails; without it the rule holds (the gate runs the claim itself once)."""
    p = harness.problem("quadratic", dim=5, kappa=4, rho=1.0)
    x = p.x0() + 0.3
    o = harness.Oracles(p)
    warm, cold = (harness.estimator("amigo", inner_steps=2, solver_steps=3, warm_start=w) for w in (True, False))
    st = warm.estimate(o, x, {}, None).state
    g_warm = warm.estimate(o, x + 0.1, {}, st).grad
    g_cold = cold.estimate(o, x + 0.1, {}, None).grad
    assert not bool((g_warm == g_cold).all())  # the state matters
    claim = CLAIMS.get("amigo-warm-start-linear")()
    with amigo.MUTATIONS[0][2]():
        assert bool((warm.estimate(o, x + 0.1, {}, st).grad == g_cold).all())
        v = claim.evaluate("ci", control=False)
    assert not v.holds and v.evidence["final_grad_norm_sq"] > 1e-3
