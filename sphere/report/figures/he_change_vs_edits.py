"""Figure (b): the hyperspherical energy change of each edited layer against the number of edits,
one panel per layer, one line per setting."""

from __future__ import annotations

from sphere.report.figures.base import Context, Figure, block_settings, block_title, save
from sphere.report.figures.curve_grid import curve_figure


def make(ctx: Context, block: str) -> Figure | str:
    settings = block_settings(ctx, block)
    curves = ctx.coll.curves[ctx.coll.curves["setting_id"].isin(settings["setting_id"])]
    layers = sorted(
        {m.split("/", 1)[1] for m in curves["metric"].unique() if m.startswith("he_change_pct/")},
        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
    )
    if not layers:
        return "no he/layer_<l> in metrics.jsonl (eval.evaluators without he?)"
    metrics = [(f"he_change_pct/{lay}", f"layer {lay}") for lay in layers]
    fig = curve_figure(
        ctx, block, metrics, "Hyperspherical energy change per layer" + block_title(ctx, block)
    )
    assert fig is not None
    return Figure(
        "he_change_vs_edits",
        "Hyperspherical energy change per edited layer",
        "100·(HE − HE₀)/HE₀ of each edited matrix after each batch. SPHERE's claim: the edited matrices "
        "keep their hyperspherical uniformity (HE stays near its unedited value) where the baseline drifts.",
        save(ctx, fig, "he_change_vs_edits", block),
    )
