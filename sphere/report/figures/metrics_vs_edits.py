"""Figure (a): the edit-quality metrics (the catalogue's curve metrics) against the number of
edits, one panel per metric, one line per setting."""

from __future__ import annotations

from sphere.evaluation.catalogue import curve_metrics
from sphere.report.figures.base import Context, Figure, block_title, save
from sphere.report.figures.curve_grid import curve_figure
from sphere.report.figures.style import metric_info


def make(ctx: Context, block: str) -> Figure | str:
    metrics = [(m, metric_info(m)[0]) for m in curve_metrics()]
    fig = curve_figure(
        ctx, block, metrics, "Edit quality against the number of edits" + block_title(ctx, block)
    )
    if fig is None:
        return "no edit-quality metric in any metrics.jsonl (eval.evaluators without edit_quality?)"
    return Figure(
        "metrics_vs_edits",
        "Edit quality against the number of edits",
        "Mean over seeds at each evaluation point (eval.every), shaded: 95 % CI over seeds. Dashed, lighter "
        "hue: the editor alone; solid with markers, darker hue: + SPHERE. The point at 0 edits is the "
        "unedited model. Fluency and consistency are scores ×100, not percentages.",
        save(ctx, fig, "metrics_vs_edits", block),
    )
