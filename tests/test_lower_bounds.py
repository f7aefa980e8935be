"""Ground truth and chain structure of the lower-bound hard instances lb-scsc and lb-csc (Ji & Liang 2023).

Exact hypergradient vs central finite differences of value(); inner solution is the argmin; the
stationary point is stationary and the minimum; spectra of A within [mu_y, L]; the zero-respecting
span structure (each counted oracle call extends the chain depth by at most one); the exact span gap
against a brute-force restricted minimisation; bad parameters rejected.
"""
import contextlib

import numpy as np
import pytest
import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.problems.lb_scsc import last_nonzero


def central_fd(fn, x, h=1e-5):
    g = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = h
        g[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return g


CASES = [("lb-scsc", dict(dim=12, mu_x=0.1, mu_y=0.25)), ("lb-scsc", dict(dim=9, mu_x=0.01, mu_y=0.5, L=2.0, b=3.0)),
         ("lb-csc", dict(dim=10, mu_y=0.2)), ("lb-csc", dict(dim=7, mu_y=1.0, L=1.0)),
         ("lb-scsc-minimax", dict(dim=12, mu_x=0.1, mu_y=0.25)), ("lb-scsc-minimax", dict(dim=9, mu_y=0.5, L=2.0, form="bilevel"))]


def rand_x(p, seed=0):
    return torch.randn(p.dim_x, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name,kw", CASES)
def test_hypergradient_matches_finite_differences(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p)
    g = p.hypergradient(x)
    fd = central_fd(p.value, x)
    assert float(torch.linalg.norm(g - fd) / torch.linalg.norm(g)) < 1e-7


@pytest.mark.parametrize("name,kw", CASES)
def test_inner_solution_stationary_point_and_optimum(name, kw):
    p = harness.problem(name, **kw)
    x = rand_x(p, 1)
    y = p.inner_solution(x)
    assert float(torch.linalg.norm(torch.func.grad(p.inner, argnums=1)(x, y, None))) < 1e-10
    (xs,) = p.stationary_points()
    assert float(torch.linalg.norm(p.hypergradient(xs))) < 1e-9 * max(1.0, float(torch.linalg.norm(xs)))
    assert p.value(xs) == pytest.approx(p.optimum(), rel=1e-10, abs=1e-12)
    for s in range(4):  # a minimum: Phi grows in random directions (Phi is convex)
        d = rand_x(p, 10 + s)
        assert p.value(xs + 1e-3 * d) > p.value(xs)


@pytest.mark.parametrize("name,kw", CASES)
def test_constants_spectra(name, kw):
    p = harness.problem(name, **kw)
    c = p.constants
    ev = np.linalg.eigvalsh(p.A.numpy())
    assert ev.min() >= c["mu_y"] * (1 - 1e-12) and ev.max() <= c["L"] * (1 + 1e-12)
    assert ev.min() == pytest.approx(c["mu_inner_exact"]) and ev.max() == pytest.approx(c["L_inner_exact"])
    evh = np.linalg.eigvalsh(p.hessian_phi().numpy())
    assert c["L_phi"] == pytest.approx(evh.max()) and c["mu_phi"] == pytest.approx(evh.min())
    assert c["mu_phi"] >= c["mu_x"] * (1 - 1e-9)
    # the Hessian of Phi is the autograd Hessian of value()
    Hs = torch.func.hessian(lambda x: p.outer(x, p.inner_solution(x)))(p.x0())
    assert torch.allclose(Hs, p.hessian_phi(), atol=1e-10)
    assert float(torch.linalg.matrix_norm(p.B, 2)) <= 2.0 + 1e-12


def test_each_oracle_extends_the_chain_by_at_most_one():
    p = harness.problem("lb-scsc", dim=15)
    o = Oracles(p)
    gen = torch.Generator().manual_seed(0)
    for s in range(0, 14):
        def sup(k=s):
            v = torch.zeros(15, dtype=torch.float64)
            v[:k] = torch.randn(k, generator=gen, dtype=torch.float64)
            return v
        x, y, v = sup(), sup(), sup()
        depths = [last_nonzero(o.grad_x_f(x, y)), last_nonzero(o.grad_y_f(x, y)), last_nonzero(o.grad_y_g(x, y)),
                  last_nonzero(o.hvp(x, y, v)), last_nonzero(o.jvp(x, y, v))]
        assert max(depths) <= max(s, 1) + 1
        if s >= 1:  # and the bound is attained (the chain is really a chain): A y and B^T v reach s + 1
            assert last_nonzero(o.hvp(x, y, v)) == s + 1 and last_nonzero(o.jvp(x, y, v)) == s + 1
    # a dense (non-chain) inner Hessian breaks it: one HV fills every coordinate
    v = torch.zeros(15, dtype=torch.float64)
    v[0] = 1.0
    assert last_nonzero(p.Ainv @ v) == 15


@pytest.mark.parametrize("name,kw", [CASES[0], CASES[2]])
def test_span_gap_is_the_restricted_minimum(name, kw):
    p = harness.problem(name, **kw)
    n = p.dim_x
    from scipy.optimize import minimize

    gaps = [p.span_gap(k) for k in range(n + 1)]
    assert gaps[0] == pytest.approx(p.value(p.x0()) - p.optimum())
    assert gaps[-1] == pytest.approx(0.0, abs=1e-10)
    assert all(a >= b - 1e-12 for a, b in zip(gaps, gaps[1:]))  # nested subspaces
    for k in (1, 3, n // 2):
        res = minimize(lambda z: p.value(torch.cat([torch.tensor(z), torch.zeros(n - k, dtype=torch.float64)])),
                       np.zeros(k), method="BFGS", options={"gtol": 1e-12})
        assert res.fun - p.optimum() == pytest.approx(gaps[k], rel=1e-6, abs=1e-9)
    eps = 0.5 * gaps[3]
    k = p.calls_lower_bound(eps)
    assert gaps[k] <= eps < gaps[k - 1]


def test_scsc_lower_bound_scales_as_one_over_mu_y():
    """The span bound's slope in log(1/eps) doubles when mu_y halves (Thm. 1's 1/(sqrt(mu_x) mu_y))."""
    slopes = []
    for mu_y in (0.5, 0.25):
        p = harness.problem("lb-scsc", dim=160, mu_x=0.1, mu_y=mu_y)
        slopes.append(p.calls_lower_bound(1e-8) - p.calls_lower_bound(1e-4))
    assert 1.8 < slopes[1] / slopes[0] < 2.2


def test_bad_parameters_are_named():
    with pytest.raises(harness.ParameterError, match="L must be >= mu_y"):
        harness.problem("lb-scsc", mu_y=2.0, L=1.0)
    with pytest.raises(harness.ParameterError, match="mu_x"):
        harness.problem("lb-scsc", mu_x=0.0)
    with pytest.raises(harness.ParameterError, match="mu_x"):
        harness.problem("lb-csc", mu_x=0.1)
    with pytest.raises(harness.ParameterError, match="dim"):
        harness.problem("lb-csc", dim=1)


def test_mutations_are_well_formed_and_each_patch_breaks_its_mechanism():
    """claims/ji_liang2023.MUTATIONS: (name, caught_by, patch); each patch really applies (and is undone)."""
    from blobench.claims.ji_liang2023 import MUTATIONS
    from blobench.core.numerics import inner_agd, inner_gd
    from blobench.measure.outer import outer_loop
    from blobench.core.registry import CLAIMS

    harness.discover()
    names = [m[0] for m in MUTATIONS]
    assert len(set(names)) == len(names)
    for name, caught_by, patch in MUTATIONS:
        assert caught_by and all(c in CLAIMS for c in caught_by), name
    p0 = harness.problem("lb-scsc", dim=8)
    x = torch.ones(8, dtype=torch.float64)
    effects = {
        "chain-instance-dense-leak": lambda: last_nonzero(harness.problem("lb-scsc", dim=8).A[:, 0]) == 8,
        "agd-momentum-dropped": lambda: torch.equal(inner_agd(Oracles(p0), x, 0 * x, 5, 0.5, 0.7)[0],
                                                    inner_gd(Oracles(p0), x, 0 * x, 5, 0.5)[0]),
        "outer-nesterov-momentum-dropped": lambda: torch.equal(
            outer_loop(p0, harness.estimator("exact"), 5, 0.1, momentum="nesterov").x_final,
            outer_loop(p0, harness.estimator("exact"), 5, 0.1, momentum="none").x_final),
        "oracle-counting-bypassed": lambda: (lambda o: (o.grad_y_g(x, x), sum(o.counts.values()) == 0)[1])(Oracles(p0)),
    }
    from blobench.estimators import accbio as accbio_mod

    hb = lambda: accbio_mod.heavy_ball(lambda v: 0.5 * v, x, 3, 0.5, 0.3)  # noqa: E731
    hb0 = accbio_mod.heavy_ball(lambda v: 0.5 * v, x, 3, 0.5, 0.0)
    effects["jl-outer-nesterov-momentum-dropped"] = effects["outer-nesterov-momentum-dropped"]
    effects["jl-oracle-counting-bypassed"] = effects["oracle-counting-bypassed"]
    effects["accbio-alg1-heavy-ball-momentum-dropped"] = lambda: torch.equal(hb(), hb0)
    effects["hide-a-third-of-oracle-calls"] = lambda: (lambda o: ([o.grad_y_g(x, x) for _ in range(6)],
                                                                  sum(o.counts.values()) == 4)[1])(Oracles(p0))
    assert set(effects) == set(names)
    for name, _, patch in MUTATIONS:
        assert not effects[name](), name  # unpatched: the mechanism works
        with patch():
            assert effects[name](), name  # patched: broken
        assert not effects[name](), name  # undone


def test_minimax_twin_is_the_saddle_point_of_the_same_matrices():
    """lb-scsc-minimax's y*(x) maximises its f (grad_y f(x, y*) = 0, f concave in y: the saddle point), its hypergradient
    is then grad_x f(x, y*) (Danskin), both forms share one Phi, whose Hessian is mu_x I + B'A^-1 B against lb-scsc's
    mu_x I + B'A^-2 B; the span bound is smaller on the twin (A^-1's chain decays faster than A^-2's)."""
    kw = dict(dim=200, mu_x=0.1, mu_y=0.1)
    tw, tb, bl = (harness.problem("lb-scsc-minimax", form="saddle", **kw), harness.problem("lb-scsc-minimax", form="bilevel", **kw),
                  harness.problem("lb-scsc", **kw))
    x = rand_x(tw, 3)
    y = tw.inner_solution(x)
    gx, gy = torch.func.grad(tw.outer, argnums=(0, 1))(x, y)
    assert float(torch.linalg.norm(gy)) < 1e-10 and torch.allclose(gx, tw.hypergradient(x), atol=1e-10)
    assert float(tw.outer(x, y + 1e-3 * rand_x(tw, 4))) < float(tw.outer(x, y))
    assert tw.value(x) == pytest.approx(tb.value(x), rel=1e-12) and torch.allclose(tw.hypergradient(x), tb.hypergradient(x))
    M = torch.linalg.solve(tw.A, tw.B)
    assert torch.allclose(tw.hessian_phi(), 0.1 * torch.eye(200, dtype=torch.float64) + tw.B.T @ M, atol=1e-12)
    assert torch.allclose(bl.hessian_phi(), 0.1 * torch.eye(200, dtype=torch.float64) + M.T @ M, atol=1e-12)
    assert tw.calls_lower_bound(1e-4) < bl.calls_lower_bound(1e-4)


def test_independent_count_wrapper_and_per_call_depth():
    """jl-lower-bound-respected's wrapper counts every oracle method and linearisation product itself: on a clean run it
    agrees with the harness's count and the inputs' chain depth stays <= calls before + 2, attained within one call;
    with a third of the calls hidden from the harness the independent count is unchanged and the reported one falls
    to 2/3, and the per-call bound against the reported count breaks."""
    from blobench.claims.ji_liang2023 import _IndependentCountOracles, _method, _patch_hide_third_of_calls
    from blobench.measure.outer import outer_loop

    p = harness.problem("jl-scsc", dim=60, mu_x=0.05, mu_y=0.1)
    runs = {}
    for hidden in (False, True):
        o = _IndependentCountOracles(p)
        with (_patch_hide_third_of_calls() if hidden else contextlib.nullcontext()):
            tr = outer_loop(p, _method(p, "aid-cg", warm_start=True), 3, 1 / p.constants["L_phi"], oracles=o)
        runs[hidden] = o
        assert o.reported == sum(tr.calls[k][-1] for k in tr.calls)  # what the harness's figures are made of
    clean, hid = runs[False], runs[True]
    assert clean.independent == clean.reported == hid.independent > 0
    assert hid.reported == clean.independent - clean.independent // 3
    assert max(d - i for i, _, d in clean.log) == 1 and max(d - r for _, r, d in clean.log) == 1
    assert max(d - r for _, r, d in hid.log) > 2 and max(d - i for i, _, d in hid.log) == 1
