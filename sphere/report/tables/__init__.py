"""Paper-style result tables: the table as data (:mod:`.model`: one row per setting, grouped in
blocks, plus the unedited model; each cell the mean ± CI over seeds), how it reads as text
(:mod:`.formatting`), and its renderings — CSV numbers only (:mod:`.render_csv`), Markdown and the
per-evaluation-point curve table (:mod:`.render_markdown`), LaTeX booktabs (:mod:`.render_latex`)
and compact terminal text (:mod:`.render_terminal`). The HTML page (:mod:`sphere.report.html`)
lays out the same :class:`Table`.

The names below are the tables' public interface, so callers need not know which file holds what.
"""

from sphere.report.tables.formatting import DAGGER, cell_text, fmt_number, fmt_value, legend_lines, runs_text
from sphere.report.tables.model import Cell, Column, Row, Table, build_table, mark_supported, table_columns
from sphere.report.tables.render_csv import to_csv, to_frame
from sphere.report.tables.render_latex import latex_escape, to_latex
from sphere.report.tables.render_markdown import curve_markdown, display_frame, to_markdown
from sphere.report.tables.render_terminal import to_terminal

__all__ = [
    "DAGGER",
    "Cell",
    "Column",
    "Row",
    "Table",
    "build_table",
    "cell_text",
    "curve_markdown",
    "display_frame",
    "fmt_number",
    "fmt_value",
    "latex_escape",
    "legend_lines",
    "mark_supported",
    "runs_text",
    "table_columns",
    "to_csv",
    "to_frame",
    "to_latex",
    "to_markdown",
    "to_terminal",
]
