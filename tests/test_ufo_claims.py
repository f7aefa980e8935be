"""UFO-BLO claims: their mechanisms, controls and mutations, cheaply (the claims gate runs each claim once at ci size)."""
import contextlib
import time

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.claims import ufo_blo
from blobench.measure.metrics import mean_test


def test_claims_registered_and_mutations_name_them():
    for c in ("ufo-unbiased", "ufo-second-moment", "ufo-fo-stalls", "ufo-constant-memory", "ufo-expected-cost",
              "ufo-fewshot-table"):
        assert c in harness.claims()
    muts = ufo_blo.MUTATIONS
    names = {m[0] for m in muts}
    assert {"ufo-correction-x0.8", "ufo-double-exact-work", "ufo-exact-branch-drops-hessian"} <= names
    for name, caught_by, patch in muts:
        assert caught_by and all(c in harness.claims() for c in caught_by), name
        assert isinstance(patch(), contextlib.AbstractContextManager)


def _ufo_mean_rejected(n=20000, seed=11):
    """ufo-unbiased's rule on its first case (counterexample at x = 3, q = 0.3)."""
    p = harness.problem("ufo-counterexample")
    x = torch.tensor([3.0], dtype=torch.float64)
    out = harness.estimate(p, harness.estimator("ufo", q=0.3), x, seed=seed, n=n)
    return bool(mean_test(out.grads.numpy(), p.hypergradient(x).numpy(), alpha=0.01)["reject"])


def test_correction_x08_mutation_is_caught_by_the_unbiasedness_rule():
    assert not _ufo_mean_rejected()
    with ufo_blo.scaled_correction(0.8):
        assert _ufo_mean_rejected()


def test_fo_stall_runs_through_the_outer_loop_and_the_hessian_drop_mutation_turns_maml_into_fo():
    """stall_run drives the registered estimators through blobench.measure.outer.outer_loop: with the exact branch's Hessian
    factors dropped, maml follows FO's trajectory exactly (same tasks), so the claim's maml < 0.25 rule fails."""
    p = harness.problem("ufo-counterexample", **ufo_blo.STALL_FAMILY["ci"][2])
    stall = np.sqrt(2 * p.p["D"])
    fo = ufo_blo.stall_run(p, harness.estimator("fo"), 60, seed=3)
    ex = ufo_blo.stall_run(p, harness.estimator("maml"), 60, seed=3)
    assert ex["abs_grad"] / stall < 0.05 and fo["abs_grad"] / stall > 0.5
    assert fo["calls"] > 0 and ex["calls"] > fo["calls"]  # counted by the outer loop's oracles
    with ufo_blo.exact_branch_drops_hessian():
        broken = ufo_blo.stall_run(p, harness.estimator("maml"), 60, seed=3)
    assert broken["x_avg"] == fo["x_avg"]


def test_fo_stall_control_is_not_fo():
    """The control (UFO with half its correction) uses its own coins and exact branches: it differs from FO and from
    UFO, and sits between them at theta_FO in expectation (E = g_FO + (g - g_FO)/2)."""
    p = harness.problem("ufo-counterexample", **ufo_blo.STALL_FAMILY["ci"][0])
    x = p.fo_fixed_point()
    est = {k: harness.estimate(p, harness.estimator(v[0], **v[1]), x, seed=0, n=4000).grads[:, 0]
           for k, v in {"fo": ("fo", {}), "half": ("ufo", {"q": 0.5, "correction_scale": 0.5})}.items()}
    assert not torch.equal(est["fo"], est["half"])
    _, g, gfo = p.task_gradients(float(x[0]))
    want = float(np.mean(gfo + 0.5 * (g - gfo)))
    se = float(est["half"].std()) / np.sqrt(4000)
    assert abs(float(est["half"].mean()) - want) < 4 * se and abs(want) > 10 * se


def test_cost_counts_are_measured_and_fit_the_theory():
    f = ufo_blo.cost_counts("constant", [2, 4, 6], [0.2, 1.0], 400)
    assert 0.4 <= f["c"] <= 0.6 and f["max_abs_z_residual"] < 4 and abs(f["a"] - 2) < 0.3
    s = ufo_blo.cost_counts("stored", [2, 4, 6], [0.2, 1.0], 400)  # stored trajectory: no r^2 term
    assert abs(s["c"]) < 0.1
    with ufo_blo.double_exact_work():  # the mutation keeps the counts: only seconds can see it
        d = ufo_blo.cost_counts("constant", [2, 4, 6], [0.2, 1.0], 400)
    assert d["rows"] == f["rows"]


