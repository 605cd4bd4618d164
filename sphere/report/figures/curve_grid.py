"""The grid of metric-against-edits panels that figures (a), (b) and (e) share: one panel per
metric, one line per setting (mean over seeds at each evaluation point, 95 % CI shaded where there
are ≥ 2 seeds), styled by :mod:`.style`."""

from __future__ import annotations

from typing import Any

import numpy as np

from sphere.report.aggregate import aggregate_curve
from sphere.report.figures.base import Context, block_settings, grid, legend_below
from sphere.report.figures.style import axis_label, edits_axis, is_bounded_percent, scale_exponent


def curve_figure(ctx: Context, block: str, metrics: list[tuple[str, str]], title: str) -> Any | None:
    """A grid of metric-vs-edits panels, one line per setting (mean over seeds, CI shaded); tiny
    values (HE changes) are drawn in one scaled unit across the panels, named on each axis."""
    settings = block_settings(ctx, block)
    curves = ctx.coll.curves[ctx.coll.curves["setting_id"].isin(settings["setting_id"])]
    present = [(m, t) for m, t in metrics if (curves["metric"] == m).any()]
    if not present:
        return None
    aggs = {m: aggregate_curve(curves, m) for m, _ in present}
    exp = scale_exponent(np.concatenate([a["mean"].to_numpy() for a in aggs.values()]))
    fig, axes = grid(len(present))
    for ax, (m, t) in zip(axes, present):
        agg = aggs[m]
        for sid in settings["setting_id"]:
            pts = agg[agg["setting_id"] == sid].sort_values("n_edits_done")
            if pts.empty:
                continue
            st = ctx.styles[sid]
            x, y, ci = pts["n_edits_done"].to_numpy(), pts["mean"].to_numpy(), pts["ci"].to_numpy()
            ax.plot(x, y / 10.0**exp, color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                    markersize=4, linewidth=1.4, label=st["label"])  # fmt: skip
            ok = np.isfinite(ci)
            if ok.any():
                lo, hi = (y - ci)[ok], (y + ci)[ok]
                # a t interval of 2-3 seeds can reach past 0-100 %; a share of cases cannot
                if is_bounded_percent(m):
                    lo, hi = np.clip(lo, 0, 100), np.clip(hi, 0, 100)
                ax.fill_between(
                    x[ok], lo / 10.0**exp, hi / 10.0**exp, color=st["color"], alpha=0.15, linewidth=0
                )
        ax.set_title(t, fontsize=10)
        edits_axis(ax)
        ax.set_ylabel(axis_label(m, exp), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    legend_below(fig, axes)
    return fig
