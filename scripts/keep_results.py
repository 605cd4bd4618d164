#!/usr/bin/env python
"""Copy a sweep's small files into the repository (docs/results/<name>/), so the tables of
docs/tuning.md and docs/results.md regenerate from committed files alone:

    python scripts/keep_results.py outputs/sweeps/targets_smollm2/rome docs/results/targets_smollm2_rome

Per finished job: summary.json, summary.txt, metrics.jsonl, config.yaml, outcomes.jsonl and the re-evaluations of ``sphere-eval``
(reeval/*.json); never checkpoints or kept weights.
The sweep's index.json comes along with each run directory written relative to it, so
``scripts/tuning_table.py`` and ``sphere-report`` read the copy as they read the sweep. Unfinished
jobs are left out and named. Files are written atomically; rerunning refreshes the copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sphere.files import atomic_write_json, atomic_write_text

SMALL_FILES = ("summary.json", "summary.txt", "metrics.jsonl", "config.yaml", "outcomes.jsonl")


def keep(sweep: Path, dest: Path) -> list[str]:
    """Copy ``sweep``'s finished jobs to ``dest``; returns the run directories left out."""
    index_path = sweep / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: pass a sweep directory written by `sphere-edit -m`")
    index = json.loads(index_path.read_text())
    kept, skipped = [], []
    for job in index["jobs"]:
        run_dir = Path(job.get("run_dir", ""))
        if not run_dir.is_absolute():
            run_dir = sweep / run_dir
        if job.get("status") != "finished" or not (run_dir / "summary.json").is_file():
            skipped.append(str(run_dir))
            continue
        names = [n for n in SMALL_FILES if (run_dir / n).is_file()]
        names += [str(p.relative_to(run_dir)) for p in sorted(run_dir.glob("reeval/*.json"))]
        for name in names:
            atomic_write_text(dest / run_dir.name / name, (run_dir / name).read_text())
        kept.append({**job, "run_dir": run_dir.name})
    counts = {"finished": len(kept)}
    atomic_write_json(dest / "index.json", {**index, "sweep_dir": str(dest), "counts": counts, "jobs": kept})
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep directory (with index.json)")
    parser.add_argument("dest", type=Path, help="where the copy goes, e.g. docs/results/<name>")
    args = parser.parse_args(argv)
    try:
        skipped = keep(args.sweep, args.dest)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for run in skipped:
        print(f"left out (not finished): {run}", file=sys.stderr)
    print(f"kept the finished runs of {args.sweep} in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
