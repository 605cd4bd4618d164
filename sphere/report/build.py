"""The whole report from run directories: collect, aggregate, tables, figures, one HTML page.

Kept apart from the CLI so tests and notebooks can build a report without argparse; every output
is written atomically (a report rebuilt while someone reads the old one never shows half a file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sphere.files import atomic_write_text
from sphere.report import comparisons, early_warning, html, tables
from sphere.report.collect import Collection, collect
from sphere.report.figures import FigureSet, make_figures

log = logging.getLogger(__name__)


@dataclass
class Report:
    out_dir: Path
    collection: Collection
    table: tables.Table
    figures: FigureSet
    inference: comparisons.Inference
    warning: early_warning.EarlyWarning | None = None
    files: dict[str, str] = field(default_factory=dict)  # path → what it is


def build_report(
    paths: list[Path],
    out_dir: Path,
    *,
    metric: str | None = None,
    corr_metric: str | None = None,
    layer: str | None = None,
    formats: tuple[str, ...] = ("png", "svg"),
    warn_calibration_seeds: tuple[int, ...] = (),
) -> Report:
    """Read every run under ``paths`` and write tables/, figures/ and report.html under ``out_dir``.
    ``warn_calibration_seeds``: the seeds whose runs calibrate the early-warning thresholds
    (:mod:`sphere.report.early_warning`); none: the failure table only.
    Raises :class:`sphere.report.collect.NoRunsError` when there is nothing to report on."""
    coll = collect(paths)
    out_dir = Path(out_dir)
    table = tables.build_table(coll.runs)
    inference = comparisons.infer(coll, {c.key: c.header for c in table.columns})
    tables.mark_supported(table, inference.comparisons)
    files: dict[str, str] = {}

    def write(rel: str, text: str, what: str) -> None:
        atomic_write_text(out_dir / rel, text)
        files[str(out_dir / rel)] = what

    write(
        "tables/results.csv",
        tables.to_csv(table),
        "results table, numbers only (mean, ci, n, sd, se per metric)",
    )
    write("tables/results.md", tables.to_markdown(table), "results table, Markdown (mean ± CI, footnotes)")
    write(
        "tables/results.tex", tables.to_latex(table), "results table, LaTeX booktabs (best per block in bold)"
    )
    run_cols = [c for c in coll.runs.columns if c != "notes"]
    write(
        "tables/runs.csv",
        coll.runs[run_cols].to_csv(index=False),
        "one row per run read (identity, final metrics)",
    )
    write(
        "tables/curves.csv",
        coll.curves.to_csv(index=False),
        "every metric of every run at every number of edits (long)",
    )
    write(
        "tables/curves.md",
        tables.curve_markdown(coll.runs, coll.curves),
        "edit quality and HE change of every setting at every evaluation point, Markdown",
    )
    write(
        "tables/paired.md",
        comparisons.to_markdown(inference),
        "SPHERE − baseline paired by seed (t, exact, Holm), HE per layer, McNemar, correlations",
    )
    write(
        "tables/paired.csv",
        comparisons.paired_frame(inference.comparisons + inference.layers).to_csv(index=False),
        "paired differences, numbers only (one row per comparison and metric, per-layer |ΔHE| included)",
    )
    write("tables/mcnemar.csv", inference.mcnemar.to_csv(index=False), "McNemar on per-record outcomes")
    write(
        "tables/correlations.csv",
        inference.correlations.to_csv(index=False),
        "HE change against every headline metric, centred within evaluation points, runs as the unit",
    )
    write(
        "tables/he_below.csv",
        inference.he_below.to_csv(index=False),
        "per pair: evaluation points where SPHERE's HE change is below its baseline's",
    )
    write(
        "tables/he_layers.csv", inference.he_layers.to_csv(index=False), "HE change per layer, signed and |·|"
    )
    warning = early_warning.analyse(coll, warn_calibration_seeds)
    write(
        "tables/early_warning.md",
        early_warning.to_markdown(warning),
        "HE as an early warning: failure per run (the protocol's definition), thresholds and leads",
    )
    write(
        "tables/early_warning.csv",
        early_warning.to_frame(warning).to_csv(index=False),
        "one row per run: failure point, last evaluation, and per signal threshold, crossing and lead",
    )
    figs = make_figures(
        coll,
        out_dir / "figures",
        metric=metric,
        corr_metric=corr_metric,
        layer=layer,
        formats=formats,
        warning=warning,
    )
    for f in figs.figures:
        for p in f.files:
            files[str(p)] = f"figure: {f.title}"
    files[str(out_dir / "report.html")] = "the self-contained page: tables, figures, what was read"
    runs = coll.runs
    info = html.PageInfo(
        inputs=[str(p) for p in paths],
        n_runs=len(runs),
        n_settings=runs["setting_id"].nunique(),
        seeds=sorted(int(s) for s in runs["seed"].unique()),
        unfinished=list(runs.loc[~runs["finished"], "run_id"]),
        warnings=list(coll.warnings),
        skipped_figures=list(figs.skipped),
        files=[str(Path(p).relative_to(out_dir)) for p in files],
        sections=[
            ("Paired comparisons and correlations", comparisons.to_html(inference)),
            ("HE as an early warning", early_warning.to_html(warning)),
        ],
    )
    atomic_write_text(out_dir / "report.html", html.render(table, figs.figures, runs, info))
    return Report(
        out_dir=out_dir,
        collection=coll,
        table=table,
        figures=figs,
        inference=inference,
        warning=warning,
        files=files,
    )
