"""Report speed (issue 26): figures rendered by worker processes give the same bytes as the serial path; the
savings that apply to every figure change no pixel; errors and Ctrl-C in the parallel path leave the previous
report whole and no worker behind."""
from __future__ import annotations

import io
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from blobench.report import style, write_report
from tests.test_report import make_run


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("speed"), {"error_vs_budget", "convergence"})


def test_parallel_figures_are_byte_identical_to_the_serial_path(run, tmp_path):
    serial = _files(write_report(run, out_dir=tmp_path / "j1", jobs=1).parent)
    parallel = _files(write_report(run, out_dir=tmp_path / "j2", jobs=2).parent)
    figs = [n for n in serial if n.endswith(".png")]
    assert len(figs) >= 2 and all(n[:-4] + ".svg" in serial for n in figs)
    assert serial.keys() == parallel.keys()
    assert [n for n in serial if serial[n] != parallel[n]] == []
    assert b"<dc:date>" not in serial[figs[0][:-4] + ".svg"]  # reproducible SVG: no date, constant id salt
    assert multiprocessing.active_children() == []  # the workers are gone


def _parents_keyed_by_id(fig) -> tuple[int, int]:
    """(transform links whose key is the parent's id, all links) over the figure's axes and figure transforms."""
    from matplotlib.transforms import TransformNode

    seen, todo, good, total = set(), [], 0, 0
    for ax in fig.axes:
        todo += [ax.transData, ax.transAxes, ax.transScale, ax.transLimits, ax.xaxis.get_transform(),
                 ax.get_xaxis_text1_transform(3.5)[0], ax.get_yaxis_text1_transform(3.5)[0]]
    todo += [fig.dpi_scale_trans, fig.transFigure]
    while todo:
        node = todo.pop()
        if id(node) in seen or not isinstance(node, TransformNode):
            continue
        seen.add(id(node))
        for key, ref in node._parents.items():
            parent = ref()
            if parent is not None:
                total += 1
                good += key == id(parent)
                todo.append(parent)
        todo += [v for v in vars(node).values() if isinstance(v, TransformNode)]
    return good, total


def test_an_unpickled_figure_links_its_transforms_by_the_new_ids():
    """The cause of the old serial/worker SVG difference (1 report in 4): matplotlib unpickles a transform's parent
    links keyed by the sending process's ids, so a transform created later at such an address unhooks a parent from
    dpi invalidation. ``unpickle_figure`` keys them by the new objects' ids; plain ``pickle.loads`` is the control."""
    import pickle

    with style.themed() as plt:
        fig, axes = plt.subplots(1, 2)
        for ax in axes:
            ax.semilogy([1, 2, 3], [1e-3, 1e-1, 1e1])
            ax.set_ylabel("y")
    blob = pickle.dumps(fig)
    plt.close(fig)
    good, total = _parents_keyed_by_id(style.unpickle_figure(blob))
    assert total > 20 and good == total
    good, total = _parents_keyed_by_id(pickle.loads(blob))  # control: matplotlib's own unpickling
    assert total > 20 and good < total / 2


def test_log_tick_labels_are_plain_text_superscripts():
    from blobench.report._ticks import superscript_label

    assert superscript_label(r"$\mathdefault{10^{-3}}$") == "10\u207b\u00b3"
    assert superscript_label(r"$\mathdefault{2\times10^{-12}}$") == "2\u00d710\u207b\u00b9\u00b2"
    assert superscript_label(r"$\mathdefault{10^{0}}$") == "10\u2070"
    assert superscript_label(r"$\mathdefault{10^{0.30}}$") == r"$\mathdefault{10^{0.30}}$"  # not b^int: unchanged
    with style.themed() as plt:
        fig, ax = plt.subplots()
        ax.semilogy([1, 2], [1e-4, 1e2])
        style.tidy_log_axis(ax)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        plt.close(fig)
    assert labels and all("$" not in t for t in labels) and "10\u207b\u2074" in labels


