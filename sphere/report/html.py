"""One self-contained HTML page (report.html): tables, figures and what was read, in a single file
that opens from file:// anywhere (mail it, attach it to a ticket) — images are embedded as base64
PNG, the sort script is a few lines of inline JavaScript, nothing is fetched from a network.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import numbers
from dataclasses import dataclass, field

import pandas as pd

from sphere.evaluation.catalogue import change_metrics, metric, table_metrics
from sphere.report.figures.base import Figure
from sphere.report.tables.formatting import DAGGER, cell_text, fmt_value, legend_lines, runs_text
from sphere.report.tables.model import Table

_NBH = "\u2011"  # non-breaking hyphen

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1320px;color:#222;
 padding:0 16px;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.6em}
h3{font-size:1.02em;margin:1.1em 0 .3em;color:#333}h3.block{font-size:1.15em;background:#f3f5f8;padding:4px 8px}
h4{font-size:.98em;margin:.8em 0 .3em}
.meta{color:#555;font-size:.92em}.meta code{font-size:.95em}
table.data{border-collapse:collapse;font-size:.84em;margin:.3em 0 .6em}
table.data th,table.data td{border:1px solid #ddd;padding:3px 6px;white-space:nowrap}
table.data th{background:#f3f5f8;cursor:pointer;user-select:none;white-space:normal;max-width:8.5em;
 vertical-align:bottom;font-size:.95em}
table.data td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:11em;max-width:19em;
 position:sticky;left:0;background:#fff;z-index:1}
table.data th:first-child{position:sticky;left:0;z-index:2}
table.data th:hover{background:#e4e9f1}
table.data th.asc::after{content:' ▲';font-size:.75em}table.data th.desc::after{content:' ▼';font-size:.75em}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums;font-size:.93em}
table.data tr.pre td{color:#666;font-style:italic;background:#fafafa}
table.data td.best{font-weight:700}
.scroll{overflow-x:auto;max-width:100%;scrollbar-gutter:stable}
.warn{background:#fff6e0;border-left:4px solid #e0a800;padding:6px 12px;margin:.6em 0}
.warn li,.skip li{font-size:.9em}
.notes{font-size:.86em;color:#444}.notes code{font-size:1.05em}.notes li{margin:.15em 0}
figure{margin:1.2em 0 1.8em}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;max-width:1000px}
.badge{display:inline-block;background:#eef;border-radius:3px;padding:0 6px;margin-right:6px}
"""

# Click a header: sort that table's body by the column (numbers by data-v, else text); click again
# to reverse. Pre-edit rows sort like any other row; cells without a value stay last either way.
_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var body=t.tBodies[0],rows=Array.from(body.rows),asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      function key(r){var c=r.cells[i];if(!c)return null;var v=c.getAttribute('data-v');
        if(v===null)return c.textContent.trim().toLowerCase();return (v!==''&&!isNaN(+v))?+v:null;}
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(x===null||y===null){return (x===null)-(y===null);}
        if(typeof x!==typeof y){return (typeof x==='number'?-1:1)*(asc?1:-1);}
        return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


