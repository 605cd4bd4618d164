"""Figure (f): the angular distribution of neurons — the histogram of pairwise cosines between the
rows of one edited matrix before editing (W₀) and after the last edit, per editor, from the runs'
checkpoints; below it, the change of the density from W₀."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sphere.report.collect import editor_display_name
from sphere.report.figures.base import Context, Figure, block_title, pyplot, save
from sphere.report.figures.cosines import (
    FINE_BINS,
    MAX_ROWS,
    cosine_histogram,
    cosine_sd,
    display_range,
    rebin,
    sample_rows,
)
from sphere.report.figures.weights import read_layer_weights


def make(ctx: Context, block: str) -> Figure | str:
    runs = ctx.coll.runs[(ctx.coll.runs["block"] == block) & ctx.coll.runs["finished"]]
    runs = runs[runs["has_checkpoint"]]
    if runs.empty:
        return "no finished run with checkpoint/checkpoint.safetensors"
    hists: dict[str, list[np.ndarray]] = {}
    pre: dict[str, np.ndarray] = {}
    problems, layer_used = [], None
    for _, r in runs.iterrows():
        try:
            layer, w, w0 = read_layer_weights(
                Path(r["path"]), ctx.layer if ctx.layer is not None else layer_used
            )
        except Exception as e:  # a damaged or foreign checkpoint skips that run, not the figure
            problems.append(f"{r['run_id']}: {type(e).__name__}: {e}")
            continue
        layer_used = layer
        rows = sample_rows(w.shape[0])
        hists.setdefault(r["setting_id"], []).append(cosine_histogram(w, rows))
        pre.setdefault(r["editor"], cosine_histogram(w0, rows))
    if not hists:
        return "no checkpoint could be read: " + "; ".join(problems)
    fine_edges = np.linspace(-1.0, 1.0, FINE_BINS + 1)
    all_counts = [c for cs in hists.values() for c in cs] + list(pre.values())
    lo, hi = display_range(all_counts, fine_edges)
    editors = sorted(pre)
    centres = (fine_edges[:-1] + fine_edges[1:]) / 2
    plt = pyplot()
    fig, axes = plt.subplots(2, len(editors), figsize=(4.6 * len(editors), 6.2), squeeze=False)
    for col, editor in enumerate(editors):
        ax, dax = axes[0][col], axes[1][col]
        edges, dens0 = rebin(pre[editor], fine_edges, lo, hi)
        ax.fill_between(edges, dens0, step="post", color="0.75", label="before editing (W₀)")
        sd0 = cosine_sd(pre[editor], centres)
        for sid, counts in hists.items():
            s = ctx.settings[ctx.settings["setting_id"] == sid].iloc[0]
            if s["editor"] != editor:
                continue
            mean_counts = np.mean(counts, axis=0)
            edges, dens = rebin(mean_counts, fine_edges, lo, hi)
            st = ctx.styles[sid]
            d_sd = cosine_sd(mean_counts, centres) - sd0
            ax.step(edges, dens, where="post", color=st["color"], linestyle=st["linestyle"], linewidth=1.2,
                    label=f"{st['label']} (n={len(counts)})")  # fmt: skip
            c_edges, c_dens = rebin(mean_counts, fine_edges, lo, hi, n_bins=30)
            c_dens0 = rebin(pre[editor], fine_edges, lo, hi, n_bins=30)[1]
            dax.step(c_edges, c_dens - c_dens0, where="post", color=st["color"], linestyle=st["linestyle"],
                     linewidth=1.2, label=f"{st['label']}: sd of cos {d_sd:+.2e}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(editor_display_name(editor), fontsize=10)
        ax.set_ylabel("density (log)", fontsize=8)
        dax.axhline(0.0, color="0.5", linewidth=0.6)
        dax.set_xlabel("cosine similarity between rows", fontsize=8)
        dax.set_ylabel(f"density change from W₀ (sd of cos {sd0:.4f})", fontsize=8)
        for a in (ax, dax):
            a.tick_params(labelsize=7)
            a.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(
        f"Angular distribution of neurons, layer {layer_used}" + block_title(ctx, block), fontsize=10
    )
    fig.tight_layout()
    extra = f" Unreadable checkpoints: {'; '.join(problems)}." if problems else ""
    return Figure(
        "angular_distribution",
        f"Angular distribution of neurons (layer {layer_used})",
        f"Histogram of the pairwise cosine similarities between rows of the edited matrix of layer "
        f"{layer_used} (at most {MAX_ROWS} rows, the same fixed sample for every run) before editing "
        "(grey, W₀) and after the last edit (lines, pooled over seeds); below, the change of the density "
        "from W₀, with the change of the cosines' standard deviation in the legend. Uniformly spread "
        f"neurons concentrate near 0; edits that collapse directions fatten the tails (sd grows).{extra}",
        save(ctx, fig, "angular_distribution", block),
    )