def test_default_workers_follow_the_idle_cpus(monkeypatch):
    n = __import__("os").cpu_count()
    assert 0.0 <= style.idle_cpus(0.05) <= n
    for idle, jobs in [(0.0, 1), (1.4, 1), (1.6, 2), (2.4, 2), (3.6, 4), (16.0, 4)]:
        monkeypatch.setattr(style, "idle_cpus", lambda window=0.3, v=idle: v)
        assert style.default_jobs() == jobs, idle
    monkeypatch.setattr(style, "idle_cpus", lambda window=0.3: 0.2)
    with style.parallel_figures(None) as n_workers:  # a busy host: serial
        assert n_workers == 0 and not style._POOL
    monkeypatch.setattr(style, "idle_cpus", lambda window=0.3: 2.0)
    with style.parallel_figures(None) as n_workers:
        assert n_workers == 2 and style._POOL


def test_parallel_figures_uses_workers_and_serial_does_not():
    with style.parallel_figures(2) as n:
        assert n == 2 and style._POOL
    with style.parallel_figures(1) as n:
        assert n == 0 and not style._POOL


def _render_fails(*args):
    raise RuntimeError("a figure failed in its worker")


def test_an_error_in_a_worker_fails_the_report_and_keeps_the_previous_one(run, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    write_report(run, out_dir=out, jobs=2)
    before = _files(out)
    monkeypatch.setattr(style, "_render_pickled", _render_fails)  # the workers are forked after this
    with pytest.raises(RuntimeError, match="failed in its worker"):
        write_report(run, out_dir=out, jobs=2)
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert multiprocessing.active_children() == []


def test_ctrl_c_in_a_section_stops_the_workers(run, tmp_path, monkeypatch):
    import blobench.report.base as base

    out = tmp_path / "rep"
    write_report(run, out_dir=out, jobs=2)
    before = _files(out)

    def interrupted(ctx, doc):
        raise KeyboardInterrupt

    monkeypatch.setattr("blobench.report.write.SECTIONS",
                        sorted(base.SECTIONS + [base.Section("boom", 41, interrupted)], key=lambda s: s.order))
    with pytest.raises(KeyboardInterrupt):
        write_report(run, out_dir=out, jobs=2)  # the error/convergence figures are already with the workers
    assert _files(out) == before
    assert multiprocessing.active_children() == []


def _log_figure(lo: float, hi: float, ylabel: str = r"$\|\nabla\Phi(x_t)\|^2$"):
    with style.themed():
        fig, axes = style.new_figure(1, 2)
        for ax in axes[0]:
            x = np.arange(30)
            ax.plot(x, np.geomspace(hi, lo, 30), "-o", label="m")
            ax.set_yscale("log")
            style.tidy_log_axis(ax)
            ax.set_ylabel(ylabel)
        style.legend_outside(fig, list(axes.flat))
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    with style.themed():
        fig.savefig(buf, format="png", dpi=style.DPI)
    return buf.getvalue()


def test_invisible_minor_ticks_are_dropped_without_changing_a_pixel():
    """A log axis over 12 decades: its ~100 minor ticks draw nothing (no tick mark in the theme, no label), and
    dropping them leaves the PNG byte-identical."""
    keep, drop = _log_figure(1e-12, 1.0), _log_figure(1e-12, 1.0)
    assert style.drop_invisible_minor_ticks(drop) == 2
    assert _png(keep) == _png(drop)


def test_a_log_axis_within_one_decade_labels_its_minor_ticks():
    """Before, an axis spanning less than a decade (no 10^k in view) had no tick label at all."""
    fig = _log_figure(0.02, 0.08)
    assert style.drop_invisible_minor_ticks(fig) == 0  # they carry the labels: kept
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.yaxis.get_minorticklabels() + ax.yaxis.get_majorticklabels() if t.get_text()]
    assert len(labels) >= 2