@dataclass
class PageInfo:
    """What the header says was read."""

    inputs: list[str]
    n_runs: int
    n_settings: int
    seeds: list[int]
    unfinished: list[str]
    warnings: list[str] = field(default_factory=list)
    skipped_figures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (title, HTML) after the results


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _v(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def results_table_html(table: Table) -> str:
    """The paper table, one sortable HTML table per block (sorting never mixes blocks)."""
    parts = []
    for block in table.blocks:
        parts.append(f"<h3>{_e(block)}</h3><div class='scroll'><table class='data sortable'><thead><tr>")
        parts.append("<th>Setting</th><th>Seeds</th>")
        # headers wrap at spaces, never at the hyphen of "top-1" (U+2011 is a non-breaking hyphen)
        parts += [f"<th title='{_e(c.key)}'>{_e(c.header.replace('-', _NBH))}</th>" for c in table.columns]
        parts.append("</tr></thead><tbody>")
        for r in table.rows:
            if r.block != block:
                continue
            parts.append(f"<tr class='{'pre' if r.kind == 'pre' else 'setting'}'>")
            parts.append(
                f"<td>{_e(r.label)}</td><td class='num' data-v='{r.n_finished}'>{_e(runs_text(r))}</td>"
            )
            for c in table.columns:
                cell = r.cells.get(c.key)
                cls = "num best" if cell is not None and cell.best else "num"
                tip = ""
                if cell is not None and not math.isnan(cell.mean):
                    tip = f" title='n={cell.n}, sd={_e(_fmt(cell.sd))}, 95% CI ±{_e(_fmt(cell.ci))}, SE {_e(_fmt(cell.se))}'"
                text = cell_text(cell, c.key)  # notes as "[a]", never read as an exponent
                parts.append(
                    f"<td class='{cls}' data-v='{_v(cell.mean) if cell else ''}'{tip}>{_e(text)}</td>"
                )
            parts.append("</tr>")
        parts.append("</tbody></table></div>")
    parts.append(
        "<ul class='notes'>" + "".join(f"<li>{_e(line)}</li>" for line in legend_lines(table)) + "</ul>"
    )
    return "".join(parts)


def _fmt(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.3g}"


def provenance_html(runs: pd.DataFrame) -> str:
    """One line on where the runs' numbers came from: the commits (``+``: modified tree) and
    versions they ran at, and how many runs predate provenance in summary.json."""
    if "commit" not in runs or not runs["commit"].notna().any():
        return "<p class='meta'>No run records its code version (summary.json without provenance).</p>"
    parts = []
    for key, what in (("commit", "commit"), ("versions", "versions"), ("device", "device")):
        counts = runs[key].dropna().value_counts()
        parts.append(f"{what}: " + "; ".join(f"<code>{_e(v)}</code> ({n})" for v, n in counts.items()))
    missing = int(runs["commit"].isna().sum())
    if missing:
        parts.append(f"{missing} run(s) without provenance (written before it was recorded)")
    return "<p class='meta'>" + " · ".join(parts) + "</p>"


def runs_table_html(runs: pd.DataFrame) -> str:
    """Every run read, so a reader can find the directory behind a number."""
    present = [c for c in runs.columns if runs[c].notna().any()]
    quality = [(m.key, m.column) for m in table_metrics(present) if m.curve and m.unit == "%"][:4]
    changes = [(k, metric(k).column) for k in change_metrics(present)]
    cols = [("run_id", "Run"), ("label", "Setting"), ("seed", "Seed"), ("n_edits_done", "Edits done"),
            ("n_edits", "Edits planned"), ("finished", "Finished"), ("has_checkpoint", "Checkpoint"),
            *quality, *changes, ("commit", "Commit"), ("versions", "Versions"), ("device", "Device"),
            ("model_digest", "Model digest"), ("data_sha256", "Data sha256")]  # fmt: skip
    cols = [(k, h) for k, h in cols if k in runs and runs[k].notna().any()]
    parts = ["<div class='scroll'><table class='data sortable'><thead><tr>"]
    parts += [f"<th>{_e(h)}</th>" for _, h in cols]
    parts.append("</tr></thead><tbody>")
    for _, r in runs.sort_values(["block", "label", "seed"]).iterrows():
        parts.append("<tr>")
        for k, _ in cols:
            v = r[k]
            if isinstance(v, float) and math.isnan(v) and k in ("commit", "versions", "device"):
                parts.append("<td>–</td>")  # a run from before summary.json carried provenance
            elif k in ("finished", "has_checkpoint"):
                parts.append(f"<td>{'yes' if v else '<b>no</b>'}</td>")
            elif isinstance(v, numbers.Integral):
                parts.append(f"<td class='num' data-v='{int(v)}'>{int(v)}</td>")
            elif isinstance(v, numbers.Real):
                v = float(v)
                parts.append(f"<td class='num' data-v='{_v(v)}'>{_e(fmt_value(v, k))}</td>")  # HE: 3 digits
            else:
                parts.append(f"<td>{_e(v)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def figure_html(fig: Figure) -> str:
    png = next((f for f in fig.files if f.suffix == ".png"), None)
    svg = next((f for f in fig.files if f.suffix == ".svg"), None)
    if png is not None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        img = f"<img alt='{_e(fig.title)}' src='data:image/png;base64,{data}'>"
    elif svg is not None:
        text = svg.read_text(encoding="utf-8")
        img = text[text.find("<svg") :]  # inline SVG: drop the XML prolog and DOCTYPE
    else:
        return ""
    return f"<figure id='{_e(fig.files[0].stem)}'><h4>{_e(fig.title)}</h4>{img}<figcaption>{_e(fig.caption)}</figcaption></figure>"


def _figures_html(figures: list[Figure]) -> str:
    """A contents list, then the figures; grouped under a heading per block when there are several."""
    if not figures:
        return "<p>No figure could be drawn.</p>"
    blocks = list(dict.fromkeys(f.block for f in figures))
    multi = len(blocks) > 1
    toc, parts = [], []
    for block in blocks:
        mine = [f for f in figures if f.block == block]
        items = "".join(
            f"<li><a href='#{_e(f.files[0].stem)}'>{_e(f.title)}</a></li>" for f in mine if f.files
        )
        toc.append(f"<li>{_e(block)}<ul>{items}</ul></li>" if multi else items)
        if multi:
            parts.append(f"<h3 class='block'>{_e(block)}</h3>")
        parts += [figure_html(f) for f in mine]
    return f"<ul>{''.join(toc)}</ul>" + "".join(parts)


_HOW_TO_READ = f"""
<p>Each row of the results table is one <em>setting</em> — an editor alone, or with SPHERE at one
α (suppression strength) and β (fraction of spectral energy whose directions are protected) or rank r —
within one block of model, dataset, number of sequential edits, batch size and evaluation protocol.
A value is the mean over the seeds of that setting; <b>±</b> is the half-width of the 95 % confidence
interval of that mean (Student's t with n−1 degrees of freedom), so two settings whose intervals do
not overlap differ beyond seed noise. With one seed there is no such interval: the cell shows the run's
standard error over edit cases instead and carries a {DAGGER}. Efficacy, generalization and specificity
come in two conventions: the probability comparison (new target more likely than the old one, the
SPHERE/MEMIT tables) and top-1 (the target is the argmax, the stricter AlphaEdit-style numbers); score
is their harmonic mean. HE change % is the relative change of the hyperspherical energy of the edited
matrices from the unedited model (near 0 = angular structure preserved). A mark in brackets after a value
points to the note of the same mark under the table: that metric came from a non-canonical source. Click
a column header to sort; hover a cell for n, sd, CI and SE.</p>
"""


def render(
    table: Table,
    figures: list[Figure],
    runs: pd.DataFrame,
    info: PageInfo,
    title: str = "SPHERE editing report",
) -> str:
    """The whole page as one string."""
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    seeds = ", ".join(map(str, info.seeds)) or "–"
    head = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='meta'>Generated {now} by <code>sphere-report</code> from {', '.join(f'<code>{_e(i)}</code>' for i in info.inputs)}.</p>",
        "<p class='meta'>"
        f"<span class='badge'>{info.n_runs} run{'s' if info.n_runs != 1 else ''}</span>"
        f"<span class='badge'>{info.n_settings} setting{'s' if info.n_settings != 1 else ''}</span>"
        f"<span class='badge'>seeds: {_e(seeds)}</span>"
        f"<span class='badge'>{len(info.unfinished)} unfinished</span></p>",
    ]
    if info.unfinished:
        head.append(
            "<div class='warn'>Unfinished runs (no summary.json; in the curves, not in the table means): "
            + ", ".join(f"<code>{_e(u)}</code>" for u in info.unfinished)
            + "</div>"
        )
    if info.warnings:
        head.append(
            "<div class='warn'><b>Warnings</b><ul>"
            + "".join(f"<li>{_e(w)}</li>" for w in info.warnings)
            + "</ul></div>"
        )
    body = [
        "<h2>How to read this</h2>",
        _HOW_TO_READ,
        "<h2>Results</h2>",
        results_table_html(table),
        *(f"<h2>{_e(title)}</h2>{section}" for title, section in info.sections),
        "<h2>Figures</h2>",
        _figures_html(figures),
    ]
    if info.skipped_figures:
        body.append(
            "<h3>Figures not drawn</h3><ul class='skip'>"
            + "".join(f"<li>{_e(s)}</li>" for s in info.skipped_figures)
            + "</ul>"
        )
    body += ["<h2>Runs read</h2>", provenance_html(runs), runs_table_html(runs)]
    if info.files:
        body.append(
            "<h2>Files written</h2><ul class='notes'>"
            + "".join(f"<li><code>{_e(f)}</code></li>" for f in info.files)
            + "</ul>"
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(head)
        + "".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )
