"""The figure style, one place for every figure of a report.

- one seaborn theme (``whitegrid``, ``paper`` context, readable font sizes) applied with ``rc_context``,
  so importing the report never changes matplotlib's global state;
- one colour per estimator across all figures of a report (:func:`palette`);
- human units on axes (:func:`bytes_axis`: B/KiB/MiB/GiB, :func:`seconds_axis`: us/ms/s);
- log axes only for positive data (:func:`log_if_positive`), bands clipped to the axis, not to 1e-16;
- legends outside the data (:func:`legend_outside`, below the axes grid);
- :func:`save` writes every figure as PNG and SVG and records, per axes, what it draws (titles, labels,
  scales, number of finite data points per artist) in ``figures.json`` beside the figures, so tests can
  check "no empty axes" from the figure data rather than pixels.

Speed (issue 26: rendering was 78 % of a report's time). Inside :func:`parallel_figures` (the report writer opens
it), :func:`save` pickles the finished figure and a pool of worker processes writes its PNG and SVG while the
sections draw the next figures; the files are byte-identical to the serial path (both render through
:func:`render_files`; ``tests/test_report_speed.py``). Two savings apply to every figure: minor ticks that draw
nothing (no tick mark, no grid line, no label: the theme hides tick marks) are not computed
(:func:`drop_invisible_minor_ticks`: the PNG is unchanged, the layout took 2-3 times longer with them);
mathtext is parsed once per process, not once per renderer (:func:`share_mathtext_cache`), and log tick labels are
plain-text superscripts (``_ticks.py``). A worker unpickles figures with their transform links keyed by the new ids
(:func:`unpickle_figure`: matplotlib's own unpickling made one SVG in four differ from the serial one). The SVG is
reproducible: no date, ids salted by a constant (:data:`SVG_RC`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import pickle
import signal
import weakref
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

DPI = 100
MANIFEST = "figures.json"


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    share_mathtext_cache()
    return pyplot


@functools.lru_cache(maxsize=None)
def share_mathtext_cache() -> bool:
    """Parse each mathtext string once per process (returns whether the cache could be installed).

    matplotlib caches a parse per ``MathTextParser`` instance (its ``lru_cache`` keys on ``self``), and every
    renderer makes its own parser: each figure's PNG and SVG parsed the same ``10^{-3}`` tick labels and axis
    labels again (968 parses, 180 distinct, about 11 ms each, in the default report). This keys the cache by the
    parser's output type instead. A parse result is read-only for its renderers and a function of its key alone
    (each parse lays out with a fresh font set), so sharing it changes no byte: the default report's 70 files are
    identical with and without it, and the serial/worker byte-identity test covers it (an SVG difference once blamed
    on this cache was the transform links, :func:`unpickle_figure`). Skipped (False) on a matplotlib whose private
    ``_parse_cached`` has another shape."""
    try:
        from matplotlib import mathtext

        cls = mathtext.MathTextParser
        inner = cls._parse_cached.__wrapped__
        kinds = {"vector": "path", "raster": "agg"}
    except (ImportError, AttributeError):
        return False
    parsers: dict[str, Any] = {}

    @functools.lru_cache(maxsize=4096)
    def shared(kind: str, s: str, dpi: float, prop: Any, antialiased: Any, flags: Any) -> Any:
        if kind not in parsers:
            parsers[kind] = cls(kinds[kind])
        return inner(parsers[kind], s, dpi, prop, antialiased, flags)

    def _parse_cached(self: Any, s: str, dpi: float, prop: Any, antialiased: Any, flags: Any) -> Any:
        if getattr(self, "_output_type", None) not in kinds:
            return inner(self, s, dpi, prop, antialiased, flags)
        return shared(self._output_type, s, dpi, prop, antialiased, flags)

    _parse_cached.cache_info = shared.cache_info  # type: ignore[attr-defined]
    cls._parse_cached = _parse_cached
    return True


def theme_rc() -> dict[str, Any]:
    import seaborn as sns

    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("paper", font_scale=1.25))
    rc.update({"figure.dpi": DPI, "savefig.dpi": DPI, "svg.fonttype": "none", "legend.frameon": False,
               "axes.titlesize": 11, "axes.labelsize": 10.5, "legend.fontsize": 9, "lines.linewidth": 1.6})
    return rc


@contextlib.contextmanager
def themed() -> Iterator[Any]:
    """``with themed() as pyplot:`` draw figures in the report's seaborn theme."""
    p = plt()
    with p.rc_context(theme_rc()):
        yield p


LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def method_styles(names: Iterable[str]) -> dict[str, tuple[tuple, str, str]]:
    """(colour, line style, marker) per estimator name, one fixed style per method in every figure.

    Names are sorted (every registered estimator, so a method keeps its style across reports); the i-th gets the
    i-th of the 10 tab10 colours (the most distinct qualitative set; the 11th method reuses a colour), the
    marker ``MARKERS[i % 7]`` and the line style ``LINESTYLES[(i // 10) % 4]``: two methods sharing a colour
    always differ in line style and marker, so 15 methods in one figure stay apart in colour and in greyscale."""
    import seaborn as sns

    names = sorted(set(str(n) for n in names))
    colors = sns.color_palette("tab10", 10)
    return {nm: (colors[i % 10], LINESTYLES[(i // 10) % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
            for i, nm in enumerate(names)}


def palette(names: Iterable[str]) -> dict[str, tuple]:
    """One colour per estimator name, stable across every figure of a report (:func:`method_styles`)."""
    return {k: v[0] for k, v in method_styles(names).items()}


def style_cycle(i: int) -> tuple[str, str]:
    """(line style, marker) by position; prefer a method's own style (``Context.ls`` / ``Context.marker``)."""
    return LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)]


def human_bytes(v: float, _pos: Any = None) -> str:
    if not np.isfinite(v):
        return ""
    for unit, f in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(v) >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.3g} B"


def human_seconds(v: float, _pos: Any = None) -> str:
    if not np.isfinite(v):
        return ""
    a = abs(v)
    if a == 0:
        return "0 s"
    if a >= 1:
        return f"{v:.3g} s"
    if a >= 1e-3:
        return f"{v * 1e3:.3g} ms"
    return f"{v * 1e6:.3g} \u00b5s"


def unit_of(quantity: str) -> str | None:
    """'bytes' or 'seconds' for quantities measured in them (by name), else None."""
    q = quantity.lower()
    if "byte" in q or "mem" in q or "rss" in q:
        return "bytes" if "ratio" not in q else None
    if "second" in q or q.startswith("time"):
        return "seconds"
    return None


def unit_axis(ax: Any, unit: str | None, axis: str = "y") -> None:
    """Tick labels in KiB/MiB or ms/s on a (possibly log) axis."""
    if unit is None:
        return
    from matplotlib.ticker import FuncFormatter, NullFormatter

    a = ax.yaxis if axis == "y" else ax.xaxis
    if (ax.get_yscale() if axis == "y" else ax.get_xscale()) == "log":
        from matplotlib.ticker import LogLocator

        a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # labelled ticks within a decade too
    else:
        from matplotlib.ticker import MaxNLocator

        a.set_major_locator(MaxNLocator(nbins=4 if axis == "x" else 6))  # "100 ms" labels need room
    a.set_major_formatter(FuncFormatter(human_bytes if unit == "bytes" else human_seconds))
    a.set_minor_formatter(NullFormatter())


