"""The report's figures, each from what the runs on disk can support (a figure the data cannot
support is skipped with its reason, shown on the HTML page; partial data never stops the report).

(a) edit-quality metrics against the number of edits, (b) HE change per layer against edits,
(c) the plug-in bars (each editor with and without SPHERE), (d) the α × β (or α × r) heatmap,
(e) general-ability curves, (f) the angular distribution of neurons from checkpoints and
(g) HE change against edit quality with Pearson's r — the paper's evidence that losing the
hyperspherical structure goes with losing edit quality.

Styling (colours, units, ticks) lives in :mod:`sphere.report.style`: per editor a light dashed
baseline and a dark solid + SPHERE in another hue, one marker per SPHERE setting; a line is the mean
over seeds with its 95 % CI shaded where there are ≥ 2.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sphere.evaluation.catalogue import composite, curve_metrics, headline, of_evaluator
from sphere.evaluation.he import HE_ABS
from sphere.io import atomic_write, safe_name
from sphere.report import correlation
from sphere.report.collect import BLOCK_COLS, Collection, editor_display_name
from sphere.report.stats import aggregate_curve, aggregate_settings
from sphere.report.style import (
    axis_label,
    editor_colours,
    edits_axis,
    is_bounded_percent,
    metric_info,
    scale_exponent,
    setting_styles,
)

log = logging.getLogger(__name__)

MAX_ROWS = 2048  # rows sampled for the pairwise cosines (2048² / 2 ≈ 2 M pairs)
_FINE_BINS = 20000  # cosines are histogrammed finely on [-1, 1] once, then cropped and rebinned


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    files: list[Path]
    block: str = ""


@dataclass
class FigureSet:
    figures: list[Figure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Ctx:
    coll: Collection
    out_dir: Path
    formats: tuple[str, ...]
    metric: str
    corr_metric: str
    layer: str | None
    settings: pd.DataFrame  # one row per setting: identity, label, block
    styles: dict[str, dict[str, Any]]
    multi_block: bool


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_figures(
    coll: Collection,
    out_dir: Path,
    *,
    metric: str | None = None,
    corr_metric: str | None = None,
    layer: str | None = None,
    formats: tuple[str, ...] = ("png", "svg"),
) -> FigureSet:
    """Write every figure the data supports under ``out_dir``; returns them and the skipped ones.
    ``metric`` (heatmaps, plug-in choice) defaults to the catalogue's composite metric (the score),
    ``corr_metric`` (HE scatter) to its first headline metric (efficacy)."""
    metric = metric or composite()
    corr_metric = corr_metric or headline()[0]
    settings = coll.runs.drop_duplicates("setting_id").reset_index(drop=True)
    ctx = _Ctx(
        coll=coll,
        out_dir=Path(out_dir),
        formats=formats,
        metric=metric,
        corr_metric=corr_metric,
        layer=layer,
        settings=settings,
        styles=setting_styles(settings),
        multi_block=settings["block"].nunique() > 1,
    )
    result = FigureSet()
    makers: list[tuple[str, Callable[[_Ctx, str], Any]]] = [
        ("metrics_vs_edits", _metrics_vs_edits),
        ("he_change_vs_edits", _he_vs_edits),
        ("plugin_bars", _plugin_bars),
        ("heatmap", _heatmaps),
        ("general_vs_edits", _general_vs_edits),
        ("angular_distribution", _angular),
        ("he_vs_metric", _he_vs_metric),
    ]
    blocks = list(dict.fromkeys(coll.runs.sort_values(BLOCK_COLS, kind="stable")["block"]))
    for block in blocks:
        suffix = f" [{block}]" if ctx.multi_block else ""
        for name, make in makers:
            try:
                out = make(ctx, block)
            except Exception as e:  # a figure must never take the whole report down
                log.exception("figure %s failed", name)
                out = f"failed: {type(e).__name__}: {e}"
            items = out if isinstance(out, list) else [out]
            for item in items:
                if isinstance(item, str):
                    result.skipped.append(f"{name}{suffix}: {item}")
                    log.debug("skipped figure %s%s: %s", name, suffix, item)
                else:
                    item.block = block
                    result.figures.append(item)
    return result


# ------------------------------------------------------------------------------------ helpers


def _save(ctx: _Ctx, fig: Any, name: str, block: str) -> list[Path]:
    """Write ``fig`` in every format atomically (rendered to memory, then renamed into place)."""
    plt = _plt()
    stem = name if not ctx.multi_block else f"{name}__{_block_slug(ctx, block)}"
    files = []
    for fmt in ctx.formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=130, bbox_inches="tight")
        path = ctx.out_dir / f"{stem}.{fmt}"
        atomic_write(path, _bytes_writer(buf.getvalue()))
        files.append(path)
    plt.close(fig)
    return files


def _bytes_writer(data: bytes) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    return write


def _block_slug(ctx: _Ctx, block: str) -> str:
    s = ctx.settings[ctx.settings["block"] == block].iloc[0]
    return safe_name(f"{s['model']}_{s['dataset']}_{s['n_edits']}x{s['batch_size']}_{s['protocol']}")


def _block_title(ctx: _Ctx, block: str) -> str:
    return f" — {block}" if ctx.multi_block else ""


def _block_settings(ctx: _Ctx, block: str) -> pd.DataFrame:
    return ctx.settings[ctx.settings["block"] == block]


def _grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.6, 2.9)) -> tuple[Any, list[Any]]:
    plt = _plt()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig: Any, axes: list[Any]) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(4, len(labels)),
            fontsize=8,
        )


def _curve_figure(ctx: _Ctx, block: str, metrics: list[tuple[str, str]], title: str) -> Any | None:
    """A grid of metric-vs-edits panels, one line per setting (mean over seeds, CI shaded); tiny
    values (HE changes) are drawn in one scaled unit across the panels, named on each axis."""
    settings = _block_settings(ctx, block)
    curves = ctx.coll.curves[ctx.coll.curves["setting_id"].isin(settings["setting_id"])]
    present = [(m, t) for m, t in metrics if (curves["metric"] == m).any()]
    if not present:
        return None
    aggs = {m: aggregate_curve(curves, m) for m, _ in present}
    exp = scale_exponent(np.concatenate([a["mean"].to_numpy() for a in aggs.values()]))
    fig, axes = _grid(len(present))
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
    _legend_below(fig, axes)
    return fig


# ------------------------------------------------------------------------------ (a), (b), (e)


def _metrics_vs_edits(ctx: _Ctx, block: str) -> Figure | str:
    metrics = [(m, metric_info(m)[0]) for m in curve_metrics()]
    fig = _curve_figure(
        ctx, block, metrics, "Edit quality against the number of edits" + _block_title(ctx, block)
    )
    if fig is None:
        return "no edit-quality metric in any metrics.jsonl (eval.evaluators without edit_quality?)"
    return Figure(
        "metrics_vs_edits",
        "Edit quality against the number of edits",
        "Mean over seeds at each evaluation point (eval.every), shaded: 95 % CI over seeds. Dashed, lighter "
        "hue: the editor alone; solid with markers, darker hue: + SPHERE. The point at 0 edits is the "
        "unedited model. Fluency and consistency are scores ×100, not percentages.",
        _save(ctx, fig, "metrics_vs_edits", block),
    )


def _he_vs_edits(ctx: _Ctx, block: str) -> Figure | str:
    settings = _block_settings(ctx, block)
    curves = ctx.coll.curves[ctx.coll.curves["setting_id"].isin(settings["setting_id"])]
    layers = sorted(
        {m.split("/", 1)[1] for m in curves["metric"].unique() if m.startswith("he_change_pct/")},
        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
    )
    if not layers:
        return "no he/layer_<l> in metrics.jsonl (eval.evaluators without he?)"
    metrics = [(f"he_change_pct/{lay}", f"layer {lay}") for lay in layers]
    fig = _curve_figure(
        ctx, block, metrics, "Hyperspherical energy change per layer" + _block_title(ctx, block)
    )
    assert fig is not None
    return Figure(
        "he_change_vs_edits",
        "Hyperspherical energy change per edited layer",
        "100·(HE − HE₀)/HE₀ of each edited matrix after each batch. SPHERE's claim: the edited matrices "
        "keep their hyperspherical uniformity (HE stays near its unedited value) where the baseline drifts.",
        _save(ctx, fig, "he_change_vs_edits", block),
    )


def _general_vs_edits(ctx: _Ctx, block: str) -> Figure | str:
    settings = _block_settings(ctx, block)
    curves = ctx.coll.curves[ctx.coll.curves["setting_id"].isin(settings["setting_id"])]
    tasks = of_evaluator("general", curves["metric"].unique())
    if not tasks:
        return "no general-ability metrics in metrics.jsonl (the general evaluator did not run)"
    metrics = [(m.key, m.label) for m in tasks]
    fig = _curve_figure(
        ctx, block, metrics, "General abilities against the number of edits" + _block_title(ctx, block)
    )
    assert fig is not None
    return Figure(
        "general_vs_edits",
        "General abilities against the number of edits",
        "Downstream task accuracy measured before editing and every eval.general.every edits; mean over "
        "seeds with 95 % CI. Editing should leave these where the unedited model had them.",
        _save(ctx, fig, "general_vs_edits", block),
    )


# ------------------------------------------------------------------------------------------ (c)


def _plugin_bars(ctx: _Ctx, block: str) -> Figure | str:
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
    plt = _plt()
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
        "SPHERE as a plug-in: each editor without (hatched) and with SPHERE" + _block_title(ctx, block),
        fontsize=10,
    )
    fig.tight_layout()
    return Figure(
        "plugin_bars",
        "SPHERE as a plug-in",
        f"Final edit quality of each editor alone (hatched) and with SPHERE (solid); the SPHERE setting "
        f"shown is the one with the highest mean {ctx.metric} per editor ({chosen}). Error bars: 95 % CI "
        "over seeds, or the per-case SE for a single seed.",
        _save(ctx, fig, "plugin_bars", block),
    )


# ------------------------------------------------------------------------------------------ (d)


def _heatmaps(ctx: _Ctx, block: str) -> list[Figure | str]:
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
        plt = _plt()
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
        ax.set_title(f"{name} + SPHERE: {metric_info(m)[0]}{base_txt}" + _block_title(ctx, block), fontsize=9)
        fig.tight_layout()
        stem = f"heatmap_{safe_name(m)}_{safe_name(editor)}"
        out.append(
            Figure(
                stem,
                f"{name} + SPHERE: {m} over α and {'r' if by == 'rank' else 'β'}",
                f"Mean final {m} over seeds for each SPHERE setting; empty cells were not run or not "
                "finished. The baseline value is in the title for reference.",
                _save(ctx, fig, stem, block),
            )
        )
    return out


# ------------------------------------------------------------------------------------------ (f)


def _read_pair(path: Path, layer: str | None) -> tuple[str, np.ndarray, np.ndarray]:
    """(layer, final W, W₀) of one layer from a checkpoint, read lazily: only these two tensors
    are read (a checkpoint also holds the editor's state, gigabytes for a 7-8B model), so the
    whole-file checksum of ``load_checkpoint`` is not verified here; an unreadable file raises."""
    from safetensors import safe_open

    from sphere.run.checkpoint import FILENAME, W0_FILENAME

    ckpt = path / "checkpoint"
    with safe_open(str(ckpt / FILENAME), framework="pt") as f:
        keys = set(f.keys())
        layers = sorted((k.split("/", 1)[1] for k in keys if k.startswith("weight/")), key=_layer_key)
        if not layers:
            raise ValueError("holds no edited weights")
        if layer is None:
            layer = layers[len(layers) // 2]
        if f"weight/{layer}" not in keys:
            raise KeyError(f"has no layer {layer} (edited layers: {', '.join(layers)})")
        w = f.get_tensor(f"weight/{layer}").double().numpy()
        if f"w0/{layer}" in keys:  # checkpoints written before W₀ had its own file
            return layer, w, f.get_tensor(f"w0/{layer}").double().numpy()
    with safe_open(str(ckpt / W0_FILENAME), framework="pt") as f:
        if layer not in set(f.keys()):
            raise KeyError(f"has no W₀ of layer {layer} in {W0_FILENAME}")
        w0 = f.get_tensor(layer).double().numpy()
    return layer, w, w0


def _layer_key(s: str) -> tuple[int, int, str]:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def cosine_histogram(w: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Counts of the pairwise cosine similarities between (the sampled) rows of ``w`` in
    ``_FINE_BINS`` equal bins on [-1, 1]; zero rows have no direction and are left out."""
    x = w if rows is None else w[rows]
    norms = np.linalg.norm(x, axis=1)
    x = x[norms > 0] / norms[norms > 0, None]
    g = x @ x.T
    vals = np.clip(g[np.triu_indices(len(x), 1)], -1.0, 1.0)
    counts, _ = np.histogram(vals, bins=_FINE_BINS, range=(-1.0, 1.0))
    return counts


def sample_rows(n_rows: int, seed: int = 0, limit: int = MAX_ROWS) -> np.ndarray | None:
    """The same fixed subset of rows for every matrix of one shape (None: all rows)."""
    if n_rows <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=limit, replace=False))


