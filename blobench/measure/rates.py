"""The measured geometric rate that is tested against a theorem: one rule, shared by the metric
``error_vs_budget`` (its ``rate*`` columns), the report's flag and the claims.

What the theorems bound is an asymptotic quantity. Ji, Yang & Liang 2021 (ICML, Prop. 2 and Lemma 5) bound
ITD's and AID's hypergradient error by ``(c1 + c2 D) q^D`` with ``q = 1 - alpha mu``; the CG bound
(Nocedal & Wright 2006, eq. 5.36) and the Neumann remainder are ``C q^N``. Such a bound says nothing about
the local decay at a small budget: there the faster eigen-directions and the transients of the first steps
dominate, and a signed sum of geometric terms may decay locally faster or slower than its slowest term. A
log-linear fit over every budget mixes that pre-asymptotic part in, and a polynomial prefactor ``D^p``
biases it upwards over any finite range. Both made false alarms (quadratic(kappa=100), aid-cg: 0.9901 >
0.99 from the plain fit; itd flagged by a whole-range prefactor fit).

The rule (:func:`asymptotic_rate`), chosen once:

1. **Tail.** Keep the budgets ``D >= D0``, ``D0`` the median of the distinct positive budgets (the upper
   half of the sweep), widened downwards to the last :data:`MIN_TAIL` budgets when the upper half has fewer.
   Errors at or below ``floor`` (round-off) and non-finite ones are dropped first.
2. **Model.** Least squares of ``log e = a + p log D + D log q`` on the tail: the form of every bound the
   report draws (``p = 1`` for ITD's ``c2 D q^D``, ``p = 0`` for AID / CG / Neumann), with ``p`` free so a
   prefactor does not bias ``q``.
3. **Interval.** The ``level`` t-interval of ``log q`` (``n - 3`` degrees of freedom), exponentiated. With
   exactly 3 tail points the fit is exact and has no interval; with 2, ``q`` is the two-point ratio.
4. **Flag.** A rate violates its bound only when its whole interval lies above the bound
   (:attr:`RateFit.rate_violation`); without an interval nothing is flagged (too
   few budgets to test: say so, never guess).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

#: fewest budgets the tail keeps: 4 points give the 3-parameter model one residual degree of freedom
MIN_TAIL = 4
#: how the rule is named in tables and rows (``rate_method``)
METHOD = "tail fit C D^p q^D on D >= D0 (D0: median budget)"


@dataclass
class RateFit:
    """A fitted rate with its confidence interval and, where a theory gives one, the bound it must respect.

    Columns as rows and claims carry them (the report flags ``rate_violation`` red):
    ``rate`` the fitted value, ``rate_lo``/``rate_hi`` its ``level`` confidence interval
    (t-interval of the least-squares slope, scipy.stats.linregress; NaN with fewer than 3 points),
    ``rate_bound`` the theoretical upper bound (NaN: none), ``rate_violation`` True iff the whole
    interval lies above the bound (``rate_lo > rate_bound``); with no interval (too few points) nothing is
    flagged: a point estimate alone cannot show that the bound is exceeded (blobench.measure.rates, step 4).
    """

    rate: float
    rate_lo: float
    rate_hi: float
    points: int
    rate_bound: float = float("nan")

    @property
    def rate_violation(self) -> bool:
        if not math.isfinite(self.rate_bound) or not math.isfinite(self.rate):
            return False
        if not math.isfinite(self.rate_lo):
            return False
        return bool(self.rate_lo > self.rate_bound + 1e-9 * abs(self.rate_bound))  # rounding of an exactly met bound is no violation

    def with_bound(self, bound: float | None) -> "RateFit":
        return RateFit(self.rate, self.rate_lo, self.rate_hi, self.points, float("nan") if bound is None else float(bound))

    def columns(self, name: str | None = None) -> dict[str, Any]:
        """The documented columns (with ``name`` first when given: a claim's list of rates)."""
        return {**({"name": name} if name else {}), "rate": self.rate, "rate_lo": self.rate_lo, "rate_hi": self.rate_hi, "rate_bound": self.rate_bound,
                "rate_violation": self.rate_violation}

    def text(self, digits: int = 4) -> str:
        ci = f" [{self.rate_lo:.{digits}f}, {self.rate_hi:.{digits}f}]" if math.isfinite(self.rate_lo) else ""
        bd = f" vs bound {self.rate_bound:.{digits}f}" if math.isfinite(self.rate_bound) else ""
        return f"{self.rate:.{digits}f}{ci}{bd}" + (" RATE VIOLATION" if self.rate_violation else "")


def tail_window(budgets: Any, errors: Any, floor: float = 1e-13, min_tail: int = MIN_TAIL) -> tuple[np.ndarray, np.ndarray]:
    """The (budgets, errors) of the tail the rate is fitted on (rule steps 1), sorted by budget."""
    b = np.asarray(budgets, float)
    e = np.asarray(errors, float)
    keep = np.isfinite(b) & np.isfinite(e) & (e > floor) & (b > 0)
    b, e = b[keep], e[keep]
    order = np.argsort(b, kind="stable")
    b, e = b[order], e[order]
    distinct = np.unique(b)
    if distinct.size == 0:
        return b, e
    d0 = float(np.median(distinct))
    if int((distinct >= d0).sum()) < min_tail:
        d0 = float(distinct[max(0, distinct.size - min_tail)])
    tail = b >= d0
    return b[tail], e[tail]


def asymptotic_rate(budgets: Any, errors: Any, bound: float | None = None, level: float = 0.95,
                    floor: float = 1e-13, min_tail: int = MIN_TAIL) -> RateFit:
    """The asymptotic geometric rate q of ``error ~ C D^p q^D`` with its ``level`` interval, by the rule of
    this module's docstring; ``bound`` (the theorem's q) makes ``rate_violation`` meaningful.

    Returns a :class:`RateFit` (``points``: the tail size; NaN rate with fewer
    than 2 tail points).
    """
    b, e = tail_window(budgets, errors, floor, min_tail)
    n = int(b.size)
    nan = float("nan")
    if n < 2 or np.unique(b).size < 2:
        return RateFit(nan, nan, nan, n).with_bound(bound)
    ly = np.log(e)
    if n == 2 or np.unique(b).size == 2:
        s = float((ly[-1] - ly[0]) / (b[-1] - b[0]))
        return RateFit(math.exp(s), nan, nan, n).with_bound(bound)
    X = np.column_stack([np.ones(n), np.log(b), b])
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    s = float(coef[2])
    if n < 4:
        return RateFit(math.exp(s), nan, nan, n).with_bound(bound)
    res = ly - X @ coef
    cov = float(res @ res) / (n - 3) * np.linalg.pinv(X.T @ X)
    h = float(stats.t.ppf(0.5 + level / 2, df=n - 3)) * math.sqrt(max(float(cov[2, 2]), 0.0))
    # a floor of a few ulps of log q: an exactly geometric error has zero residuals, and its interval should
    # still cover the rounding of the fit itself
    h = max(h, 1e-12 * max(1.0, abs(s)))
    return RateFit(math.exp(s), math.exp(s - h), math.exp(s + h), n).with_bound(bound)
