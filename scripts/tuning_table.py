#!/usr/bin/env python
"""Print a tuning search as a Markdown table: one row per job of the given sweeps, its overrides and
its final edit quality, best first (docs/tuning.md is made of these tables).

    python scripts/tuning_table.py outputs/sweeps/tune_smollm2/<date>/<time> [more sweeps] [--sort score]

Reads each sweep's index.json (overrides, run directory) and the run's summary.json (metrics, the
unedited model's specificity, editing time). Overrides shared by every row go in a line above the
table, so the columns show only what the search varied. Unfinished jobs are listed as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRICS = ("efficacy", "generalization", "specificity", "score")


def rows_of(sweep: Path) -> list[dict]:
    index = sweep / "index.json"
    if not index.is_file():
        sys.exit(f"error: {index} not found: pass a sweep directory written by `sphere-edit -m`")
    rows = []
    for job in json.loads(index.read_text())["jobs"]:
        overrides = dict(o.split("=", 1) for o in job.get("overrides", []) if "=" in o)
        overrides.pop("+experiment", None)
        run_dir = Path(job.get("run_dir", ""))
        if not run_dir.is_absolute():  # a sweep copied elsewhere (docs/results/) names its runs relatively
            run_dir = sweep / run_dir
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        rows.append({"overrides": overrides, "summary": summary})
    return rows


def table(rows: list[dict], sort: str) -> str:
    keys = sorted({k for r in rows for k in r["overrides"]})
    common = {k: rows[0]["overrides"].get(k) for k in keys if len({r["overrides"].get(k) for r in rows}) == 1}
    varied = [k for k in keys if k not in common]
    done = sorted((r for r in rows if r["summary"]), key=lambda r: -float(r["summary"].get(sort, 0.0)))
    lines = []
    if common:
        lines.append("All rows: " + ", ".join(f"`{k}={v}`" for k, v in common.items()))
        lines.append("")
    head = [*(k.removeprefix("editor.") for k in varied), *METRICS, "spec. unedited", "s/edit"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(varied) + "---:|" * (len(METRICS) + 2))
    for r in done:
        s = r["summary"]
        cells = [str(r["overrides"].get(k, "")) for k in varied]
        cells += [f"{s[m]:.1f}" if m in s else "" for m in METRICS]
        cells.append(f"{s['pre']['specificity']:.1f}" if "specificity" in s.get("pre", {}) else "")
        cells.append(f"{s['time']['edit_s_per_edit']:.1f}" if "edit_s_per_edit" in s.get("time", {}) else "")
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if not r["summary"]:
            lines.append(f"| {' | '.join(str(r['overrides'].get(k, '')) for k in varied)} | not finished |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--sort", default="score", choices=METRICS, help="order rows by this metric")
    args = parser.parse_args(argv)
    sweeps = [s for s in args.sweeps if not _beside_runs(s)]
    rows = [r for sweep in sweeps for r in rows_of(sweep)]
    print(table(rows, args.sort))
    return 0


def _beside_runs(path: Path) -> bool:
    """A file or a folder without runs (a study's study.yaml, its report/), which a glob over a study
    folder of docs/results/ (``docs/results/<study>/*``) passes along with the sweeps: skipped."""
    if path.is_file() or (
        path.is_dir() and not (path / "index.json").exists() and not any(path.rglob("summary.json"))
    ):
        print(f"skipped {path}: not a sweep", file=sys.stderr)
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