def _angular(ctx: _Ctx, block: str) -> Figure | str:
    runs = ctx.coll.runs[(ctx.coll.runs["block"] == block) & ctx.coll.runs["finished"]]
    runs = runs[runs["has_checkpoint"]]
    if runs.empty:
        return "no finished run with checkpoint/checkpoint.safetensors"
    hists: dict[str, list[np.ndarray]] = {}
    pre: dict[str, np.ndarray] = {}
    problems, layer_used = [], None
    for _, r in runs.iterrows():
        try:
            layer, w, w0 = _read_pair(Path(r["path"]), ctx.layer if ctx.layer is not None else layer_used)
        except Exception as e:  # a damaged or foreign checkpoint skips that run, not the figure
            problems.append(f"{r['run_id']}: {type(e).__name__}: {e}")
            continue
        layer_used = layer
        rows = sample_rows(w.shape[0])
        hists.setdefault(r["setting_id"], []).append(cosine_histogram(w, rows))
        pre.setdefault(r["editor"], cosine_histogram(w0, rows))
    if not hists:
        return "no checkpoint could be read: " + "; ".join(problems)
    fine_edges = np.linspace(-1.0, 1.0, _FINE_BINS + 1)
    all_counts = [c for cs in hists.values() for c in cs] + list(pre.values())
    lo, hi = _display_range(all_counts, fine_edges)
    editors = sorted(pre)
    centres = (fine_edges[:-1] + fine_edges[1:]) / 2
    plt = _plt()
    fig, axes = plt.subplots(2, len(editors), figsize=(4.6 * len(editors), 6.2), squeeze=False)
    for col, editor in enumerate(editors):
        ax, dax = axes[0][col], axes[1][col]
        edges, dens0 = _rebin(pre[editor], fine_edges, lo, hi)
        ax.fill_between(edges, dens0, step="post", color="0.75", label="before editing (W₀)")
        sd0 = _cosine_sd(pre[editor], centres)
        for sid, counts in hists.items():
            s = ctx.settings[ctx.settings["setting_id"] == sid].iloc[0]
            if s["editor"] != editor:
                continue
            mean_counts = np.mean(counts, axis=0)
            edges, dens = _rebin(mean_counts, fine_edges, lo, hi)
            st = ctx.styles[sid]
            d_sd = _cosine_sd(mean_counts, centres) - sd0
            ax.step(edges, dens, where="post", color=st["color"], linestyle=st["linestyle"], linewidth=1.2,
                    label=f"{st['label']} (n={len(counts)})")  # fmt: skip
            c_edges, c_dens = _rebin(mean_counts, fine_edges, lo, hi, n_bins=30)
            c_dens0 = _rebin(pre[editor], fine_edges, lo, hi, n_bins=30)[1]
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
        f"Angular distribution of neurons, layer {layer_used}" + _block_title(ctx, block), fontsize=10
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
        _save(ctx, fig, "angular_distribution", block),
    )


