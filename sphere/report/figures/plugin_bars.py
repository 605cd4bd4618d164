"""Figure (c): SPHERE as a plug-in — the final edit quality (the first three headline metrics) of
each editor alone and with its best SPHERE setting, as paired bars with their error bars."""

from __future__ import annotations

import numpy as np

from sphere.evaluation.catalogue import headline
from sphere.report.aggregate import aggregate_settings
from sphere.report.collect import editor_display_name
from sphere.report.figures.base import Context, Figure, block_title, pyplot, save
from sphere.report.figures.style import axis_label, editor_colours, metric_info


def make(ctx: Context, block: str) -> Figure | str:
    runs = ctx.coll.runs[ctx.coll.runs["block"] == block]
    metrics = [m for m in headline()[:3] if m in runs and runs[m].notna().any()]  # the paper's three
    if not metrics:
        return "no finished run (no summary.json) with efficacy/generalization/specificity"
    agg = aggregate_settings(runs, sorted({*metrics, ctx.metric} & set(runs.columns)))
    pairs = []
    for editor in sorted(agg["editor"].unique()):
        mine = agg[agg["editor"] == editor]
        base = mine[~mine["sphere"] & (mine[f"{metrics[0]}_n"] > 0)]
        sph = mine[mine["sphere"] & (mine[f"{metrics[0]}_n"] > 0)]
        if base.empty or sph.empty:
            continue
        key = f"{ctx.metric}_mean" if f"{ctx.metric}_mean" in sph else f"{metrics[0]}_mean"
        pairs.append((editor, base.iloc[0], sph.sort_values(key, ascending=False).iloc[0]))
    if not pairs:
        return "no editor has both a finished baseline run and a finished + SPHERE run"
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.2 * len(metrics) + 0.4 * len(pairs), 3.4), squeeze=False
    )
    x = np.arange(len(pairs))
    for ax, m in zip(axes[0], metrics):
        for off, which, hatch in ((-0.2, 1, "//"), (0.2, 2, None)):
            vals = [float(p[which][f"{m}_mean"]) for p in pairs]
            errs = [float(p[which][f"{m}_err"]) for p in pairs]
            colours = [editor_colours(ctx.settings["editor"])[p[0]][which - 1] for p in pairs]
            bars = ax.bar(x + off, vals, 0.4, color=colours, alpha=0.85, hatch=hatch, edgecolor="black",
                          linewidth=0.5, yerr=[e if np.isfinite(e) else 0 for e in errs], capsize=3)  # fmt: skip
            for bar, v in zip(bars, vals):  # inside the bar: a wide error bar would push an edge label out
                ax.text(bar.get_x() + bar.get_width() / 2, max(v, 0) / 2, f"{v:.1f}", ha="center", va="center",
                        fontsize=7, rotation=90 if len(pairs) > 3 else 0,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})  # fmt: skip
        ax.set_xticks(x, [editor_display_name(p[0]) for p in pairs], fontsize=8)
        ax.set_title(metric_info(m)[0], fontsize=10)
        ax.set_ylim(0, 110)
        ax.set_ylabel(axis_label(m), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    keys = [Patch(fc="white", ec="black", hatch="//", label="baseline (lighter hue)"),
            Patch(fc="0.45", ec="black", label="+ SPHERE (darker hue)")]  # fmt: skip
    fig.legend(handles=keys, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8)
    chosen = "; ".join(f"{editor_display_name(e)}: {s['label'].split('+ ', 1)[-1]}" for e, _, s in pairs)
    fig.suptitle(
        "SPHERE as a plug-in: each editor without (hatched) and with SPHERE" + block_title(ctx, block),
        fontsize=10,
    )
    fig.tight_layout()
    return Figure(
        "plugin_bars",
        "SPHERE as a plug-in",
        f"Final edit quality of each editor alone (hatched) and with SPHERE (solid); the SPHERE setting "
        f"shown is the one with the highest mean {ctx.metric} per editor ({chosen}). Error bars: 95 % CI "
        "over seeds, or the per-case SE for a single seed.",
        save(ctx, fig, "plugin_bars", block),
    )
