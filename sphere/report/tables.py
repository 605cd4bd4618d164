"""Paper-style result tables: one row per setting (editor ± SPHERE with its α, β/r), grouped in
blocks of one model, dataset, number of edits, batch size and protocol, plus the unedited model.

Each cell is ``mean ± CI`` over seeds (a dagger marks a single-seed ± that is the per-case SE
instead); numbered markers point to footnotes for non-canonical metric sources (summary ``notes``).
Rendered as CSV (numbers only), Markdown and LaTeX (booktabs); the HTML page reuses :class:`Table`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sphere.evaluation.catalogue import metric, table_metrics
from sphere.report.collect import BLOCK_COLS, SETTING_COLS
from sphere.report.stats import CI95, NONE, SE, aggregate_settings, describe

DAGGER = "†"


def note_mark(i: int) -> str:
    """Footnote mark i (1-based): a letter, shown in brackets, never read as an exponent."""
    return "abcdefghijklmnopqrstuvwxyz"[(i - 1) % 26]


@dataclass(frozen=True)
class Column:
    key: str
    header: str

    @property
    def direction(self) -> int:
        """+1 higher is better, −1 lower is better, 0 neither (a signed change), as its evaluator
        declared it (sphere.evaluation.catalogue)."""
        return metric(self.key).better

    @property
    def lower_is_better(self) -> bool:
        return self.direction < 0


@dataclass
class Cell:
    mean: float
    err: float = math.nan
    err_kind: str = NONE
    n: int = 0
    sd: float = math.nan
    ci: float = math.nan
    se: float = math.nan
    notes: list[int] = field(default_factory=list)
    best: bool = False


@dataclass
class Row:
    block: str
    label: str
    kind: str  # "setting" or "pre" (the unedited model)
    ident: dict[str, Any]
    n_runs: int
    n_finished: int
    n_unfinished: int
    seeds: str
    cells: dict[str, Cell]


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    footnotes: list[str]  # numbered notes (marker k → footnotes[k-1])

    @property
    def blocks(self) -> list[str]:
        return list(dict.fromkeys(r.block for r in self.rows))


def table_columns(runs: pd.DataFrame) -> list[Column]:
    """The metric columns some finished run has a finite value for, in the catalogue's order (the
    paper's: probability convention, generation, top-1, score, general ability, HE)."""
    present = [c for c in runs.columns if runs[c].notna().any()]
    return [Column(m.key, m.column) for m in table_metrics(present)]


def _note_applies(note_key: str, column: str) -> bool:
    """A note on ``fluency`` marks the fluency column; one on ``general`` every general/* column."""
    return column == note_key or column.startswith(note_key.rstrip("/") + "/")


def build_table(runs: pd.DataFrame) -> Table:
    """The table of every setting in ``runs`` (see :func:`sphere.report.collect.collect`)."""
    columns = table_columns(runs)
    keys = [c.key for c in columns]
    settings = aggregate_settings(runs, keys)
    footnotes: list[str] = []
    note_ids: dict[tuple[str, str], int] = {}
    rows: list[Row] = []
    block_order = list(dict.fromkeys(runs.sort_values(BLOCK_COLS, kind="stable")["block"]))
    for block in block_order:
        in_block = runs[runs["block"] == block]
        pre = _pre_row(block, in_block, keys)
        if pre is not None:
            rows.append(pre)
        block_settings = settings[settings["block"] == block].copy()
        block_settings["_order"] = [
            (str(e), bool(s), _sortable(a), _sortable(b), _sortable(r))
            for e, s, a, b, r in zip(
                block_settings["editor"],
                block_settings["sphere"],
                block_settings["alpha"],
                block_settings["beta"],
                block_settings["rank"],
            )
        ]
        block_rows = []
        for _, s in sorted(block_settings.iterrows(), key=lambda kv: kv[1]["_order"]):
            members = in_block[in_block["setting_id"] == s["setting_id"]]
            cells = {}
            for k in keys:
                cells[k] = Cell(
                    mean=float(s[f"{k}_mean"]),
                    err=float(s[f"{k}_err"]),
                    err_kind=str(s[f"{k}_err_kind"]),
                    n=int(s[f"{k}_n"]),
                    sd=float(s[f"{k}_sd"]),
                    ci=float(s[f"{k}_ci"]),
                    se=float(s[f"{k}_se"]),
                )
            for notes in members["notes"]:
                for nk, text in sorted((notes or {}).items()):
                    ident = (str(nk), str(text))
                    if ident not in note_ids:
                        footnotes.append(f"{nk}: {text}")
                        note_ids[ident] = len(footnotes)
                    for k in keys:
                        if _note_applies(str(nk), k) and note_ids[ident] not in cells[k].notes:
                            cells[k].notes.append(note_ids[ident])
            block_rows.append(
                Row(
                    block=block,
                    label=str(s["label"]),
                    kind="setting",
                    ident={c: s[c] for c in SETTING_COLS},
                    n_runs=int(s["n_runs"]),
                    n_finished=int(s["n_finished"]),
                    n_unfinished=int(s["n_unfinished"]),
                    seeds=str(s["seeds"]),
                    cells=cells,
                )
            )
        rows.extend(block_rows)
    return Table(columns=columns, rows=rows, footnotes=footnotes)


