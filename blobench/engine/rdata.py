"""A minimal reader of R's XDR serialization (``.rda`` / ``.RData`` files written by ``save()``), for the data
frames that Debian's r-cran-mlbench ships (issue 25: Shuttle).

R's serialization format (R Internals, "Serialization Formats"; ``src/main/serialize.c``): a magic line
``RDX2`` / ``RDX3``, the format ``X`` (big-endian XDR), three integers (format version, writer's R version, the
oldest reader) and, for version 3, the native encoding; then one item, recursively: an integer of flags (type in
the low 8 bits, bit 9 "has attributes", bit 10 "has tag", bits 12+ the gp levels) followed by the type's payload.
``save()`` writes a pairlist whose tags are the object names.

Only what a numeric data frame needs is read: pairlists (type 2) and calls (6, read as pairlists), symbols (1) and
the reference table (255), strings (9, 16), logical / integer / double vectors (10, 13, 14), lists (19, 20), the
NULL / environment markers (254, 253, 242, 241, 251, 247), and attributes. Anything else raises ValueError naming
the type (environments, closures, bytecode, ALTREP compact sequences are not in the data sets read here).
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_NULLISH = {254, 253, 242, 241, 251, 247}  # NILVALUE, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, BASENAMESPACE


@dataclass
class RObject:
    """An R vector: ``value`` (a numpy array for logical / integer / double, a list for strings and lists) and
    its ``attrs`` (name -> value: ``names``, ``levels``, ``class``, ``row.names``...)."""

    value: Any
    attrs: dict[str, Any] = field(default_factory=dict)


def _decompress(data: bytes) -> bytes:
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    return data


def read_rda(data: bytes) -> dict[str, Any]:
    """The objects of an .rda file's bytes (xz, bzip2, gzip or uncompressed), by name."""
    data = _decompress(data)
    if data[:5] not in (b"RDX2\n", b"RDX3\n") or data[5:7] != b"X\n":
        raise ValueError("not an R data file in XDR format (RDX2 / RDX3 header)")
    pos = 7
    refs: list[Any] = []

    def i32() -> int:
        nonlocal pos
        (v,) = struct.unpack_from(">i", data, pos)
        pos += 4
        return v

    def length() -> int:
        n = i32()
        return (i32() << 32) + i32() if n == -1 else n

    version = i32()
    i32(), i32()
    if version == 3:
        pos += i32()  # the native encoding's name

    def item() -> Any:
        nonlocal pos
        flags = i32()
        t, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
        if t in _NULLISH:
            return None
        if t == 255:  # a reference to an earlier symbol
            k = flags >> 8
            return refs[(k if k else i32()) - 1]
        if t == 1:  # SYMSXP: its name, remembered for later references
            s = item()
            refs.append(s)
            return s
        if t in (2, 6):  # LISTSXP / LANGSXP, iteratively along the CDR: [(tag, value), ...]
            out = []
            while True:
                if has_attr:
                    item()
                tag = item() if has_tag else None
                out.append((tag, item()))
                flags = i32()
                t, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
                if t == 254:
                    return out
                if t not in (2, 6):
                    raise ValueError(f"R data: unsupported pairlist tail of type {t}")
        if t == 9:  # CHARSXP (-1: NA_character_)
            n = i32()
            if n == -1:
                return None
            s = data[pos:pos + n].decode("utf-8", "replace")
            pos += n
            return s
        if t in (10, 13):  # LGLSXP, INTSXP (NA = -2^31)
            n = length()
            v: Any = np.frombuffer(data, ">i4", n, pos).astype(np.int64)
            pos += 4 * n
        elif t == 14:  # REALSXP
            n = length()
            v = np.frombuffer(data, ">f8", n, pos).astype(np.float64)
            pos += 8 * n
        elif t in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            v = [item() for _ in range(length())]
        else:
            raise ValueError(f"R data: unsupported object type {t} (only vectors, lists and pairlists are read)")
        attrs = dict(item()) if has_attr else {}
        return RObject(v, attrs)

    top = item()
    if not isinstance(top, list):
        raise ValueError("R data: the file does not hold a pairlist of named objects (not written by save())")
    return dict(top)


def data_frame_columns(frame: RObject) -> dict[str, RObject]:
    """A data.frame's columns by name."""
    names = frame.attrs.get("names")
    if not isinstance(frame.value, list) or names is None:
        raise ValueError("R data: not a data frame (a list with names)")
    return dict(zip(names.value, frame.value))
