"""The complexity metric (blobench.measure.complexity): counted calls to a target accuracy, bounds, exponents, figure."""
import math

import numpy as np
import pandas as pd
import pytest

from blobench import harness
from blobench.measure.complexity import (calls_by_kind, calls_to_target, complexity, fit_exponent, plot_complexity,
                                upper_bound_order)
from blobench.measure.metrics import CellContext
from blobench.measure.outer import outer_loop


def test_fit_exponent_recovers_power_laws():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    f = fit_exponent(x, 3.0 * x**1.5)
    assert f["slope"] == pytest.approx(1.5, abs=1e-12) and f["hi"] - f["lo"] < 1e-9
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):  # the 95% t-interval covers the true slope about 95% of the time
        y = x**0.7 * np.exp(0.1 * rng.standard_normal(x.size))
        g = fit_exponent(x, y)
        hits += g["lo"] <= 0.7 <= g["hi"]
    assert 0.88 <= hits / 200 <= 0.99
    assert math.isnan(fit_exponent([1, 2], [1, 2])["slope"])


def test_calls_by_kind():
    c = calls_by_kind({"grad_x_f": 2, "grad_y_f": 2, "grad_y_g": 10, "hvp": 5, "jvp": 2, "exact": 0})
    assert c == {"Gc_f": 4.0, "Gc_g": 10.0, "JV": 2.0, "HV": 5.0, "total": 21.0}


def _ctx(problem, name, **params):
    return CellContext(problem, name, params, seed=0)


@pytest.mark.parametrize("name", ["aid-cg", "accbio"])
def test_complexity_rows_are_measured_and_respect_the_lower_bound(name):
    p = harness.problem("lb-scsc", dim=60, mu_x=0.2, mu_y=0.5)
    eps = [1e-2, 1e-4]
    rows = complexity(_ctx(p, name, warm_start=True), eps=eps, budget_scale=2.0)
    df = pd.DataFrame(rows)
    meas = df[df.quantity == "calls_to_eps"].set_index("eps")
    lb = df[df.quantity == "lower_bound_calls"].set_index("eps")["value"]
    assert (meas["reached"] == 1).all()
    for e in eps:
        r = meas.loc[e]
        assert r["value"] == r["calls_Gc_f"] + r["calls_Gc_g"] + r["calls_JV"] + r["calls_HV"]
        assert r["value"] >= lb.loc[e] == p.calls_lower_bound(e)
        assert r["upper_bound_order"] > 0
    # the count is the oracle layer's: rerun the same loop and check the reported iterate reaches eps, the one
    # before it does not
    est = harness.estimator(name, warm_start=True, inner_steps=int(meas.iloc[0]["inner_steps_used"]),
                            solver_steps=int(meas.iloc[0]["solver_steps_used"]))
    it = int(meas.loc[1e-4, "iterations"])
    tr = outer_loop(p, est, it, 1 / p.constants["L_phi"], momentum="auto")
    assert tr.value_gap[-1] <= 1e-4 < tr.value_gap[-2]
    assert sum(tr.calls[k][-1] for k in tr.calls) == meas.loc[1e-4, "value"]


def test_accbio_uses_outer_momentum_and_beats_aid_bio():
    p = harness.problem("lb-scsc", dim=60, mu_x=0.2, mu_y=0.5)
    a = complexity(_ctx(p, "accbio"), eps=[1e-4], budget_scale=2.0)[0]["value"]
    a_none = complexity(_ctx(p, "accbio"), eps=[1e-4], budget_scale=2.0, momentum="none")[0]["value"]
    b = complexity(_ctx(p, "aid-cg", warm_start=True), eps=[1e-4], budget_scale=2.0)[0]["value"]
    assert a < a_none and a < b


def test_upper_bound_orders():
    c = {"kappa_x": 100.0, "kappa_y": 16.0, "mu_x": 0.1, "L_phi": 10.0}
    assert upper_bound_order("accbio", {}, c, 1e-2, "value_gap") == pytest.approx(10 * 4 * math.log(100))
    assert upper_bound_order("aid-cg", {"inner_solver": "gd"}, c, 1e-2, "value_gap") == pytest.approx(100 * 16 * math.log(100))
    assert math.isnan(upper_bound_order("aid-cg", {}, c, 1e-2, "grad_norm_sq"))


def test_nonconvex_problem_uses_grad_norm_and_no_lower_bound():
    p = harness.problem("quadratic", dim=4, kappa=4)
    L_phi = float(np.linalg.eigvalsh(p.hessian_phi().numpy()).max())
    rows = complexity(_ctx(p, "aid-cg", warm_start=True), eps=[1e-3], max_steps=300, outer_lr=1 / L_phi)
    assert rows[0]["criterion"] == "grad_norm_sq" and rows[0]["reached"] == 1.0
    assert not any(r["quantity"] == "lower_bound_calls" for r in rows)