def _sortable(x: Any) -> float:
    return -1.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _pre_row(block: str, in_block: pd.DataFrame, keys: list[str]) -> Row | None:
    """The unedited model, from the ``pre`` of finished runs (one run per seed: the records, and
    so the pre numbers, can differ by seed only)."""
    done = in_block[in_block["finished"]].drop_duplicates("seed")
    cells = {}
    for k in keys:
        if f"pre/{k}" not in done:
            continue
        st = describe(done[f"pre/{k}"])
        if st.n == 0:
            continue
        se = math.nan
        if st.n == 1 and f"pre/{k}_se" in done:
            se = float(done[f"pre/{k}_se"].iloc[0])
        kind = CI95 if st.n >= 2 else (SE if not math.isnan(se) else NONE)
        cells[k] = Cell(st.mean, st.ci if kind == CI95 else se, kind, st.n, st.sd, st.ci, se)
    if not cells:
        return None
    first = in_block.iloc[0]
    return Row(
        block=block,
        label="Pre-edit (unedited model)",
        kind="pre",
        ident={c: first[c] for c in BLOCK_COLS},
        n_runs=len(done),
        n_finished=len(done),
        n_unfinished=0,
        seeds=",".join(str(s) for s in sorted(done["seed"])),
        cells=cells,
    )


def mark_supported(table: Table, comparisons: list[Any]) -> None:
    """Bold a cell only where a paired comparison supports it: of a SPHERE setting and its
    baseline in one block, the better one in a metric whose Holm-adjusted exact p is below 0.05
    (``sphere.report.paired``). No "best mean" is bolded: overlapping intervals and unpaired
    means do not show that one setting is better."""
    by_id = {(r.block, _sid(r)): r for r in table.rows if r.kind == "setting"}
    for comp in comparisons:
        on, off = by_id.get((comp.block, comp.setting_id)), by_id.get((comp.block, comp.baseline_setting_id))
        for col in table.columns:
            if not col.direction or not comp.supported(col.key) or on is None or off is None:
                continue
            better = on if comp.tests[col.key].mean * col.direction > 0 else off
            if col.key in better.cells:
                better.cells[col.key].best = True


def _sid(row: Row) -> str:
    from sphere.report.collect import setting_id

    return setting_id(row.ident)


def fmt_number(x: float) -> str:
    """Two decimals (the paper's precision) unless that would print 0.00 or a huge number."""
    if x is None or math.isnan(x):
        return "–"
    if x == 0 or 0.01 <= abs(x) < 1e5:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_value(x: float, key: str | None = None) -> str:
    """A value of column ``key``: HE changes (~1e-3 % after hundreds of edits) with 3 significant
    digits, so 0.0129 and 0.0053 do not both print as 0.01; every other column by ``fmt_number``."""
    if key is not None and metric(key).better <= 0 and x is not None and not math.isnan(x) and x != 0:
        return f"{x:.3g}"
    return fmt_number(x)


def cell_text(cell: Cell | None, key: str | None = None) -> str:
    """``mean ± err`` of column ``key`` with its markers (``†`` single-seed SE, footnote letters in brackets)."""
    if cell is None or math.isnan(cell.mean):
        return "–"
    text = fmt_value(cell.mean, key)
    if cell.err_kind in (CI95, SE) and not math.isnan(cell.err):
        text += f" ± {fmt_value(cell.err, key)}"
    if cell.err_kind == SE:
        text += DAGGER
    if cell.notes:
        text += f" [{','.join(note_mark(i) for i in cell.notes)}]"
    return text


def runs_text(row: Row) -> str:
    """What the seeds column says: finished runs, and unfinished ones flagged."""
    if row.kind == "pre":
        return str(row.n_finished)
    text = str(row.n_finished)
    if row.n_unfinished:
        text += f" (+{row.n_unfinished} unfinished)"
    return text