def test_cut_oracles_split_a_draw_into_pieces_that_add_up():
    """cost_seconds' pieces: one per oracle call plus one, adding up to the whole draw; the counts are unchanged."""
    p = ufo_blo._cost_problem(3)
    e = harness.estimator("ufo", q=1.0, memory="constant")
    nz = {k: v[0] for k, v in ufo_blo.draw_noise(p, e, 1, 0).items()}
    o = ufo_blo.CutOracles(p)
    c0, w0 = time.thread_time(), time.perf_counter()
    pieces = ufo_blo.timed_pieces(o, lambda: e.estimate(o, p.x0(), nz))
    c1, w1 = time.thread_time(), time.perf_counter()
    calls = sum(o.counts.values())
    assert calls == 3 + 2 + 2 * 3 + 3  # r = 3 grad_y_g, grad_x_f + grad_y_f, r HV + r JV, r(r-1)/2 recomputing grad_y_g
    assert pieces.shape == (calls + 1, 2) and (pieces >= 0).all()
    assert pieces[:, 0].sum() <= c1 - c0 and pieces[:, 1].sum() <= w1 - w0
    assert o.cuts is None


def test_cost_seconds_see_the_double_work_mutation_under_load():
    """The claim's seconds rule (CPU-time c in [0.6, 1.6] x half a grad_y_g call) holds, and fails under
    ufo-double-exact-work (c doubles while the counts stay the same), with a busy process started alongside by the load
    test (issue 23; ``python -m blobench.claims.ufo_blo --load-test 20`` is the 20-run version); the busy process is
    gone afterwards."""
    import os

    lines = []
    s = ufo_blo.load_test(runs=1, size="ci", loaders=1, out=lines.append)
    assert s["clean_pass"] == 1 and s["control_fail"] == 1, lines
    assert 0.6 <= s["clean_ratio_min_max"][0] <= 1.6 < s["control_ratio_min_max"][0], s
    assert len(lines) == 3 and s["loader_pids"]
    for pid in s["loader_pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_load_test_cli_refuses_bad_counts(capsys):
    with pytest.raises(SystemExit) as e:
        ufo_blo.main(["--load-test", "0"])
    assert e.value.code == 2 and "--load-test must be >= 1" in capsys.readouterr().err


def test_second_moment_helper_matches_identity_and_control_breaks_it():
    p = harness.problem("ufo-counterexample")
    x = torch.tensor([3.0], dtype=torch.float64)
    good = ufo_blo._second_moment(p, x, 0.3, 8000, 1.0)
    bad = ufo_blo._second_moment(p, x, 0.3, 8000, 0.5)
    assert good["lo"] <= good["predicted"] <= good["hi"]
    assert not (bad["lo"] <= bad["predicted"] <= bad["hi"])


def test_fewshot_control_is_a_new_arm_that_breaks_the_correction():
    assert ufo_blo.FEWSHOT_CONTROL not in ufo_blo.FEWSHOT_METHODS.values()
    name, kw = ufo_blo.FEWSHOT_CONTROL
    assert name == "ufo" and kw["correction_scale"] == 0.5
    # its paired-difference helper and power figure: known numbers
    rows = {"a": {"c": [0.7, 0.8, 0.9]}, "b": {"c": [0.6, 0.8, 0.7]}}
    d = ufo_blo._paired(rows, "a", "b", "c")
    assert abs(d["mean"] - 0.1) < 1e-12 and d["ci"][0] < 0.1 < d["ci"][1]
    from scipy import stats
    sd = np.std([0.1, 0.0, 0.2], ddof=1)
    assert abs(d["detectable_80"] - (stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * sd / np.sqrt(3)) < 1e-12


def test_fewshot_positive_control_setting_and_rule():
    """The positive control starts at theta_FO, where its score -|M'|/sqrt(2D) is exactly -1 (FO's stall), and scores
    theta* 0; the table's rule (shared by the claim and its positive control) holds when UFO tracks exact and FO lags,
    and fails when UFO tracks FO (what ufo-correction-without-inverse-q does: the adaptive q then stays at its floor)."""
    p, start, score = ufo_blo._positive_setup()
    assert abs(score(start) + 1) < 1e-8 and abs(score(p.stationary_points()[0])) < 1e-8
    assert set(ufo_blo.FEWSHOT_POSITIVE["methods"]) == {"FO", ufo_blo.ADAPTIVE, "exact (MAML)"}

    def tab(fo, ufo, ex):
        return {"rows": {k: {"acc_iters": v, "acc_compute": v} for k, v in
                         (("FO", fo), (ufo_blo.ADAPTIVE, ufo), ("exact (MAML)", ex))}}

    fo, ex = [-0.9, -1.1, -0.7], [-0.03, -0.01, -0.07]
    assert ufo_blo._table_rule(tab(fo, [-0.06, -0.01, -0.04], ex))[:2] == (True, True)
    assert ufo_blo._table_rule(tab(fo, [-0.9, -1.1, -0.66], ex))[0] is False
