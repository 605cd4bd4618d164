"""Figure (g): HE change against edit quality, one point per run and evaluation point, with the
pooled Pearson's r (descriptive) and the within-evaluation-point r with whole runs permuted
(:mod:`sphere.report.correlation`) — the paper's evidence that losing the hyperspherical structure
goes with losing edit quality."""

from __future__ import annotations

import math

import numpy as np

from sphere.evaluation.he import HE_ABS
from sphere.report import correlation
from sphere.report.figures.base import Context, Figure, block_title, pyplot, save
from sphere.report.figures.style import axis_label, metric_info, scale_exponent


def make(ctx: Context, block: str) -> Figure | str:
    m = ctx.corr_metric
    runs = ctx.coll.runs[ctx.coll.runs["block"] == block]
    curves = ctx.coll.curves[ctx.coll.curves["run_id"].isin(runs["run_id"])]
    pts = correlation.points(curves, m).assign(block=block).reset_index(drop=True)
    if len(pts) < 3:
        return f"fewer than 3 evaluation points with both HE and {m!r} (have {len(pts)})"
    if pts["x"].nunique() < 2 or pts["y"].nunique() < 2:
        return f"HE change or {m!r} is constant over the points: no correlation to compute"
    stats = correlation.correlate(pts, "block")
    r, r_in, p_in = stats["r_pooled"], stats["r_within"], stats["p_runs_permuted"]
    within = (
        f"; within evaluation points (centred per number of edits) r = {r_in:.3f}, p = {p_in:.2g} with "
        f"whole runs permuted ({stats['n_runs']} runs)"
        if not math.isnan(r_in)
        else ""
    )
    pts = pts.rename(columns={"x": HE_ABS, "y": m})
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    info = runs.set_index("run_id")
    exp = scale_exponent(pts[HE_ABS])  # HE changes of ~0.01 %: ticks 0-12 in ×10⁻³ %
    he = pts[HE_ABS] / 10.0**exp
    for sid in runs["setting_id"].unique():
        ids = runs[runs["setting_id"] == sid]["run_id"]
        mine = pts[pts["run_id"].isin(ids)]
        if mine.empty:
            continue
        st = ctx.styles[sid]
        on = bool(info.loc[ids.iloc[0], "sphere"])
        ax.scatter(he[mine.index], mine[m], s=22, marker=st["marker"] or "o", label=st["label"],
                   facecolors=st["color"] if on else "none", edgecolors=st["color"], linewidths=1.0)  # fmt: skip
    slope, intercept = np.polyfit(he, pts[m], 1)
    xs = np.linspace(he.min(), he.max(), 50)
    ax.plot(xs, slope * xs + intercept, color="black", linewidth=0.8, linestyle=":")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_xlabel(axis_label(HE_ABS, exp, "HE change, mean over edited layers of |Δ|"), fontsize=9)
    ax.set_ylabel(axis_label(m), fontsize=9)
    ax.set_title(
        f"HE |Δ| vs {metric_info(m)[0].lower()}: pooled r = {r:.3f} (descriptive, {len(pts)} points)"
        + (f"\nwithin evaluation points: r = {r_in:.3f}, p = {p_in:.2g} (runs permuted)" if within else "")
        + block_title(ctx, block),
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return Figure(
        "he_vs_metric",
        f"HE change against {m}",
        f"Each point is one run at one evaluation point (filled: + SPHERE, hollow: baseline); x is the mean over "
        f"edited layers of each layer's |ΔHE|. Pooled Pearson r over all {len(pts)} points = {r:.3f}: descriptive "
        f"only, since points of one run are not independent and HE and edit quality both drift with the number "
        f"of edits{within}. Every headline metric, and the centring among seeds of one setting, are in "
        "tables/paired.md. The paper reports a negative correlation: the more HE drifts, the worse the edits.",
        save(ctx, fig, "he_vs_metric", block),
    )