def log_if_positive(ax: Any, values: Any, axis: str = "y", base: float = 10) -> bool:
    """Log scale when every finite value is > 0 and they span more than a factor 4; returns whether set."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0 or (v <= 0).any() or v.max() / v.min() < 4:
        return False
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log", base=base)
    return True


def force_log(ax: Any, positive: Any, axis: str = "y") -> bool:
    """Log scale for a quantity that lives on one (a gap, a squared norm) whenever it has positive values, even
    when they span less than a factor 4 or some values are 0 (those are left out of the line)."""
    v = np.asarray(list(positive), dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) == 0:
        return False
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    return True


def tidy_log_axis(ax: Any, axis: str = "y", max_labels: int = 6) -> None:
    """At most ``max_labels`` labelled decades (10^k in Unicode superscripts), unlabelled minor ticks: no cluttered
    log axis.

    An axis whose view spans at most one decade (so at most one decade tick, often none) labels its minor ticks
    instead (2x10^k, 3x10^k, ...): before, such an axis had no tick label at all."""
    from matplotlib.ticker import LogLocator

    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_locator(LogLocator(base=10, numticks=max_labels))
    a.set_major_formatter(_superscript_formatter("mathtext"))
    a.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=12))
    a.set_minor_formatter(_superscript_formatter("sci", labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _superscript_formatter(kind: str, **kw: Any) -> Any:
    """matplotlib's ``LogFormatterMathtext`` (``kind="mathtext"``: labelled decades) or ``LogFormatterSciNotation``
    (``"sci"``: 2x10^k minor labels), with the labels in Unicode superscripts (:func:`superscript_label`)."""
    from blobench.report import _ticks

    cls = _ticks.SuperscriptDecades if kind == "mathtext" else _ticks.SuperscriptSci
    return cls(base=10, **kw)


def band(ax: Any, x: Any, lo: Any, hi: Any, color: Any, alpha: float = 0.18) -> None:
    """A confidence band; on a log axis its lower end is clipped at the axis bottom, never drawn to 1e-16."""
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    if ax.get_yscale() == "log":
        pos = hi[np.isfinite(hi) & (hi > 0)]
        if len(pos) == 0:
            return
        floor = float(np.nanmin(np.where(lo > 0, lo, np.nan))) if (lo > 0).any() else float(pos.min()) / 10
        lo = np.where(lo > 0, lo, floor)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)


def legend_outside(fig: Any, axes: Iterable[Any], ncol: int | None = None, title: str | None = None) -> None:
    """One figure legend below the axes grid (handles collected from every axes, duplicates merged)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_") and lab not in seen:
                seen[lab] = h
    if not seen:
        return
    n = len(seen)
    if fig.get_size_inches()[1] > TALL:  # a tall grid (e.g. 3 x 3 panels): the legend at the top right, in view
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside right upper", ncol=1, title=title)
        return
    # as many columns as fit the figure's width (about 13 characters of 9 pt text per inch, plus the handle)
    fits = max(1, int(fig.get_size_inches()[0] * 13 // (max(len(s) for s in seen) + 6)))
    ncol = max(1, min(n, ncol or 4, fits))
    fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center", ncol=ncol, title=title)


#: figures taller than this (inches) put their legend on the right, beside the first row, not below the grid
TALL = 8.0


def new_figure(nrows: int, ncols: int, w: float = 4.6, h: float = 3.4, legend_rows: int = 0):
    """A figure with constrained layout (room for the outside legend is made by matplotlib)."""
    p = plt()
    fig, axes = p.subplots(nrows, ncols, figsize=(w * ncols, h * nrows + 0.3 * legend_rows), squeeze=False,
                           layout="constrained")
    return fig, axes


def _finite_points(artist: Any) -> int:
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    try:
        if isinstance(artist, Line2D):
            xy = np.asarray(artist.get_xydata(), dtype=float)
            return int(np.isfinite(xy).all(axis=1).sum()) if xy.size else 0
        if isinstance(artist, Collection):
            n = 0
            off = np.asarray(artist.get_offsets(), dtype=float)
            if off.size and len(artist.get_paths()) <= 1:
                n = int(np.isfinite(off).all(axis=1).sum())
            for path in artist.get_paths():
                v = np.asarray(path.vertices, dtype=float)
                n += int(np.isfinite(v).all(axis=1).sum()) if v.size else 0
            return n
        if isinstance(artist, Rectangle):
            return int(np.isfinite([artist.get_height(), artist.get_width()]).all() and artist.get_height() != 0)
    except Exception:  # an artist we cannot read counts as empty
        return 0
    return 0


def axes_record(ax: Any) -> dict[str, Any]:
    """What one axes draws: labels, scales, and finite data points per kind of artist."""
    lines = [a for a in ax.lines if a.get_visible()]
    data_lines = [ln for ln in lines if not getattr(ln, "_bb_reference", False)]
    return {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
            "lines": len(data_lines), "reference_lines": len(lines) - len(data_lines),
            "points": int(sum(_finite_points(a) for a in data_lines)
                          + sum(_finite_points(c) for c in ax.collections)
                          + sum(_finite_points(p) for p in ax.patches)),
            "legend_inside": ax.get_legend() is not None}


def reference_line(line: Any) -> Any:
    """Mark a drawn line as a reference (theory, stationary point), not data, for the figure manifest."""
    line._bb_reference = True
    return line


def slug(text: Any, max_len: int = 80) -> str:
    """A file-name stem from user text (an experiment name, a --where slice): only ``[A-Za-z0-9._-]``, no path
    separator, no leading dot, never empty, ``.`` or ``..``. ``x/../../escaped`` -> ``x-escaped``: a name from a
    matrix can never make the report write outside its folder."""
    import re

    parts = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).split("-")
    s = "-".join(p for p in parts if p.strip("."))  # path components such as '..' vanish
    s = re.sub(r"\.{2,}", ".", s)                  # no '..' anywhere
    s = re.sub(r"-{2,}", "-", s).strip(".-")
    s = s[:max_len].strip(".-")
    return s or "figure"


#: rcParams of every written figure beyond the theme: SVG element ids salted by a constant (matplotlib salts them
#: with a random uuid by default), so the same figure gives the same bytes in every run and every worker
SVG_RC = {"svg.hashsalt": "blobench"}
#: savefig arguments per format: the SVG carries no date (a report of the same run is byte-identical)
SAVE_KW = {"png": {"dpi": DPI}, "svg": {"metadata": {"Date": None}}}


def drop_invisible_minor_ticks(fig: Any) -> int:
    """Give every axis whose minor ticks draw nothing (no tick mark and no grid line: the theme hides tick marks;
    every label empty: ``tidy_log_axis`` labels minor ticks only on an axis spanning at most a decade) no minor
    ticks at all; returns how many axes changed.

    Pixels are unchanged where the axis has a labelled major tick; what changes is the work: a log axis over 16
    decades had about 130 minor ticks, each two lines and two texts placed at every layout pass and every draw
    (the PNG of a 3 x 3 grid took 1.8 s with them and 0.7 s without, byte-identical)."""
    from matplotlib.ticker import NullLocator

    n = 0
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_minor_locator(), NullLocator):
                continue
            ticks = axis.get_minor_ticks(1)
            if not ticks or any(a.get_visible() for a in (ticks[0].tick1line, ticks[0].tick2line,
                                                          ticks[0].gridline)):
                continue
            locs = axis.get_minorticklocs()
            if len(locs) and any(axis.get_minor_formatter().format_ticks(locs)):
                continue  # labelled minor ticks (a short log axis, matplotlib's default formatter)
            axis.set_minor_locator(NullLocator())
            n += 1
    return n


