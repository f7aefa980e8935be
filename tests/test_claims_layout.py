"""The claims folder follows one rule: one module per source paper (issue 27). A module whose claims cite different first
authors is a family file mixing papers; shared helpers live in ``blobench/claims/_common.py``, which registers nothing."""
from __future__ import annotations

import collections
import re

import blobench.claims._common as common
import blobench.harness  # noqa: F401  (registers the shipped claims)
from blobench.core.registry import CLAIMS


def _first_author(citation: str) -> str:
    words = re.findall(r"[A-Z][a-z]+", citation.split(",")[0].split(";")[0])
    return words[0]


def test_one_module_per_source_paper():
    authors = collections.defaultdict(set)
    for name in CLAIMS.names():
        cls = CLAIMS.get(name)
        mod = cls.__module__
        if not mod.startswith("blobench.claims."):
            continue  # plugins registered by other tests
        authors[mod].add(_first_author(cls.citation))
    assert len(authors) >= 15
    mixed = {m: a for m, a in authors.items() if len(a) != 1}
    assert not mixed, f"claims modules citing several first authors: {mixed}"


def test_common_registers_no_claim():
    assert not [n for n in CLAIMS.names() if CLAIMS.get(n).__module__ == common.__name__]


def test_first_author_parser():
    assert _first_author("K. Ji, J. Yang, Y. Liang, ICML 2021") == "Ji"
    assert _first_author("Nesterov & Spokoiny 2017; Ghadimi & Lan 2013") == "Nesterov"
    assert _first_author("Dagreou, Ablin, Vaiter, Moreau 2022") == "Dagreou"
