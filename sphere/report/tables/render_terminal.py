"""The results table as compact plain text, printed by ``sphere-report`` at the end of its run."""

from __future__ import annotations

import pandas as pd

from sphere.evaluation.catalogue import headline
from sphere.report.tables.formatting import cell_text, runs_text
from sphere.report.tables.model import Table


def to_terminal(table: Table, keys: tuple[str, ...] | None = None) -> str:
    """A compact plain-text table for the end of the CLI run: the first four headline metrics
    (catalogue order) unless ``keys`` names others."""
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
