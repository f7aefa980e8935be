"""F2BA+ / AccF2BA+ (blobench/estimators/f2ba_plus.py) against torch's own optimisers, run as the authors' code runs them
(TrueNobility303/F2BA, medium_sized/l2reg.py): oracle counts, the inner Nesterov SGD, the outer Nesterov SGD and the
restart rule."""
import copy

import torch

from blobench import harness
from blobench.core.oracles import Oracles
from blobench.estimators.f2ba_plus import nesterov_sgd_step
from blobench.measure.outer import outer_loop


def test_nesterov_step_is_torch_sgd():
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True)
    q, buf = torch.zeros(4, dtype=torch.float64), None
    for k in range(6):
        d = torch.arange(4, dtype=torch.float64) * (k + 1) - 1.5
        p.grad = d.clone()
        opt.step()
        q, buf = nesterov_sgd_step(q, d, buf, 0.1, 0.5)
        assert torch.allclose(p.detach(), q, atol=1e-15)


def test_counts_and_state():
    pr = harness.problem("jl-scsc", dim=20, mu_x=0.05, mu_y=0.1)
    o = Oracles(pr)
    e = harness.estimator("f2ba-plus", inner_steps=4)
    out = e.estimate(o, pr.x0(), {}, None)
    assert o.counts["grad_y_g"] == 8 and o.counts["grad_y_f"] == 4 and o.counts["grad_x_f"] == 1 and o.counts["grad_x_g"] == 2
    assert set(out.state) == {"z", "by", "bz"}
    assert "by" not in harness.estimator("f2ba-plus", inner_momentum=0.0).estimate(Oracles(pr), pr.x0(), {}, None).state


def test_accf2ba_plus_is_torch_nesterov_with_the_restart():
    """The estimator-driven outer loop equals torch.optim.SGD(nesterov=True, momentum=0.9) on F2BA+'s hypergradient with
    the code's restart (cnt * sum ||w_{k+1} - w_k||^2 > max(B, B0)^2 -> buffer zeroed, B <- c B), restarts included."""
    pr = harness.problem("jl-scsc", dim=20, mu_x=0.05, mu_y=0.1)
    lr, B, B0, c = 0.2, 0.05, 0.01, 0.9
    acc = harness.estimator("accf2ba-plus", inner_steps=3, outer_lr=lr, restart_B=B, restart_B0=B0, restart_c=c)
    tr = outer_loop(pr, acc, 12, lr)
    # reference: the authors' loop with torch's optimiser
    base = harness.estimator("f2ba-plus", inner_steps=3)
    w = torch.zeros(20, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, momentum=0.9, nesterov=True)
    state, cnt, S, restarts = None, 0, 0.0, 0
    for _ in range(12):
        est = base.estimate(Oracles(pr), w.detach().clone(), {}, state)
        state = est.state
        w_pre = copy.deepcopy(w)
        w.grad = est.grad.clone()
        opt.step()
        cnt += 1
        S += torch.linalg.norm(w - w_pre).pow(2).item()
        if cnt * S > max(B, B0) ** 2:
            cnt, B, S = 0, B * c, 0.0
            restarts += 1
            opt.state_dict()["state"][0]["momentum_buffer"] = torch.zeros_like(w)  # as the code does it
    assert restarts >= 2
    assert torch.allclose(tr.x_final, w.detach(), atol=1e-12)
    # without the restart (B huge) the trajectories differ: the rule matters here
    far = outer_loop(pr, harness.estimator("accf2ba-plus", inner_steps=3, outer_lr=lr, restart_B=1e9), 12, lr)
    assert not torch.allclose(far.x_final, w.detach(), atol=1e-6)


def test_chen_zhang2025_mutation_restarts_every_step():
    """claims/chen_zhang2025.MUTATIONS: with the restart thresholds read 1e4 times too small, AccF2BA+ zeroes its
    outer momentum buffer at every step (the clean code restarts rarely)."""
    from blobench.claims import chen_zhang2025

    p = harness.problem("jl-scsc", dim=40, mu_x=0.05, mu_y=0.1)

    names = [m[0] for m in chen_zhang2025.MUTATIONS]
    assert names == ["accf2ba-restart-every-step"]
    est = harness.estimator("accf2ba-plus", penalty=100.0)
    o = Oracles(p)
    st, x = None, p.x0()
    for _ in range(6):
        e = est.estimate(o, x, {}, st)
        st, x = e.state, x - e.grad / p.constants["L_phi"]
    n0 = float(st["restarts"])
    with chen_zhang2025.MUTATIONS[0][2]():
        est = harness.estimator("accf2ba-plus", penalty=100.0)
        st, x = None, p.x0()
        for _ in range(6):
            e = est.estimate(o, x, {}, st)
            st, x = e.state, x - e.grad / p.constants["L_phi"]
        n1 = float(st["restarts"])
    assert n0 <= 1 and n1 == 6
