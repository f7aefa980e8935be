"""UFO-BLO claims: each holds at ci size and its negative control fails (slow ones behind @slow)."""
import numpy as np
import pytest
import torch

import harness
from claims.ufo_blo import counterexample_sgd, expected_cost_fit


def test_claims_registered():
    for c in ("ufo-unbiased", "ufo-second-moment", "ufo-fo-stalls", "ufo-constant-memory", "ufo-expected-cost",
              "ufo-fewshot-table"):
        assert c in harness.claims()


def test_sgd_on_counterexample_fo_stalls_ufo_and_exact_do_not():
    p = harness.problem("ufo-counterexample")
    stall = np.sqrt(0.12)
    starts = np.array([-10.0, 0.0, 30.0])
    th = counterexample_sgd(p, ["fo", "ufo", "exact", "ufo-nocorrection"], np.tile(starts, 4), 3000, q=0.1, seed=1)
    g = np.abs(p.task_gradients(th)[1].mean(-1)).reshape(4, 3)
    assert np.all(np.abs(g[0] - stall) < 0.25 * stall)      # FO stalls at sqrt(2D)
    assert np.all(np.abs(g[3] - stall) < 0.25 * stall)      # control: UFO without correction = FO
    assert np.median(g[1]) < stall / 4                       # UFO gets well below
    assert np.median(g[2]) < stall / 10                      # exact converges


def test_vectorised_sgd_uses_the_estimators_numbers():
    """The claim's per-task g and g_FO equal the oracle-based maml / fo estimators."""
    p = harness.problem("ufo-counterexample")
    for x in (-7.0, 2.0, 25.0):
        _, g, gfo = p.task_gradients(x)
        for i in range(2):
            nz = {"task/a": torch.tensor(p.a[i]), "task/b": torch.tensor(p.b[i])}
            xt = torch.tensor([x], dtype=torch.float64)
            gm = harness.estimator("maml").estimate(harness.Oracles(p), xt, nz).grad
            gf = harness.estimator("fo").estimate(harness.Oracles(p), xt, nz).grad
            assert abs(float(gm[0]) - g[i]) < 1e-12 and abs(float(gf[0]) - gfo[i]) < 1e-12


def test_expected_cost_fit_and_control():
    f = expected_cost_fit("constant", [4, 8, 16], [0.2, 1.0], 2000)
    assert 0.4 <= f["c"] <= 0.6 and f["max_abs_z_residual"] < 4
    s = expected_cost_fit("stored", [4, 8, 16], [0.2, 1.0], 2000)
    assert not (0.4 <= s["c"] <= 0.6)


@pytest.mark.parametrize("name", ["ufo-second-moment"])
def test_statistical_claims_hold_and_controls_fail(name):
    r = harness.check([name])[0]
    assert r.outcome == "holds" and not r.control_holds and r.passed, r.measured


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ufo-unbiased", "ufo-fo-stalls", "ufo-constant-memory", "ufo-expected-cost",
                                  "ufo-fewshot-table"])
def test_slow_claims_hold_and_controls_fail(name):
    r = harness.check([name])[0]
    assert r.outcome == "holds" and not r.control_holds and r.passed, r.measured


def test_fewshot_control_is_fo_with_ufo_coins():
    """The few-shot claim's control (UFO with correction_scale = 0) meta-trains exactly like FO: same tasks, same
    steps, so its accuracy gain over FO is exactly zero and the claim's rule (gain > 0) must fail on it."""
    pytest.importorskip("sklearn")
    from harness.outer import meta_train

    p = harness.problem("digits-fewshot", ways=3, hidden=4, tasks=32, unroll_steps=2)
    fo = meta_train(p, harness.estimator("fo"), 3, 4, 3e-3, seed=5)
    ctl = meta_train(p, harness.estimator("ufo", q=0.5, correction_scale=0.0), 3, 4, 3e-3, seed=5)
    ufo = meta_train(p, harness.estimator("ufo", q=0.5), 3, 4, 3e-3, seed=5)
    assert torch.equal(fo.x, ctl.x)
    assert not torch.equal(fo.x, ufo.x)
