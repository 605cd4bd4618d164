"""The results table as data: one :class:`Row` per setting (editor ± SPHERE with its α, β/r),
grouped in blocks of one model, dataset, number of edits, batch size and protocol, each block led by
the unedited model; each :class:`Cell` holds the mean over seeds with its CI (or the single run's
per-case SE), n, sd and the footnotes for non-canonical metric sources (summary ``notes``).

The columns are the metrics of the catalogue (sphere.evaluation.catalogue) that some run measured.
How a cell reads as text is in :mod:`.formatting`; the renderers (CSV, Markdown, LaTeX, terminal,
and the HTML page) only lay these objects out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sphere.evaluation.catalogue import metric, table_metrics
from sphere.report.aggregate import CI95, NONE, SE, aggregate_settings, describe
from sphere.report.collect import BLOCK_COLS, SETTING_COLS, setting_id


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
    return setting_id(row.ident)
