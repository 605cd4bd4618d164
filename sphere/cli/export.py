"""``sphere-export``: a run's edited model as an ordinary Hugging Face checkpoint, or a patch.

    sphere-export RUN_DIR -o edited-model/               # save_pretrained: load with from_pretrained
    sphere-export RUN_DIR --patch -o patch.safetensors   # only the edited matrices + metadata
    sphere-export RUN_DIR --at 5000 -o edited-5000/      # a point kept with run.keep_at

Apply a patch in Python: ``from sphere.export import apply_patch; apply_patch(base_model, path)``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sphere.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sphere-export", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory written by sphere-edit")
    p.add_argument("-o", "--out", type=Path, help="output directory (or .safetensors file with --patch)")
    p.add_argument("--at", default="last", help="number of edits to export (a saved point; default last)")
    p.add_argument("--patch", action="store_true", help="write only the edited layers as a safetensors patch")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sphere.export import export_run
    from sphere.files import CorruptFileError

    out = args.out or Path(args.run_dir) / ("patch.safetensors" if args.patch else "export")
    try:
        written = export_run(args.run_dir, out, at=args.at, patch=args.patch)
    except ConfigError as e:
        print(f"sphere-export: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, CorruptFileError) as e:
        print(f"sphere-export: {e}", file=sys.stderr)
        return 1
    print(f"written: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