def render_files(fig: Any, out: Path, png: str, svg: str) -> None:
    """Write ``fig`` as ``out/png`` then ``out/svg`` and close it: the one rendering path, serial or in a worker.

    The layout is solved once, for the PNG: the SVG reuses it (constrained layout was half of a report's time)."""
    with plt().rc_context({**theme_rc(), **SVG_RC}):
        fig.savefig(out / png, **SAVE_KW["png"])
        fig.set_layout_engine("none")
        fig.savefig(out / svg, **SAVE_KW["svg"])
    plt().close(fig)


class _FigurePool:
    """Worker processes that write pickled figures (:func:`render_files`); errors come back at :meth:`finish`
    (a worker that dies, e.g. killed for memory, is an error too, never a hang)."""

    def __init__(self, jobs: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
        self.pending: list[Any] = []

    def submit(self, fig: Any, out: Path, png: str, svg: str) -> None:
        blob = pickle.dumps(fig, protocol=pickle.HIGHEST_PROTOCOL)
        plt().close(fig)
        self.pending.append(self.pool.submit(_render_pickled, blob, str(out), png, svg))

    def finish(self) -> None:
        try:
            for f in self.pending:
                f.result()
        except BaseException:
            self.close()
            raise
        self.pool.shutdown(wait=True)

    def close(self) -> None:
        """Stop at once (an error or Ctrl-C): queued figures are dropped, running ones killed."""
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the report process, which stops the pool


def _render_pickled(blob: bytes, out: str, png: str, svg: str) -> None:
    render_files(unpickle_figure(blob), Path(out), png, svg)


def unpickle_figure(blob: bytes) -> Any:
    """``pickle.loads`` of a figure, with matplotlib's transform tree relinked by the new objects' ids.

    A transform keeps its parents in a dict keyed by ``id(parent)`` and pickles those keys as they were; unpickled,
    they are the *sending* process's ids (``TransformNode.__setstate__``). A transform created later in this process
    at one of those addresses overwrites a parent's entry, and that parent is no longer invalidated when the figure's
    dpi changes: in a forked worker, whose addresses mirror its parent's, about one SVG in four (written at 72 dpi
    after the PNG at 100) had its tick labels offset by (pad + tick size) x (100/72 - 1) = 3.23 px (issue 26)."""
    from matplotlib.transforms import TransformNode

    orig = TransformNode.__setstate__

    def setstate(self: Any, data: dict[str, Any]) -> None:
        orig(self, data)
        parents: dict[int, Any] = {}
        for ref in list(self._parents.values()):
            node = ref()
            if node is not None:
                parents[id(node)] = weakref.ref(node, lambda _, pop=parents.pop, k=id(node): pop(k, None))
        self._parents = parents

    TransformNode.__setstate__ = setstate  # type: ignore[method-assign]
    try:
        return pickle.loads(blob)
    finally:
        TransformNode.__setstate__ = orig  # type: ignore[method-assign]


_POOL: list[_FigurePool] = []
#: inside :func:`parallel_figures`: folder -> its figure records, written to ``figures.json`` once, at the end
#: (rewriting the whole manifest after every figure was quadratic in the number of figures)
_MANIFESTS: list[dict[Path, list[dict[str, Any]]]] = []


def idle_cpus(window: float = 0.3) -> float:
    """How many CPUs are idle now: the idle share of ``/proc/stat``'s CPU time over ``window`` seconds times the
    CPUs this process may use (niced work counts as busy); where there is no ``/proc/stat``, CPUs minus the
    1-minute load average. The load average lags by a minute, so right after a matrix run it still reads the run's
    load on a host that is already quiet."""
    import os
    import time

    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(window)
        t1, i1 = sample()
        total = os.cpu_count() or n
        return min(n, (i1 - i0) / max(t1 - t0, 1) * total)
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, n - os.getloadavg()[0])
        except (AttributeError, OSError):
            return float(n)


