"""Figure conventions (issue 26): mathtext labels with the problem's own target symbol, log axes for gaps and
squared norms, one fixed (colour, line style, marker) per method, figure files named after their experiment."""
from __future__ import annotations

import json

from blobench import harness
from blobench.report import write_report
from blobench.report.style import method_styles, slug
from tests.test_report import make_run


def _builtin_estimators() -> list[str]:
    """The registered estimators that blobench ships (earlier tests register plugins in this process)."""
    from blobench.core.registry import ESTIMATORS

    return [n for n in harness.estimators() if ESTIMATORS.get(n).__module__.startswith("blobench.estimators.")]


def test_every_method_has_its_own_style_and_keeps_it():
    names = _builtin_estimators()
    assert len(names) <= 40  # 10 colours x 4 line styles: beyond 40, two methods would share colour and line style
    styles = method_styles(names)
    assert len(set(styles.values())) == len(names)  # no two methods drawn alike
    # the style of a method depends only on the registry, not on which methods a figure shows
    assert method_styles(names + ["zz-plugin"])[names[0]] == styles[names[0]]
    # colours that repeat (more than 10 methods) always differ in line style and marker
    for a in names:
        for b in names:
            if a < b and styles[a][0] == styles[b][0]:
                assert styles[a][1] != styles[b][1] and styles[a][2] != styles[b][2], (a, b)


def test_convergence_labels_log_axes_and_file_names(tmp_path):
    run = make_run(tmp_path, {"convergence", "error_vs_budget"})
    out = tmp_path / "rep"
    write_report(run, out_dir=out)
    figs = {f["name"]: f for f in json.loads((out / "figures.json").read_text())}
    assert {"convergence_synthetic", "error_vs_budget_synthetic"} <= set(figs)
    axes = figs["convergence_synthetic"]["axes"]
    by_label = {a["ylabel"]: a for a in axes}
    assert r"$\|\nabla\Phi(x_t)\|^2$" in by_label and r"$\Phi(x_t) - \Phi^*$" in by_label
    assert all(a["yscale"] == "log" for a in axes)  # the gap and the squared norm on log axes
    assert figs["error_vs_budget_synthetic"]["axes"][0]["ylabel"] == r"$\|\hat{g} - \nabla\Phi(x)\|$"


def test_unrolled_problems_are_labelled_with_the_meta_objective():
    from blobench.report.convergence import target_labels

    assert "M^{(r)}" in target_labels("meta-quadratic", {"unroll_steps": 5})["grad_norm_sq"]
    assert "M^{(r)}" not in target_labels("quadratic", {"dim": 4})["grad_norm_sq"]


def test_slug():
    assert slug("x/../../escaped") == "x-escaped" and slug("..") == "figure" and slug("a b/c") == "a-b-c"


def test_a_tall_grid_has_its_legend_beside_the_first_row():
    from blobench.report import style

    with style.themed():
        for rows, where in ((3, "right"), (1, "below")):
            fig, axes = style.new_figure(rows, 3, w=4.0, h=3.0, legend_rows=1)
            for ax in axes.flat:
                ax.plot([0, 1], [0, 1], label="m")
            style.legend_outside(fig, list(axes.flat))
            fig.canvas.draw()
            box = fig.legends[0].get_window_extent()
            grid = axes[0][0].get_window_extent()
            if where == "right":
                assert box.x0 >= axes[0][2].get_window_extent().x1 and box.y1 >= grid.y0
            else:
                assert box.y1 <= grid.y0
            style.plt().close(fig)


def test_complexity_slope_only_with_an_interval_that_means_something():
    """`stocbio 0.90 [-1.74, 3.53]` from 3 points was drawn as a slope: now the legend says why there is none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from blobench.measure.complexity import draw_complexity, slope_text

    assert slope_text({"slope": 0.9, "lo": -1.74, "hi": 3.53, "n": 3}) == \
        "no slope: 3 points, 95% interval [-1.74, 3.53] too wide"
    assert slope_text({"slope": 2.0, "lo": 1.9, "hi": 2.1, "n": 5}) == "slope 2.00 [1.90, 2.10]"
    assert slope_text({"slope": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 2}).startswith("no slope: 2")
    rows = []
    for est, ys in (("exact-ish", [10.0, 40.0, 160.0, 640.0]), ("noisy", [10.0, 200.0, 12.0, 300.0])):
        for k, y in zip((2.0, 4.0, 8.0, 16.0), ys):
            rows.append({"metric": "complexity", "estimator": est, "kappa_y": k, "eps": 1e-3, "quantity": "calls_to_eps",
                         "value": y, "upper_bound_order": float("nan")})
    fig, ax = plt.subplots()
    draw_complexity(ax, pd.DataFrame(rows))
    labels = [ln.get_label() for ln in ax.get_lines()]
    plt.close(fig)
    assert labels[0] == "exact-ish: slope 2.00 [2.00, 2.00]" and labels[1].startswith("noisy: no slope: 4 points")
