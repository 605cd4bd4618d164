"""``sphere-eval``: re-evaluate a saved run without editing again.

    sphere-eval RUN_DIR                                   # the last saved point, the run's metrics
    sphere-eval RUN_DIR --at all --pre eval.evaluators=[edit_quality,general] eval.general.n_items=100
    sphere-eval RUN_DIR --at 5000,15000 eval.evaluators=[generation] eval.generation.prompts=edit_prompts

    sphere-eval RUN_DIR --at all --pre --merge eval.evaluators=[general]   # into the run's own files

Overrides are ``key=value`` on the run's own config.yaml. Saved points: the resume checkpoint and
``kept/edits_<n>`` (``run.keep_at`` when editing). Results: ``RUN_DIR/reeval/<overrides>.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sphere.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sphere-eval", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory written by sphere-edit")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run's config (e.g. eval.*)")
    p.add_argument("--at", default="last", help="all | last | numbers of edits, e.g. 5000,15000")
    p.add_argument("--pre", action="store_true", help="also measure the unedited model")
    p.add_argument("--list", action="store_true", help="list the saved points and exit")
    p.add_argument(
        "--merge",
        action="store_true",
        help="also add the results to the run's metrics.jsonl and summary.json (e.g. general ability "
        "measured on kept checkpoints after editing, as the paper does)",
    )
    args = p.parse_intermixed_args(argv)  # overrides may come before or after the options
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sphere.files import CorruptFileError
    from sphere.run.reevaluate import reevaluate
    from sphere.run.rundir import saved_points

    if not (Path(args.run_dir) / "config.yaml").is_file():  # else --list would print nothing, exit 0
        what = "is not a run directory (no config.yaml)" if Path(args.run_dir).is_dir() else "does not exist"
        print(
            f"sphere-eval: RUN_DIR {args.run_dir} {what}; pass a directory written by sphere-edit",
            file=sys.stderr,
        )
        return 2
    try:
        if args.list:
            for n, source in saved_points(args.run_dir).items():
                print(f"{n:>8} edits  ({source})")
            return 0
        bad = [o for o in args.overrides if "=" not in o]
        if bad:
            raise ConfigError(f"{bad[0]!r} is not key=value")
        result = reevaluate(args.run_dir, args.overrides, at=args.at, pre=args.pre, merge=args.merge)
    except ConfigError as e:
        print(f"sphere-eval: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, CorruptFileError) as e:
        print(f"sphere-eval: {e}", file=sys.stderr)
        return 1
    for point in result["points"]:
        shown = {k: v for k, v in point.items() if not k.endswith("_se") and not k.startswith("he/")}
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    for k, v in result["notes"].items():
        print(f"note: {k}: {v}")
    print(f"written: {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