def default_jobs() -> int:
    """Figure workers by default: the idle CPUs (:func:`idle_cpus`), rounded, at most 4; 1 (serial, no worker) when
    fewer than 2 are idle. Workers only pay off on free cores: on this 2-core host with one core busy, the default
    report took 27.0-29.6 s with 2 workers against 22.7-23.3 s serial."""
    idle = idle_cpus()
    return max(1, min(4, int(idle + 0.5))) if idle >= 1.5 else 1


@contextlib.contextmanager
def parallel_figures(jobs: int | None = None) -> Iterator[int]:
    """``with parallel_figures(jobs):`` :func:`save` hands each figure to ``jobs`` worker processes and returns at
    once; leaving the block waits for every file and writes the figure manifests (an error in a worker is raised
    here; on an error or Ctrl-C in the block the workers are stopped and nothing more is written). ``jobs`` None:
    :func:`default_jobs`; 1 (or no ``fork`` on this system): serial, in this process. Yields the number of workers
    (0: serial). The files are the same bytes whatever ``jobs`` (``tests/test_report_speed.py``)."""
    import multiprocessing

    jobs = default_jobs() if jobs is None else int(jobs)
    nested = bool(_POOL or _MANIFESTS)
    pool = None
    if jobs > 1 and not nested and "fork" in multiprocessing.get_all_start_methods():
        pool = _FigurePool(jobs)
        _POOL.append(pool)
    manifests: dict[Path, list[dict[str, Any]]] = {}
    if not nested:
        _MANIFESTS.append(manifests)
    try:
        yield jobs if pool is not None else 0
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    else:
        if pool is not None:
            pool.finish()
        for out, recs in manifests.items():
            (out / MANIFEST).write_text(json.dumps(recs, indent=1))
    finally:
        if pool is not None:
            _POOL.remove(pool)
        if not nested:
            _MANIFESTS.remove(manifests)


