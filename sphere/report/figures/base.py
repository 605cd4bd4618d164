"""What every figure maker of the report shares: the :class:`Figure` it returns, the
:class:`Context` it draws from (the collected runs, one row per setting with its style, the output
folder and formats, the chosen metrics), the selection of one block of settings, and the matplotlib
plumbing (a headless pyplot, a grid of panels, one legend below, atomic saving in every format).

A block is one model, dataset, number of edits, batch size and protocol; when a report holds
several, every figure is drawn once per block and its files and title name the block.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sphere.files import atomic_write, safe_name
from sphere.report.collect import Collection


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
class Context:
    coll: Collection
    out_dir: Path
    formats: tuple[str, ...]
    metric: str
    corr_metric: str
    layer: str | None
    settings: pd.DataFrame  # one row per setting: identity, label, block
    styles: dict[str, dict[str, Any]]
    multi_block: bool
    warning: Any = None  # sphere.report.early_warning.EarlyWarning, when the report computed it


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(ctx: Context, fig: Any, name: str, block: str) -> list[Path]:
    """Write ``fig`` in every format atomically (rendered to memory, then renamed into place)."""
    plt = pyplot()
    stem = name if not ctx.multi_block else f"{name}__{block_slug(ctx, block)}"
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


def block_slug(ctx: Context, block: str) -> str:
    s = ctx.settings[ctx.settings["block"] == block].iloc[0]
    return safe_name(f"{s['model']}_{s['dataset']}_{s['n_edits']}x{s['batch_size']}_{s['protocol']}")


def block_title(ctx: Context, block: str) -> str:
    return f" — {block}" if ctx.multi_block else ""


def block_settings(ctx: Context, block: str) -> pd.DataFrame:
    return ctx.settings[ctx.settings["block"] == block]


def grid(n: int, ncols: int = 4, size: tuple[float, float] = (3.6, 2.9)) -> tuple[Any, list[Any]]:
    plt = pyplot()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend_below(fig: Any, axes: list[Any]) -> None:
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
