"""Figure (h): HE as an early warning. One panel per setting, its seeds overlaid (one colour each):
the mean over edited layers of |ΔHE| after every batch on the left axis, efficacy at the evaluation
points on the right with top-1 efficacy beside it (where a collapse shows, which the failure line
cannot see), the failure line (efficacy 50 %), each run's failure point as a vertical line
and, with calibration seeds, the setting's |ΔHE| threshold and each run's first crossing of it
(:mod:`sphere.report.early_warning`)."""

from __future__ import annotations

import math

from sphere.report import early_warning as ew_mod
from sphere.report.figures.base import Context, Figure, block_settings, block_title, grid, save
from sphere.report.figures.style import axis_label, edits_axis, scale_exponent

_SEED_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def make(ctx: Context, block: str) -> Figure | str:
    warning = ctx.warning if ctx.warning is not None else ew_mod.analyse(ctx.coll)
    settings = block_settings(ctx, block)
    runs = ctx.coll.runs[ctx.coll.runs["setting_id"].isin(settings["setting_id"])]
    sig = warning.signals[warning.signals["run_id"].isin(runs["run_id"])]
    sig = sig[sig[ew_mod.SIGNAL_HE].notna()]
    if sig.empty:
        return "no run has per-batch HE (he/layer_<l> after every batch)"
    with_he = [
        s for s in settings["setting_id"] if runs[runs["setting_id"] == s]["run_id"].isin(sig["run_id"]).any()
    ]
    exp = scale_exponent(sig[ew_mod.SIGNAL_HE].to_numpy())
    scale = 10.0**exp
    curves = ctx.coll.curves
    eff = curves[(curves["metric"] == ew_mod.EFFICACY) & curves["run_id"].isin(runs["run_id"])]
    top1 = curves[(curves["metric"] == ew_mod.EFFICACY_TOP1) & curves["run_id"].isin(runs["run_id"])]
    failures = warning.failures.set_index("run_id")
    thresholds = warning.thresholds
    judgement = warning.judgement
    fig, axes = grid(len(with_he), ncols=3, size=(4.2, 3.1))
    for ax, sid in zip(axes, with_he):
        right = ax.twinx()
        label = str(settings.loc[settings["setting_id"] == sid, "label"].iloc[0])
        for i, (_, run) in enumerate(runs[runs["setting_id"] == sid].sort_values("seed").iterrows()):
            rid, colour = run["run_id"], _SEED_COLOURS[i % len(_SEED_COLOURS)]
            s = sig[sig["run_id"] == rid].sort_values("n_edits")
            ax.plot(s["n_edits"], s[ew_mod.SIGNAL_HE] / scale, color=colour, linewidth=1.3,
                    label=f"seed {run['seed']}")  # fmt: skip
            e = eff[(eff["run_id"] == rid) & (eff["n_edits_done"] > 0)].sort_values("n_edits_done")
            right.plot(e["n_edits_done"], e["value"], color=colour, linestyle=":", marker="o", markersize=3)
            t1 = top1[(top1["run_id"] == rid) & (top1["n_edits_done"] > 0)].sort_values("n_edits_done")
            right.plot(t1["n_edits_done"], t1["value"], color=colour, linestyle=":", marker="x", markersize=4,
                       linewidth=0.8, alpha=0.7)  # fmt: skip
            failed = float(failures.loc[rid, "failed_at"]) if rid in failures.index else math.nan
            if not math.isnan(failed):
                ax.axvline(failed, color=colour, linestyle="--", linewidth=1.0)
            j = judgement[(judgement["run_id"] == rid) & (judgement["signal"] == ew_mod.SIGNAL_HE)]
            crossed = float(j["crossed_at"].iloc[0]) if len(j) else math.nan
            if not math.isnan(crossed):
                y = s.loc[s["n_edits"] == crossed, ew_mod.SIGNAL_HE]
                ax.plot([crossed], [float(y.iloc[0]) / scale], marker="v", markersize=8, color=colour,
                        markeredgecolor="black", linestyle="none")  # fmt: skip
        t = thresholds[(thresholds["setting_id"] == sid) & (thresholds["signal"] == ew_mod.SIGNAL_HE)]
        if len(t) and not math.isnan(float(t["threshold"].iloc[0])):
            ax.axhline(float(t["threshold"].iloc[0]) / scale, color="grey", linestyle="-.", linewidth=0.9)
        right.axhline(ew_mod.FAILURE_EFFICACY, color="black", linewidth=0.6, alpha=0.5)
        right.set_ylim(-2, 102)
        right.set_ylabel(axis_label(ew_mod.EFFICACY) + " (dotted; ×: top-1)", fontsize=8)
        right.tick_params(labelsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel(axis_label(ew_mod.SIGNAL_HE, exp), fontsize=8)
        edits_axis(ax)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("HE as an early warning" + block_title(ctx, block), fontsize=11)
    fig.tight_layout()
    seeds = ", ".join(map(str, warning.calibration_seeds))
    calibrated = (
        f" The dash-dotted line is the setting's threshold, calibrated on seeds {seeds} (the largest value "
        "in their runs that never fail); ▼ marks each run's first batch above it."
        if warning.calibration_seeds
        else " No calibration seeds were given (--warn-calibration-seeds), so no threshold is drawn."
    )
    return Figure(
        "early_warning",
        "HE as an early warning",
        "Solid: mean over edited layers of |ΔHE| % after every batch (left axis); dotted: efficacy (●) and "
        "top-1 efficacy (×) at the evaluation points (right axis; the horizontal line is the failure line, "
        f"{ew_mod.FAILURE_EFFICACY:g} %, which a collapse towards chance does not cross: top-1 shows it); "
        "dashed vertical: the run's failure point (efficacy below the line or specificity "
        f"{ew_mod.FAILURE_SPECIFICITY_DROP:g} points below the unedited model's)." + calibrated,
        save(ctx, fig, "early_warning", block),
    )