def _manifest(out: Path) -> list[dict[str, Any]]:
    """The figure records of ``out`` (the deferred list inside :func:`parallel_figures`, else the file)."""
    if _MANIFESTS:
        if out not in _MANIFESTS[-1]:
            path = out / MANIFEST
            _MANIFESTS[-1][out] = json.loads(path.read_text()) if path.is_file() else []
        return _MANIFESTS[-1][out]
    path = out / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else []


def save(fig: Any, out: Path, stem: str, caption: str, section: str) -> dict[str, Any]:
    """Write ``<stem>.png`` and ``<stem>.svg``; append the figure's record to ``figures.json``; close it.

    ``stem`` is slugged (:func:`slug`): every file a report writes stays inside ``out``. Inside
    :func:`parallel_figures` the files are written by a worker process and the manifest at the end of the block."""
    out.mkdir(parents=True, exist_ok=True)
    stem = unique_stem(out, stem)
    rec = {"name": stem, "png": f"{stem}.png", "svg": f"{stem}.svg", "caption": caption, "section": section,
           "axes": [axes_record(ax) for ax in fig.axes if ax.get_visible()],
           "figure_legend": [t.get_text() for lg in fig.legends for t in lg.get_texts()]}
    drop_invisible_minor_ticks(fig)
    if _POOL:
        _POOL[-1].submit(fig, out, rec["png"], rec["svg"])
    else:
        render_files(fig, out, rec["png"], rec["svg"])
    recs = _manifest(out)
    recs[:] = [r for r in recs if r.get("name") != stem] + [rec]
    if not _MANIFESTS:
        (out / MANIFEST).write_text(json.dumps(recs, indent=1))
    return rec


def unique_stem(out: Path, stem: str) -> str:
    """``slug(stem)``, suffixed ``_2``, ``_3``, ... when a figure of that name is already in ``out``'s manifest
    (two experiment names that slug alike must not overwrite each other's figures)."""
    stem = slug(stem)
    taken = {r.get("name") for r in _manifest(out)}
    if stem not in taken:
        return stem
    i = 2
    while f"{stem}_{i}" in taken:
        i += 1
    return f"{stem}_{i}"


def drop_unused(axes_flat: list[Any], used: int) -> None:
    """Remove the grid cells beyond the first ``used`` (no empty axes in a figure)."""
    for ax in axes_flat[used:]:
        ax.remove()


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    ncol = min(max(n, 1), max_cols)
    return math.ceil(max(n, 1) / ncol), ncol
