"""Figure (e): the general-ability tasks (the general evaluator's metrics) against the number of
edits, one panel per task, one line per setting."""

from __future__ import annotations

from sphere.evaluation.catalogue import of_evaluator
from sphere.report.figures.base import Context, Figure, block_settings, block_title, save
from sphere.report.figures.curve_grid import curve_figure


def make(ctx: Context, block: str) -> Figure | str:
    settings = block_settings(ctx, block)
    curves = ctx.coll.curves[ctx.coll.curves["setting_id"].isin(settings["setting_id"])]
    tasks = of_evaluator("general", curves["metric"].unique())
    if not tasks:
        return "no general-ability metrics in metrics.jsonl (the general evaluator did not run)"
    metrics = [(m.key, m.label) for m in tasks]
    fig = curve_figure(
        ctx, block, metrics, "General abilities against the number of edits" + block_title(ctx, block)
    )
    assert fig is not None
    return Figure(
        "general_vs_edits",
        "General abilities against the number of edits",
        "Downstream task accuracy measured before editing and every eval.general.every edits; mean over "
        "seeds with 95 % CI. Editing should leave these where the unedited model had them.",
        save(ctx, fig, "general_vs_edits", block),
    )