def test_bad_eps_is_a_parameter_error():
    p = harness.problem("lb-scsc", dim=10)
    with pytest.raises(harness.ParameterError, match="eps"):
        complexity(_ctx(p, "aid-cg"), eps=[0.0])


def test_plot_complexity_writes_png_and_svg(tmp_path):
    rows = []
    for est, ex in (("aid-cg", 2.0), ("accbio", 1.0)):
        for k in (2.0, 4.0, 8.0):
            base = {"metric": "complexity", "estimator": est, "kappa_y": k, "eps": 1e-4}
            rows.append({**base, "quantity": "calls_to_eps", "value": 10 * k**ex, "upper_bound_order": k**ex})
            rows.append({**base, "quantity": "lower_bound_calls", "value": 3 * k})
    paths = plot_complexity(pd.DataFrame(rows), str(tmp_path / "complexity"))
    assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "svg"]
    assert all((tmp_path / f"complexity.{e}").stat().st_size > 1000 for e in ("png", "svg"))


def test_calls_table_and_calls_vs_eps_for_an_unswept_slice(tmp_path):
    """A slice without a condition-number sweep: the table gives calls (iterations) per eps, 'not reached' for a
    censored row and each cell's own divergence flag; the figure fits the exponent in 1/eps per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blobench.measure.complexity import calls_table, draw_calls_vs_eps

    rows = []
    for est, calls, div in (("saba", {1e-1: 100.0, 1e-2: 1000.0, 1e-3: 10000.0}, 0.0), ("soba", {1e-1: 50.0}, 1.0),
                             ("srba", {1e-1: 10.0, 1e-2: 100.0 * 10 ** 0.5}, 0.0)):
        for e in (1e-1, 1e-2, 1e-3):
            base = {"metric": "complexity", "estimator": est, "eps": e, "quantity": "calls_to_eps"}
            rows.append({**base, "value": calls[e], "reached": 1.0, "iterations": calls[e] / 10} if e in calls
                        else {**base, "value": float("nan"), "reached": 0.0})
        rows.append({"metric": "complexity", "estimator": est, "quantity": "diverged", "value": div})
    df = pd.DataFrame(rows)
    t = calls_table(df).set_index("estimator")
    assert list(t.columns) == ["eps=0.1", "eps=0.01", "eps=0.001", "diverged"]
    assert t.loc["saba", "eps=0.001"] == "1e+04 (1000 it)" and t.loc["saba", "diverged"] == "no"
    assert t.loc["soba", "eps=0.1"] == "50 (5 it)" and t.loc["soba", "eps=0.01"] == "not reached"
    assert t.loc["soba", "diverged"] == "yes"
    fig, ax = plt.subplots()
    draw_calls_vs_eps(ax, df)
    labels = [line.get_label() for line in ax.get_lines()]
    plt.close(fig)
    assert labels == ["saba: slope 1.00 [1.00, 1.00]", "soba (one target reached)", "srba: slope 1.50 (2 targets)"]


# ----------------------------------------------------------------------------- stochastic stopping rules

def _stoch_quadratic():
    return harness.problem("quadratic", dim=4, kappa=2, mu=1.0, rho=1.0, noise=1.0, seed=0)


def _stocbio_at(eps, batch=None):
    """stocbio-sample-complexity's schedule at eps: batch ceil(2/eps), Q = D = ceil(kappa log(1/eps) / 2)."""
    Q = math.ceil(0.5 * 2 * math.log(1 / eps))
    return harness.estimator("stocbio", inner_steps=Q, solver_steps=Q, batch_size=batch or math.ceil(2 / eps))