def _cosine_sd(counts: np.ndarray, centres: np.ndarray) -> float:
    """Standard deviation of the pairwise cosines a histogram holds (bin centres; the fine bins make
    the binning error negligible next to the changes shown)."""
    w = counts / max(counts.sum(), 1)
    mean = float((w * centres).sum())
    return math.sqrt(max(float((w * (centres - mean) ** 2).sum()), 0.0))


def _display_range(counts: list[np.ndarray], edges: np.ndarray) -> tuple[int, int]:
    """Fine-bin indices covering the 0.05 %–99.95 % quantiles of every histogram, with a margin."""
    lo, hi = len(edges) - 2, 0
    for c in counts:
        cdf = np.cumsum(c) / max(c.sum(), 1)
        lo = min(lo, int(np.searchsorted(cdf, 0.0005)))
        hi = max(hi, int(np.searchsorted(cdf, 0.9995)))
    margin = max(2, (hi - lo) // 10)
    return max(0, lo - margin), min(len(edges) - 2, hi + margin)


def _rebin(
    counts: np.ndarray, edges: np.ndarray, lo: int, hi: int, n_bins: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """(edges, density) of ``counts[lo:hi+1]`` merged into about ``n_bins`` bins."""
    step = max(1, math.ceil((hi - lo + 1) / n_bins))
    sub = counts[lo : hi + 1]
    pad = (-len(sub)) % step
    merged = np.concatenate([sub, np.zeros(pad)]).reshape(-1, step).sum(axis=1)
    new_edges = edges[lo : lo + len(merged) * step + 1 : step]
    if len(new_edges) < len(merged) + 1:
        new_edges = np.append(new_edges, new_edges[-1] + step * (edges[1] - edges[0]))
    width = step * (edges[1] - edges[0])
    dens = merged / max(counts.sum(), 1) / width
    return new_edges, np.append(dens, dens[-1])


# ------------------------------------------------------------------------------------------ (g)


def _he_vs_metric(ctx: _Ctx, block: str) -> Figure | str:
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
    plt = _plt()
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
        + _block_title(ctx, block),
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
        _save(ctx, fig, "he_vs_metric", block),
    )
