"""Measurement: batched sampling, metrics, outer loops, complexity, memory and timing.

Layer rule: a module here imports only from its own layer and the layers below it
(core < measure < engine < gate < report < cli; see tests/test_layers.py)."""
