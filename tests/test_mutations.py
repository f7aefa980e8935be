"""The mutation suite (blobench/gate/mutations.py): every declared breakage is caught by a claim, at size "ci".

Each real mutation runs once here (the fast suite); the collector, the scoring, the survivor path and the
CLI are tested on a throwaway claim module registered for the duration of a test."""
from __future__ import annotations

import sys
import types
from unittest import mock

import pytest
import torch

import blobench.core.numerics
from blobench import harness
from blobench.gate import mutations
from blobench.gate.claim_base import Claim, Verdict
from blobench.cli import main
from blobench.core.errors import BlobenchError
from blobench.core.oracles import Oracles
from blobench.core.registry import CLAIMS

REAL = mutations.collect()
# issue 11's list: dropped implicit term, reused Hessian batch, skipped CG step, under-reported calls, wrong sign,
# UFO's correction scaled by 0.8, and double exact-branch work reported as single
REQUIRED = {"aid-drop-implicit-term", "stocbio-reuse-hessian-batch", "cg-skip-step", "oracles-jv-uncounted",
            "itd-wrong-sign", "ufo-correction-x0.8", "ufo-double-exact-work"}


def test_required_mutations_are_declared():
    names = {m.name for m in REAL}
    assert REQUIRED <= names
    for m in REAL:
        assert m.caught_by and all(c in CLAIMS for c in m.caught_by), m


@pytest.mark.parametrize("m", REAL, ids=[m.name for m in REAL])
def test_mutation_is_caught(m):
    orig = (Oracles.hvp_jvp, blobench.core.numerics.cg)
    r = mutations.run_mutation(m, "ci")
    assert r.caught, f"{m.name} survived: {r.outcomes}"
    assert r.caught_by in m.caught_by and r.tried[-1] == r.caught_by
    assert (Oracles.hvp_jvp, blobench.core.numerics.cg) == orig  # the patch was undone


# ----------------------------------------------------------------------------- collector, score, CLI on a test module

class _ToyClaim(Claim):
    """Holds iff a module-level switch is on: a breakage turns it off."""

    citation, statement, control = "toy", "the switch is on", "switch off"

    def evaluate(self, size: str, control: bool) -> Verdict:
        on = _MOD.SWITCH and not control
        return Verdict(on, f"switch {on}", "on")


_MOD = types.ModuleType("blobench_toy_claims")
_MOD.SWITCH = True
_ToyClaim.__module__ = _MOD.__name__


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(sys.modules, _MOD.__name__, _MOD)
    monkeypatch.setattr(_ToyClaim, "name", "t-toy")
    monkeypatch.setitem(CLAIMS._items, "t-toy", _ToyClaim)
    monkeypatch.setattr(_MOD, "MUTATIONS", [
        ("toy-switch-off", ("t-toy",), lambda: mock.patch.object(_MOD, "SWITCH", False)),
        ("toy-no-op", ("t-toy",), lambda: mock.patch.object(_MOD, "SWITCH", True)),
    ], raising=False)
    return _MOD


def test_collect_and_score_on_a_toy_module(toy):
    ms = mutations.collect(["t-toy"])
    assert [m.name for m in ms] == ["toy-switch-off", "toy-no-op"] and ms[0].module == toy.__name__
    res = [mutations.run_mutation(m) for m in ms]
    assert [r.caught for r in res] == [True, False]
    assert res[0].caught_by == "t-toy" and res[0].outcomes["t-toy"].startswith("not reproduced")
    assert toy.SWITCH is True  # undone
    assert mutations.score(res) == "mutation score: 1/2 caught (50%)"
    assert res[1].line().startswith("SURVIVED toy-no-op")


def test_cli_check_mutations_prints_the_score(toy, capsys):
    assert main(["check", "--mutations", "t-toy"]) == 1  # a survivor: exit 1
    out = capsys.readouterr().out
    assert "CAUGHT   toy-switch-off by t-toy" in out and "SURVIVED toy-no-op" in out
    assert "mutation score: 1/2 caught (50%)" in out
    toy.MUTATIONS = toy.MUTATIONS[:1]
    assert main(["check", "--mutations", "t-toy"]) == 0
    assert "mutation score: 1/1 caught (100%)" in capsys.readouterr().out
    assert main(["check", "--mutations", "t-tyo"]) == 2
    assert "unknown claim" in capsys.readouterr().err


