"""The results table as Markdown (one table per block, then the legend), and the curve table: every
setting at every evaluation point, the numbers behind the metrics-vs-edits figures."""

from __future__ import annotations

import pandas as pd

from sphere.evaluation.catalogue import change_metrics, curve_metrics, metric
from sphere.report.aggregate import aggregate_curve
from sphere.report.tables.formatting import cell_text, fmt_value, legend_lines, runs_text
from sphere.report.tables.model import Table


def display_frame(table: Table, block: str | None = None) -> pd.DataFrame:
    """The table as strings (what a reader sees), optionally one block only; best cells carry a
    ``**`` pair for Markdown."""
    recs = []
    for r in table.rows:
        if block is not None and r.block != block:
            continue
        rec = {"Setting": r.label, "Seeds": runs_text(r)}
        for col in table.columns:
            c = r.cells.get(col.key)
            text = cell_text(c, col.key)
            rec[col.header] = f"**{text}**" if c is not None and c.best else text
        recs.append(rec)
    return pd.DataFrame(recs, columns=["Setting", "Seeds", *[c.header for c in table.columns]])


def to_markdown(table: Table) -> str:
    parts = []
    for block in table.blocks:
        parts.append(f"### {block}\n")
        parts.append(display_frame(table, block).to_markdown(index=False, disable_numparse=True))
        parts.append("")
    parts += [f"- {line}" for line in legend_lines(table)]
    return "\n".join(parts) + "\n"


def curve_markdown(runs: pd.DataFrame, curves: pd.DataFrame, metrics: tuple[str, ...] | None = None) -> str:
    """Edit quality and HE change of every setting at every evaluation point, one Markdown table per
    block: the numbers behind the metrics-vs-edits figures, mean ± 95 % CI over seeds (mean alone
    with one seed), so a long-sequence study can be read without opening a figure."""
    if metrics is None:  # the figure's metrics that runs measured, then the HE change summaries
        measured = set(curves["metric"])
        metrics = (*(m for m in curve_metrics() if m in measured), *change_metrics(measured))
    parts = []
    for block, in_block in runs.groupby("block", sort=False):
        labels = in_block.drop_duplicates("setting_id").set_index("setting_id")["label"]
        cells: dict[tuple[str, int], dict[str, str]] = {}
        for m in metrics:
            agg = aggregate_curve(curves[curves["setting_id"].isin(labels.index)], m)
            for r in agg.itertuples():
                text = fmt_value(r.mean, m) + (f" ± {fmt_value(r.ci, m)}" if r.n > 1 else "")
                cells.setdefault((labels[r.setting_id], int(r.n_edits_done)), {})[m] = text
        if not cells:
            continue
        header = ["Setting", "Edits", *(metric(m).column for m in metrics)]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] * 2 + ["---:"] * len(metrics)) + "|",
        ]
        order = {label: i for i, label in enumerate(labels)}
        quality = [m for m in metrics if metric(m).better > 0]
        for (label, n), vals in sorted(cells.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
            if quality and not any(m in vals for m in quality):
                continue  # HE alone (measured every batch): the rows are the evaluation points
            lines.append(f"| {label} | {n} | " + " | ".join(vals.get(m, "–") for m in metrics) + " |")
        parts += [f"### {block}\n", "\n".join(lines), ""]
    return "\n".join(parts) + (
        "\n- ± is the 95 % CI over seeds; a value alone is one seed.\n" if parts else ""
    )
