"""The settings issue 29 added, as estimators of their own so that ``blobench verify`` runs its battery on them
(``blobench verify --plugin tests/verify_plugins/peer_settings.py saba-b4 f2sa-peer f2sa-paper vrbo-period3``):
SABA with minibatch blocks, F2SA with benchmark_bilevel's and with Kwon et al. 2023's schedules, VRBO's
deterministic path with a refresh period (the exact-batch recursion)."""
import dataclasses

from blobench import harness
from blobench.estimators.first_order import F2SA
from blobench.estimators.recursive_vr import VRBO
from blobench.estimators.variance_reduced import SABA


def _with_defaults(cls, name: str, doc: str, **defaults):
    params = dict(cls.params)
    for k, v in defaults.items():
        params[k] = dataclasses.replace(params[k], default=v)
    sub = type(cls.__name__ + "_" + name.replace("-", "_"), (cls,), {"params": params, "theory": cls.theory,
                                                                      "__doc__": doc})
    return harness.register_estimator(name)(sub)


_with_defaults(SABA, "saba-b4", "SABA with minibatch blocks of 4 rows (benchmark_bilevel's minibatch SABA).", batch_size=4)
_with_defaults(F2SA, "f2sa-peer", "F2SA as benchmark_bilevel runs it: steps over (k+1)^5/7 and (k+1)^4/7, "
               "lambda increments 0.1 (k+1)^-1/7 from 1.", penalized_lr=0.05, inner_lr=0.05, penalized_decay=5 / 7,
               inner_decay=4 / 7, penalty=1.0, penalty_growth=0.1, penalty_growth_decay=1 / 7)
_with_defaults(F2SA, "f2sa-paper", "F2SA with Kwon et al. 2023's exponents: alpha ~ k^-5/7, gamma ~ k^-4/7, "
               "lambda ~ k^1/7 from 1.", penalized_lr=0.05, penalized_decay=5 / 7, inner_decay=4 / 7, penalty=1.0,
               penalty_power=1 / 7)
_with_defaults(VRBO, "vrbo-period3", "VRBO with a full refresh every 3 calls (deterministic: y~_{D-1} between).",
               period=3)
