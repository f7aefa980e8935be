"""Fitted rates with confidence intervals and theoretical bounds (blobench.measure.metrics: fit_rate, RateFit,
theoretical_rate) and the rate columns of error_vs_budget."""
import math

import numpy as np
import pytest

from blobench import harness
from blobench.measure.metrics import CellContext, RateFit, error_vs_budget, fit_loglinear, fit_rate


def test_fit_rate_recovers_a_known_rate_with_an_interval_that_covers_it():
    rng = np.random.default_rng(0)
    b = np.arange(5, 60, 5)
    covered = 0
    for _ in range(200):  # log-normal noise: the 95% t-interval of the slope covers the truth ~95% of the time
        e = 3.0 * 0.8**b * np.exp(0.05 * rng.standard_normal(len(b)))
        f = fit_rate(b, e)
        covered += f.rate_lo <= 0.8 <= f.rate_hi
    assert 180 <= covered <= 200
    exact = fit_rate(b, 3.0 * 0.8**b)
    assert exact.rate == pytest.approx(0.8, rel=1e-12) and exact.rate_hi - exact.rate_lo < 1e-10


def test_polynomial_prefactor_fit():
    D = np.arange(10, 80, 10)
    e = (1 + 2 * D) * 0.9**D  # Prop. 2's (c1 + c2 D) q^D
    plain, pre = fit_rate(D, e), fit_rate(D, e, poly_prefactor=True)
    assert plain.rate > 0.905  # the prefactor biases the plain fit upwards
    assert abs(pre.rate - 0.9) < 0.002 < plain.rate - 0.9  # (1 + 2D) is only close to C D^p: not exact, but close


def test_violation_only_when_the_whole_interval_is_above_the_bound():
    assert RateFit(0.95, 0.93, 0.97, 5, 0.9).rate_violation
    assert not RateFit(0.95, 0.89, 0.97, 5, 0.9).rate_violation
    assert not RateFit(0.95, 0.93, 0.97, 5).rate_violation  # no bound, no flag
    assert not RateFit(0.95, math.nan, math.nan, 2, 0.9).rate_violation  # no interval: too few points to flag
    assert not fit_rate([1, 2, 3], [0.5, 0.25, 0.125], bound=0.5).rate_violation  # an exactly met bound
    cols = RateFit(0.95, 0.93, 0.97, 5, 0.9).columns("x")
    assert list(cols) == ["name", "rate", "rate_lo", "rate_hi", "rate_bound", "rate_violation"]


def test_loglog_exponent():
    K = np.array([10, 20, 40, 80, 160])
    s, lo, hi, n = fit_loglinear(K, 5.0 * K**-1.2, log_x=True)
    assert s == pytest.approx(-1.2) and lo <= -1.2 <= hi and n == 5


def test_error_vs_budget_rows_carry_rate_columns_and_flag_violations():
    p = harness.problem("quadratic", dim=5, kappa=10)
    rows = error_vs_budget(CellContext(p, "itd", {}), budget="inner_steps", values=[5, 10, 20, 30, 40])
    (fit,) = [r for r in rows if r["quantity"] == "fitted_rate"]
    (th,) = [r for r in rows if r["quantity"] == "theoretical_rate"]
    assert th["value"] == pytest.approx(0.9) and fit["rate_bound"] == pytest.approx(0.9)
    assert fit["rate_lo"] <= fit["rate"] <= fit["rate_hi"] and fit["lo"] <= fit["value"] <= fit["hi"]
    # ITD's D q^D prefactor: the whole-range log-linear fit (the row's value) lies above 1 - alpha mu, while
    # the asymptotic tail fit (the tested rate) does not: no flag
    assert fit["lo"] > 0.9 and fit["rate_violation"] is False and fit["rate_lo"] <= 0.9
    assert fit["rate_points"] == 4 and fit["rate_method"].startswith("tail fit")
    rows = error_vs_budget(CellContext(p, "aid-cg", {"inner_steps": 200}), budget="solver_steps", values=[1, 2, 3, 4, 5])
    (fit,) = [r for r in rows if r["quantity"] == "fitted_rate"]
    assert fit["rate_bound"] == pytest.approx((math.sqrt(10) - 1) / (math.sqrt(10) + 1))
    assert fit["rate_violation"] is False  # CG beats its bound
    rows = error_vs_budget(CellContext(p, "fo", {}), budget="inner_steps", values=[1, 2, 3])
    (fit,) = [r for r in rows if r["quantity"] == "fitted_rate"]
    assert math.isnan(fit["rate_bound"]) and fit["rate_violation"] is False
    assert not [r for r in rows if r["quantity"] == "theoretical_rate"]