def test_running_mean_is_the_seed_averaged_running_average_of_the_exact_grad_norm():
    p, eps, steps = _stoch_quadratic(), 0.04, 100
    est = _stocbio_at(eps)
    r = calls_to_target(p, est, [eps], "grad_norm_sq", max_steps=steps, outer_lr=1 / 2.2, seed=1,
                        stopping="running-mean", seeds=2)
    # recomputed from the outer loop's exact ||grad Phi(x_k)||^2 (problem.hypergradient), seeds 1*2+0 and 1*2+1
    trs = [outer_loop(p, est, steps, 1 / 2.2, seed=s) for s in (2, 3)]
    m = np.mean([tr.grad_norm_sq[:steps] for tr in trs], 0)
    avg = np.cumsum(m) / np.arange(1, steps + 1)
    hit = r["by_eps"][eps]
    K = hit["averaged_iterates"]
    assert avg[K - 1] <= eps < avg[K - 2] and (avg[: K - 1] > eps).all()
    assert hit["iteration"] == K - 1 and r["final"] == avg[-1]
    calls = {k: trs[0].calls[k][K - 1] for k in trs[0].calls}
    assert all(calls[k] == trs[1].calls[k][K - 1] for k in calls)  # fixed schedule: the same counts on each seed
    assert hit["total"] == sum(calls.values()) == (K - 1) * (2 * est.p["solver_steps"] + 3)
    # the seed-mean rule: first k with the mean over seeds (no running average) <= eps
    s = calls_to_target(p, est, [eps], "grad_norm_sq", max_steps=steps, outer_lr=1 / 2.2, seed=1,
                        stopping="seed-mean", seeds=2)
    assert s["by_eps"][eps]["iteration"] == int(np.nonzero(np.mean([tr.grad_norm_sq for tr in trs], 0) <= eps)[0][0])


def test_running_mean_calls_grow_as_eps_shrinks_where_the_first_iterate_stops_in_the_transient():
    p, grid = _stoch_quadratic(), [0.16, 0.08, 0.04, 0.02]
    first, running = [], []
    for e in grid:
        kw = dict(max_steps=math.ceil(2.5 / e), outer_lr=1 / 2.2)
        f = calls_to_target(p, _stocbio_at(e), [e], "grad_norm_sq", **kw)["by_eps"][e]
        r = calls_to_target(p, _stocbio_at(e), [e], "grad_norm_sq", stopping="running-mean", seeds=2, **kw)["by_eps"][e]
        assert f is not None and r is not None
        first.append(f)
        running.append(r)
    tot = [r["total"] for r in running]
    assert all(a < b for a, b in zip(tot, tot[1:]))
    # K = Theta(1/eps) (Ji et al. 2021, Cor. 2): averaged iterates' exponent in 1/eps near 1
    fit = fit_exponent([1 / e for e in grid], [r["averaged_iterates"] for r in running])
    assert 0.7 <= fit["slope"] <= 1.4, fit
    # the first-iterate rule stops at the first iterate below eps, inside the deterministic transient
    assert all(f["iteration"] <= 5 for f in first)
    assert running[-1]["iteration"] >= 10 * first[-1]["iteration"]
    assert all(f["total"] < r["total"] for f, r in zip(first, running))


def test_fixed_batch_never_reaches_in_running_mean_but_a_lucky_iterate_does():
    """Negative control: the batch held at 12 (not growing with 1/eps) leaves a variance floor above eps = 0.02;
    the running-mean rule reports it unreached, the first-iterate rule is fooled by one lucky iterate."""
    p, e = _stoch_quadratic(), 0.02
    kw = dict(max_steps=math.ceil(2.5 / e), outer_lr=1 / 2.2)
    est = _stocbio_at(e, batch=12)
    f = calls_to_target(p, est, [e], "grad_norm_sq", **kw)
    r = calls_to_target(p, est, [e], "grad_norm_sq", stopping="running-mean", seeds=2, **kw)
    assert f["by_eps"][e] is not None
    assert r["by_eps"][e] is None and r["final"] > 1.5 * e
    # the same budget with the growing batch does reach it
    assert calls_to_target(p, _stocbio_at(e), [e], "grad_norm_sq", stopping="running-mean", seeds=2,
                           **kw)["by_eps"][e] is not None


def test_stochastic_rules_reduce_to_the_default_on_a_deterministic_problem():
    p = harness.problem("quadratic", dim=4, kappa=4)
    L_phi = float(np.linalg.eigvalsh(p.hessian_phi().numpy()).max())
    est = harness.estimator("aid-cg", warm_start=True)
    eps = [1e-2, 1e-4]
    d = calls_to_target(p, est, eps, max_steps=200, outer_lr=1 / L_phi)
    s = calls_to_target(p, est, eps, max_steps=200, outer_lr=1 / L_phi, stopping="seed-mean", seeds=3)
    assert s["stopping"] == "seed-mean" and "stopping" not in d
    for e in eps:
        assert d["by_eps"][e] == s["by_eps"][e]  # every seed runs the same trajectory: the same iterate and calls
    r = calls_to_target(p, est, eps, max_steps=200, outer_lr=1 / L_phi, stopping="running-mean", seeds=2)
    assert r["by_eps"][1e-2]["iteration"] > d["by_eps"][1e-2]["iteration"]  # an average lags its last term
    # and decays only as 1/K even when the iterates converge linearly: >= ||grad Phi(x_0)||^2 / 200 after 200
    g0 = p.hypergradient(p.x0())
    assert r["by_eps"][1e-4] is None and r["final"] >= float(g0 @ g0) / 200 > 1e-4