def test_a_claim_that_raises_under_a_mutation_counts_as_caught(toy):
    def boom(self, size, control):
        raise RuntimeError("diverged")

    toy.MUTATIONS = [("toy-crash", ("t-toy",), lambda: mock.patch.object(_ToyClaim, "evaluate", boom))]
    (r,) = mutations.run_mutations(["t-toy"])
    assert r.caught and r.outcomes["t-toy"].startswith("error: RuntimeError: diverged")


class _ToyNotReproduced(Claim):
    """Recorded "not reproduced" (its rule never holds); its positive control holds iff the switch is on."""

    citation, statement, control = "toy", "never", "never"
    expected = "not reproduced"
    positive_control = "the switch, where it provably is on"

    def evaluate(self, size: str, control: bool) -> Verdict:
        return Verdict(False, "flat", "never")

    def evaluate_positive(self, size: str) -> Verdict:
        return Verdict(_MOD.SWITCH, f"switch {_MOD.SWITCH}", "on")


def test_a_failing_positive_control_catches_a_mutation(toy, monkeypatch):
    """A "not reproduced" claim's rule reads "not reproduced" under any breakage that flattens its effect: the mutation
    suite also runs the claim's positive control (issue 28, ufo-fewshot-table), and a failing one catches the breakage."""
    _ToyNotReproduced.__module__ = _MOD.__name__
    monkeypatch.setattr(_ToyNotReproduced, "name", "t-flat")
    monkeypatch.setitem(CLAIMS._items, "t-flat", _ToyNotReproduced)
    toy.MUTATIONS = [("toy-flat-off", ("t-flat",), lambda: mock.patch.object(_MOD, "SWITCH", False)),
                     ("toy-flat-no-op", ("t-flat",), lambda: mock.patch.object(_MOD, "SWITCH", True))]
    off, noop = mutations.run_mutations(["t-flat"])
    assert off.caught and off.caught_by == "t-flat" and off.outcomes["t-flat"] == "positive control fails: switch False"
    assert not noop.caught and noop.outcomes["t-flat"].startswith("not reproduced")

    def boom(self, size):
        raise RuntimeError("nan")

    toy.MUTATIONS = [("toy-flat-crash", ("t-flat",), lambda: mock.patch.object(_ToyNotReproduced, "evaluate_positive", boom))]
    (r,) = mutations.run_mutations(["t-flat"])
    assert r.caught and r.outcomes["t-flat"].startswith("error: positive control: RuntimeError: nan")


@pytest.mark.parametrize("bad,msg", [
    ([("x", "t-toy", lambda: None)], "is not"),
    ([("x", ("t-toy",))], "is not"),
    ([("x", ("t-nope",), lambda: None)], "unknown claim 't-nope'"),
    ([("x", ("t-toy",), lambda: None), ("x", ("t-toy",), lambda: None)], "defined twice"),
    ("x", "must be a list"),
])
def test_malformed_mutations_are_rejected(toy, bad, msg):
    toy.MUTATIONS = bad
    with pytest.raises(BlobenchError, match=msg):
        mutations.collect()


def test_real_mutations_break_what_their_claim_measures():
    """Spot check outside the claims: under cg-skip-step aid-cg makes N-1 HV calls, and undone after."""
    (m,) = [m for m in REAL if m.name == "cg-skip-step"]
    p = harness.problem("quadratic", dim=3, kappa=4)
    e = harness.estimator("aid-cg", inner_steps=2, solver_steps=3)
    with m.patch():
        assert harness.estimate(p, e, p.x0()).mean_calls()["hvp"] == 2
    assert harness.estimate(p, e, p.x0()).mean_calls()["hvp"] == 3
    assert torch.isfinite(harness.estimate(p, e, p.x0()).grads).all()


def test_no_result_computed_under_a_mutation_survives_it():
    """ufo-fo-stalls memoises its fo/maml runs; the mutation suite once left the runs it made under
    'ufo-exact-branch-drops-hessian' (maml = fo) in that memo, so the claim read fo = ufo = maml = 1 and failed
    in any later run of the same process. run_mutation now clears every registered memo before and after."""
    from blobench.gate.claim_base import _MEMOS

    m = next(m for m in mutations.collect(None) if m.name == "ufo-exact-branch-drops-hessian")
    assert mutations.run_mutation(m, "ci").caught
    assert all(len(c) == 0 if isinstance(c, dict) else c.cache_info().currsize == 0 for c in _MEMOS)
    from blobench.core.registry import CLAIMS

    r = CLAIMS.get("ufo-fo-stalls")().run("ci")
    assert r.passed, r.measured
