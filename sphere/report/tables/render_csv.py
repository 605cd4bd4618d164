"""The results table as CSV: numbers only (identity, seeds, then mean, ci, n, sd, se and footnote
ids per metric), for other tools."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sphere.report.collect import SETTING_COLS
from sphere.report.tables.model import Table


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
