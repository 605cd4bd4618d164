"""``sphere-report``: paper-style tables, figures and one HTML page from local run directories.

    sphere-report outputs/sweeps/2026-01-10/12-00-00            # a sweep: one subdirectory per job
    sphere-report runs/memit runs/memit_sphere -o report/       # several runs or sweeps together
    sphere-report SWEEP --metric efficacy --layer 5 --formats png
    sphere-report SWEEP --warn-calibration-seeds 0,1,2           # early-warning thresholds on 0-2

Reads only what ``sphere-edit`` wrote (config.yaml, metrics.jsonl, summary.json, checkpoint/), never
W&B. Seeds of one setting are averaged, with 95 % confidence intervals; see docs/report.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the report stack (pandas, matplotlib) is imported only once arguments are valid
    from sphere.report.build import Report

_FORMATS = ("png", "svg", "pdf")


def default_out(dirs: list[Path]) -> Path:
    """``<dir>/report`` for one input directory, else ``./report``."""
    return dirs[0] / "report" if len(dirs) == 1 else Path("report")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sphere-report", description=__doc__.splitlines()[0])
    p.add_argument(
        "dirs", nargs="+", type=Path, help="run directories or sweep directories (searched recursively)"
    )
    p.add_argument(
        "-o", "--out", type=Path, help="output directory (default: DIR/report for one DIR, else ./report)"
    )
    p.add_argument(
        "--metric",
        default="score",
        help="metric of the α×β heatmap and of the plug-in choice (default score)",
    )
    p.add_argument(
        "--corr-metric",
        default="efficacy",
        help="metric set against HE change in the scatter (default efficacy)",
    )
    p.add_argument(
        "--layer", help="layer of the angular-distribution figure (default: the middle edited layer)"
    )
    p.add_argument(
        "--formats",
        default="png,svg",
        help="figure formats, comma-separated (png, svg, pdf; default png,svg)",
    )
    p.add_argument(
        "--warn-calibration-seeds",
        default="",
        help="seeds whose runs calibrate the early-warning thresholds, comma-separated (e.g. 0,1,2); "
        "the other seeds are judged (default: none, the failure table only)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    bad = [f for f in formats if f not in _FORMATS]
    if not formats or bad:
        print(
            f"sphere-report: --formats {args.formats!r}: choose from {', '.join(_FORMATS)}", file=sys.stderr
        )
        return 2
    try:
        cal_seeds = tuple(int(x) for x in args.warn_calibration_seeds.split(",") if x.strip())
    except ValueError:
        print(
            f"sphere-report: --warn-calibration-seeds {args.warn_calibration_seeds!r}: "
            "integers separated by commas (e.g. 0,1,2)",
            file=sys.stderr,
        )
        return 2
    from sphere.report.build import build_report
    from sphere.report.collect import NoRunsError

    out = args.out or default_out(args.dirs)
    try:
        report = build_report(
            args.dirs,
            out,
            metric=args.metric,
            corr_metric=args.corr_metric,
            layer=args.layer,
            formats=formats,
            warn_calibration_seeds=cal_seeds,
        )
    except NoRunsError as e:
        print(f"sphere-report: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"sphere-report: {e} (writing the report to {out})", file=sys.stderr)
        return 1
    for w in report.collection.warnings:
        print(f"warning: {w}", file=sys.stderr)
    try:
        _print_summary(report)
    except BrokenPipeError:  # `sphere-report ... | head`: the report is written, the reader left
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes stdout at exit)
    return 0


def _print_summary(report: Report) -> None:
    """What was read, the compact table, and where each file went."""
    from sphere.report.tables import to_terminal

    runs = report.collection.runs
    print(
        f"read {len(runs)} run(s), {runs['setting_id'].nunique()} setting(s), "
        f"{int((~runs['finished']).sum())} unfinished"
    )
    print(to_terminal(report.table))
    print(f"\nwritten under {report.out_dir}:")
    for path, what in report.files.items():
        print(f"  {Path(path).relative_to(report.out_dir)}  —  {what}")
    for s in report.figures.skipped:
        print(f"  (figure not drawn) {s}")
    print(f"open: {(report.out_dir / 'report.html').resolve()}")


if __name__ == "__main__":
    sys.exit(main())
