"""Figure (d): one heatmap per editor of the report's metric over SPHERE's α × β (or α × r)
settings, mean over seeds, with the editor's baseline value in the title."""

from __future__ import annotations

import numpy as np

from sphere.files import safe_name
from sphere.report.aggregate import aggregate_settings
from sphere.report.collect import editor_display_name
from sphere.report.figures.base import Context, Figure, block_title, pyplot, save
from sphere.report.figures.style import axis_label, metric_info


def make(ctx: Context, block: str) -> list[Figure | str]:
    runs = ctx.coll.runs[(ctx.coll.runs["block"] == block) & ctx.coll.runs["sphere"]]
    m = ctx.metric
    if runs.empty:
        return ["no + SPHERE run"]
    if m not in runs or not runs[m].notna().any():
        return [f"no finished + SPHERE run has {m!r}"]
    out: list[Figure | str] = []
    for editor in sorted(runs["editor"].unique()):
        mine = runs[runs["editor"] == editor]
        agg = aggregate_settings(mine, [m])
        agg = agg[agg[f"{m}_n"] > 0]
        by = "rank" if agg["rank"].notna().all() else "beta" if agg["rank"].isna().all() else None
        name = editor_display_name(editor)
        if by is None:
            out.append(f"{name}: its SPHERE runs mix β and r settings")
            continue
        if agg["alpha"].nunique() < 2 or agg[by].nunique() < 2:
            out.append(f"{name}: the SPHERE runs do not vary both α and {'r' if by == 'rank' else 'β'}")
            continue
        grid = agg.pivot_table(index="alpha", columns=by, values=f"{m}_mean", aggfunc="mean")
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.4, 0.8 * grid.shape[0] + 1.6))
        im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
        fig.colorbar(im, ax=ax, label=f"{axis_label(m)}, mean over seeds")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.set_xlabel("r (rank)" if by == "rank" else "β (energy fraction)")
        ax.set_ylabel("α (suppression strength)")
        vals = grid.to_numpy()
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        fmt = ".1f" if np.nanmax(np.abs(vals)) >= 1 else ".3g"  # HE changes of 0.01 % would print 0.0
        for (i, j), v in np.ndenumerate(vals):
            if np.isfinite(v):
                colour = "white" if hi > lo and (v - lo) / (hi - lo) < 0.5 else "black"
                ax.text(j, i, f"{v:{fmt}}", ha="center", va="center", fontsize=8, color=colour)
        base = ctx.coll.runs[(ctx.coll.runs["block"] == block) & ~ctx.coll.runs["sphere"]
                             & (ctx.coll.runs["editor"] == editor)]  # fmt: skip
        base_txt = f" (baseline {base[m].mean():{fmt}})" if m in base and base[m].notna().any() else ""
        ax.set_title(f"{name} + SPHERE: {metric_info(m)[0]}{base_txt}" + block_title(ctx, block), fontsize=9)
        fig.tight_layout()
        stem = f"heatmap_{safe_name(m)}_{safe_name(editor)}"
        out.append(
            Figure(
                stem,
                f"{name} + SPHERE: {m} over α and {'r' if by == 'rank' else 'β'}",
                f"Mean final {m} over seeds for each SPHERE setting; empty cells were not run or not "
                "finished. The baseline value is in the title for reference.",
                save(ctx, fig, stem, block),
            )
        )
    return out
