"""How the table reads as text, the same in every rendering: numbers to two decimals (HE changes
to three significant digits), ``mean ± err`` with its markers (``†`` a single seed's per-case SE,
footnote letters in brackets), the seeds column, and the legend printed under the table.
"""

from __future__ import annotations

import math

from sphere.evaluation.catalogue import metric
from sphere.report.aggregate import CI95, SE
from sphere.report.tables.model import Cell, Row, Table

DAGGER = "†"


def note_mark(i: int) -> str:
    """Footnote mark i (1-based): a letter, shown in brackets, never read as an exponent."""
    return "abcdefghijklmnopqrstuvwxyz"[(i - 1) % 26]


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