def legend_lines(table: Table) -> list[str]:
    """The fixed explanations printed under every rendering, then the numbered notes."""
    lines = [
        "± is the 95 % confidence interval of the mean over seeds (Student's t, t(0.975, n−1)·sd/√n).",
        f"{DAGGER} one finished seed only: ± is that run's standard error over edit cases, not a CI over seeds.",
        "Bold: the better of a SPHERE setting and its baseline where the paired comparison supports it "
        "(Holm-adjusted exact p < 0.05, tables/paired.md); no value is bolded for a best mean. "
        "HE ∣Δ∣: mean over the edited layers of the magnitude of each layer's HE change; the signed mean "
        "can cancel between layers and is secondary. "
        "Unfinished runs (no summary.json) are counted in the seeds column but not in the means.",
    ]
    lines += [f"[{note_mark(i)}] non-canonical source: {text}" for i, text in enumerate(table.footnotes, 1)]
    return lines


# ----------------------------------------------------------------------------------------- CSV


def to_frame(table: Table) -> pd.DataFrame:
    """Numbers only (for other tools): identity, seeds, then mean, ci, n, sd, se per metric."""
    recs = []
    for r in table.rows:
        rec: dict[str, Any] = {"block": r.block, "row": r.kind, "label": r.label}
        rec.update({c: r.ident.get(c) for c in SETTING_COLS})
        rec.update(n_runs=r.n_runs, n_finished=r.n_finished, n_unfinished=r.n_unfinished, seeds=r.seeds)
        for col in table.columns:
            c = r.cells.get(col.key)
            rec[f"{col.key}_mean"] = c.mean if c else math.nan
            rec[f"{col.key}_ci"] = c.ci if c else math.nan
            rec[f"{col.key}_n"] = c.n if c else 0
            rec[f"{col.key}_sd"] = c.sd if c else math.nan
            rec[f"{col.key}_se"] = c.se if c else math.nan
            rec[f"{col.key}_notes"] = ",".join(map(str, c.notes)) if c else ""
        recs.append(rec)
    return pd.DataFrame(recs)


def to_csv(table: Table) -> str:
    return to_frame(table).to_csv(index=False)


# ------------------------------------------------------------------------------------ Markdown


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
    from sphere.evaluation.catalogue import change_metrics, curve_metrics
    from sphere.report.stats import aggregate_curve

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


# --------------------------------------------------------------------------------------- LaTeX

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "·": r"$\cdot$",
    "−": "-",
    "±": r"$\pm$",
    "√": r"$\surd$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _latex_cell(cell: Cell | None, key: str) -> str:
    if cell is None or math.isnan(cell.mean):
        return "--"
    text = fmt_value(cell.mean, key)
    if cell.err_kind in (CI95, SE) and not math.isnan(cell.err):
        text += rf"$\pm${fmt_value(cell.err, key)}"
    if cell.best:
        text = rf"\textbf{{{text}}}"
    if cell.err_kind == SE:
        text += r"$^\dagger$"
    if cell.notes:
        text += rf"\,[{','.join(note_mark(i) for i in cell.notes)}]"
    return text


def to_latex(table: Table, caption: str = "Sequential editing results.", label: str = "tab:sphere") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs,graphicx}``): one block per model/dataset,
    best value per column in bold, markers and footnotes as in the other renderings."""
    ncol = 2 + len(table.columns)
    lines = [
        "% generated by sphere-report; needs \\usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{ll{'r' * len(table.columns)}}}",
        r"\toprule",
        " & ".join(["Setting", "Seeds", *[latex_escape(c.header) for c in table.columns]]) + r" \\",
    ]
    for block in table.blocks:
        lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{ncol}}}{{l}}{{\textit{{{latex_escape(block)}}}}} \\")
        lines.append(r"\midrule")
        for r in table.rows:
            if r.block != block:
                continue
            cells = [_latex_cell(r.cells.get(c.key), c.key) for c in table.columns]
            lines.append(" & ".join([latex_escape(r.label), latex_escape(runs_text(r)), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip\footnotesize"]
    lines += [latex_escape(line).replace(DAGGER, r"$^\dagger$") + r"\\" for line in legend_lines(table)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ terminal


def to_terminal(table: Table, keys: tuple[str, ...] | None = None) -> str:
    """A compact plain-text table for the end of the CLI run: the first four headline metrics
    (catalogue order) unless ``keys`` names others."""
    from sphere.evaluation.catalogue import headline

    keys = tuple(headline()[:4]) if keys is None else keys
    cols = [c for c in table.columns if c.key in keys]
    recs = [
        {
            "block": r.block,
            "setting": r.label,
            "seeds": runs_text(r),
            **{c.header: cell_text(r.cells.get(c.key), c.key) for c in cols},
        }
        for r in table.rows
    ]
    return pd.DataFrame(recs).to_markdown(index=False, tablefmt="simple", disable_numparse=True)
