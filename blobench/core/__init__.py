"""Core objects: errors, parameters, problem and estimator bases, counted oracles, shared numerics, data files, the registry.

Layer rule: a module here imports only from its own layer and the layers below it
(core < measure < engine < gate < report < cli; see tests/test_layers.py)."""