# ---------------------------------------------------------------------------- the asymptotic (tail) rate
# errors of quadratic(dim=20, kappa=100), aid-cg(solver_steps=50), inner_steps 1..128 (the default matrix's cell
# whose whole-range fit, 0.9901 [0.99, 0.9901] > 0.99, was the default report's only flag: a false alarm)
D_DEFAULT = [1, 2, 4, 8, 16, 32, 64, 128]
AIDCG_K100 = [2.811e-02, 2.785e-02, 2.733e-02, 2.630e-02, 2.434e-02, 2.078e-02, 1.509e-02, 7.933e-03]


def test_tail_window_is_the_upper_half_of_the_budgets_with_at_least_four_points():
    from blobench.measure.rates import tail_window

    b, _ = tail_window(D_DEFAULT, AIDCG_K100)
    assert b.tolist() == [16, 32, 64, 128]
    b, _ = tail_window(list(range(10, 160, 10)), [0.9**d for d in range(10, 160, 10)])
    assert b.tolist() == list(range(80, 160, 10))
    b, _ = tail_window([1, 2, 3, 4, 5], [1, 0.5, 1e-14, 0.1, 0.05])  # the round-off point is dropped first
    assert b.tolist() == [1, 2, 4, 5]


def test_asymptotic_rate_no_false_alarm_on_the_default_aid_cg_cell():
    from blobench.measure.rates import asymptotic_rate

    whole = fit_rate(D_DEFAULT, AIDCG_K100, bound=0.99)
    assert whole.rate_violation  # the old rule: the whole-range fit flags it
    tail = asymptotic_rate(D_DEFAULT, AIDCG_K100, bound=0.99)
    assert not tail.rate_violation and tail.rate_lo <= 0.99
    assert tail.rate == pytest.approx(0.99, abs=2e-4)


def test_asymptotic_rate_flags_a_real_violation_and_not_a_prefactor():
    from blobench.measure.rates import asymptotic_rate

    D = np.arange(10, 80, 10)
    bad = asymptotic_rate(D, 3.0 * 0.95**D, bound=0.9)  # e.g. a wrongly declared mu: q = 0.95 > 0.9
    assert bad.rate == pytest.approx(0.95, rel=1e-9) and bad.rate_violation
    pre = asymptotic_rate(D, (1 + 2 * D) * 0.9**D, bound=0.9)  # Prop. 2's (c1 + c2 D) q^D: not a violation
    assert not pre.rate_violation and abs(pre.rate - 0.9) < 1e-3
    assert asymptotic_rate(D, 3.0 * 0.9**D, bound=0.9).rate_violation is False  # an exactly met bound
    # a fast transient at small budgets (0.5^D) does not pull the rate: the tail sees the slow mode
    mixed = asymptotic_rate(D_DEFAULT, [0.5**d + 1e-3 * 0.97**d for d in D_DEFAULT], bound=0.97)
    assert mixed.rate == pytest.approx(0.97, abs=1e-3) and not mixed.rate_violation
    few = asymptotic_rate([1, 2, 3], [1.0, 0.95, 0.9025], bound=0.9)  # 3 points: exact fit, no interval, no flag
    assert math.isnan(few.rate_lo) and not few.rate_violation
    assert math.isnan(asymptotic_rate([1], [0.5]).rate)
