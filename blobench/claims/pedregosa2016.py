"""Claim of HOAG.

Source: Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016 (arXiv 1602.02355),
Theorem 1: with summable tolerances HOAG reaches a stationary point.
"""
from __future__ import annotations

from blobench import harness
from blobench.gate.claim_base import Claim, Verdict
from blobench.measure.outer import outer_loop


@harness.register_claim("hoag-summable-tolerance")
class HOAGTolerance(Claim):
    citation = "Pedregosa 2016 (arXiv 1602.02355), Theorem 1 (summable tolerances eps_k -> stationary point)"
    statement = ("HOAG with summable tolerances eps_k = 0.01 * 0.7^k reaches a stationary point of Phi on a quadratic and on "
                 "logreg-l2: ||grad Phi(x_T)||^2 <= 1e-14 after T outer steps with the outer loop's fixed step.")
    control = "a constant (non-summable) tolerance eps_k = 0.01"

    def evaluate(self, size: str, control: bool) -> Verdict:
        decay = 1.0 if control else 0.7
        runs = {}
        q = harness.problem("quadratic", dim=5 if size == "ci" else 20, kappa=4, rho=1.0)
        lg = harness.problem("logreg-l2", n_train=30, n_val=30, features=4, classes=2, informative=2, outer_reg=0.1)
        for name, p, lr, T in (("quadratic", q, 0.4, 50), ("logreg-l2", lg, 5.0, 40)):
            tr = outer_loop(p, harness.estimator("hoag", tol=1e-2, tol_decay=decay), T, lr, eval_every=T)
            runs[name] = tr.grad_norm_sq[-1]
        ok = all(v <= 1e-14 for v in runs.values())
        return Verdict(ok, "; ".join(f"{k}: {v:.2e}" for k, v in runs.items()), "||grad Phi(x_T)||^2 <= 1e-14 on both",
                       {"final_grad_norm_sq": runs, "tol_decay": decay})