def test_stopping_parameters_are_checked():
    p = _stoch_quadratic()
    est = _stocbio_at(0.1)
    with pytest.raises(harness.ParameterError, match="seeds=1"):
        calls_to_target(p, est, [0.1], max_steps=5, stopping="first-iterate", seeds=2)
    with pytest.raises(harness.ParameterError, match="stopping"):
        calls_to_target(p, est, [0.1], max_steps=5, stopping="best")
    with pytest.raises(harness.ParameterError, match="seeds"):
        calls_to_target(p, est, [0.1], max_steps=5, stopping="running-mean", seeds=0)
    assert complexity.params["stopping"].default == "first-iterate" and complexity.params["seeds"].default == 1


def test_complexity_metric_running_mean_rows():
    p = _stoch_quadratic()
    ctx = _ctx(p, "stocbio", batch_size=50, inner_steps=4, solver_steps=4)
    rows = complexity(ctx, eps=[0.04], max_steps=100, outer_lr=1 / 2.2, budget_rule="fixed", stopping="running-mean",
                      seeds=2)
    r = rows[0]
    assert r["quantity"] == "calls_to_eps" and r["reached"] == 1.0 and r["stopping"] == "running-mean"
    assert r["seeds"] == 2.0 and r["batch_size_used"] == 50.0 and r["iterations"] == r["averaged_iterates"] - 1
    assert r["value"] == r["calls_Gc_f"] + r["calls_Gc_g"] + r["calls_JV"] + r["calls_HV"]
    default = complexity(ctx, eps=[0.04], max_steps=100, outer_lr=1 / 2.2, budget_rule="fixed")
    assert not any("stopping" in row or "batch_size_used" in row for row in default)
    assert default[0]["iterations"] < r["iterations"]


@pytest.mark.parametrize("name", ["stocbio", "vrbo"])
def test_running_mean_runs_is_the_sequential_running_mean_rule_vectorised(name):
    """running_mean_runs (seeds vmapped, early stop at min eps) gives the sequential rule's K and counted calls for
    every eps, and its running average to rounding; VRBO checks a state with a step counter (k, read by int())."""
    from blobench.measure.complexity import running_mean_runs

    n, steps, lr = 36, 40, 1 / 2.2
    eps = [0.4, 0.25, 0.16] if name == "stocbio" else [0.4, 0.16, 0.08]
    p = harness.problem("quadratic", dim=4, kappa=2.0, mu=1.0, rho=1.0, noise=1.0, seed=0, n_samples=n)
    est = (_stocbio_at(0.16, batch=13) if name == "stocbio"
           else harness.estimator("vrbo", inner_steps=3, solver_steps=2, batch_size=3))
    seq = calls_to_target(p, est, eps, "grad_norm_sq", max_steps=steps, outer_lr=lr, seed=1, stopping="running-mean",
                          seeds=2)
    vec = running_mean_runs(p, est, eps, steps, lr, 2, seed=1)
    assert all(seq["by_eps"][e] is not None for e in eps)
    for e in eps:
        assert vec["by_eps"][e] == seq["by_eps"][e], e
    K = seq["by_eps"][min(eps)]["averaged_iterates"]
    assert vec["iterations_run"] == K - 1 < steps - 1  # stopped at the smallest eps's K
    full = running_mean_runs(p, est, eps, steps, lr, 2, seed=1, stop_at_target=False)
    assert full["iterations_run"] == steps - 1 and full["by_eps"] == vec["by_eps"]
    assert full["final"] == pytest.approx(seq["final"], rel=1e-9, abs=0)
    miss = running_mean_runs(p, est, [1e-6], 5, lr, 2, seed=1, stop_at_target=False)
    assert miss["by_eps"][1e-6] is None and miss["iterations_run"] == 4
    # out of reach: the sum so far over max_steps already exceeds the target at x_0, so no estimate is made
    out = running_mean_runs(p, est, [1e-6], 5, lr, 2, seed=1)
    assert out["by_eps"][1e-6] is None and out["iterations_run"] == 0
    # a target reached late: the out-of-reach stop must not fire before K
    late = [seq["final"] * 1.0001]
    assert running_mean_runs(p, est, late, steps, lr, 2, seed=1)["by_eps"] == \
        calls_to_target(p, est, late, "grad_norm_sq", max_steps=steps, outer_lr=lr, seed=1, stopping="running-mean",
                        seeds=2)["by_eps"]
