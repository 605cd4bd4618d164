"""The report's figures, each from what the runs on disk can support (a figure the data cannot
support is skipped with its reason, shown on the HTML page; partial data never stops the report).

One module per figure, each with a ``make(ctx, block)`` that returns the figure(s) or the reason
it cannot be drawn:

(a) :mod:`.metrics_vs_edits` edit-quality metrics against the number of edits,
(b) :mod:`.he_change_vs_edits` HE change per layer against edits,
(c) :mod:`.plugin_bars` each editor with and without SPHERE,
(d) :mod:`.heatmap` the α × β (or α × r) heatmap,
(e) :mod:`.general_vs_edits` general-ability curves,
(f) :mod:`.angular_distribution` the angular distribution of neurons from checkpoints and
(g) :mod:`.he_vs_metric` HE change against edit quality with Pearson's r — the paper's evidence
    that losing the hyperspherical structure goes with losing edit quality, and
(h) :mod:`.early_warning` the per-batch |ΔHE| of each run against its efficacy, with its failure
    point and its threshold crossing (:mod:`sphere.report.early_warning`).

What they share: :mod:`.base` (the figure model, the drawing context, block selection, saving),
:mod:`.curve_grid` (the metric-vs-edits panels of a, b, e), :mod:`.cosines` and :mod:`.weights`
(the analysis and checkpoint reading behind f) and :mod:`.style` (colours, units, ticks: per editor
a light dashed baseline and a dark solid + SPHERE in another hue, one marker per SPHERE setting; a
line is the mean over seeds with its 95 % CI shaded where there are ≥ 2). :mod:`.run_curves` draws
the figures of a single run directory at the end of a run.

:func:`make_figures` below builds the context and runs every maker on every block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sphere.evaluation.catalogue import composite, headline
from sphere.report.collect import BLOCK_COLS, Collection
from sphere.report.figures import (
    angular_distribution,
    early_warning,
    general_vs_edits,
    he_change_vs_edits,
    he_vs_metric,
    heatmap,
    metrics_vs_edits,
    plugin_bars,
)
from sphere.report.figures.base import Context, Figure, FigureSet
from sphere.report.figures.style import setting_styles

__all__ = ["Figure", "FigureSet", "make_figures"]

log = logging.getLogger(__name__)

# (figure name, maker), in the order the page shows them
MAKERS: list[tuple[str, Callable[[Context, str], Any]]] = [
    ("metrics_vs_edits", metrics_vs_edits.make),
    ("he_change_vs_edits", he_change_vs_edits.make),
    ("plugin_bars", plugin_bars.make),
    ("heatmap", heatmap.make),
    ("general_vs_edits", general_vs_edits.make),
    ("angular_distribution", angular_distribution.make),
    ("he_vs_metric", he_vs_metric.make),
    ("early_warning", early_warning.make),
]


def make_figures(
    coll: Collection,
    out_dir: Path,
    *,
    metric: str | None = None,
    corr_metric: str | None = None,
    layer: str | None = None,
    formats: tuple[str, ...] = ("png", "svg"),
    warning: Any = None,
) -> FigureSet:
    """Write every figure the data supports under ``out_dir``; returns them and the skipped ones.
    ``metric`` (heatmaps, plug-in choice) defaults to the catalogue's composite metric (the score),
    ``corr_metric`` (HE scatter) to its first headline metric (efficacy). ``warning``: the
    early-warning analysis (:func:`sphere.report.early_warning.analyse`) the early-warning figure
    marks; computed without calibration when not given."""
    metric = metric or composite()
    corr_metric = corr_metric or headline()[0]
    settings = coll.runs.drop_duplicates("setting_id").reset_index(drop=True)
    ctx = Context(
        coll=coll,
        out_dir=Path(out_dir),
        formats=formats,
        metric=metric,
        corr_metric=corr_metric,
        layer=layer,
        settings=settings,
        styles=setting_styles(settings),
        multi_block=settings["block"].nunique() > 1,
        warning=warning,
    )
    result = FigureSet()
    blocks = list(dict.fromkeys(coll.runs.sort_values(BLOCK_COLS, kind="stable")["block"]))
    for block in blocks:
        suffix = f" [{block}]" if ctx.multi_block else ""
        for name, make in MAKERS:
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
