#!/usr/bin/env python
"""Download the canonical CounterFact / MultiCounterFact / ZsRE files (and the consistency metric's
attribute_snippets, idf, tfidf_vocab; EasyEdit's 10,000-record CounterFact edit split
counterfact-edit) into data/full, sha256-checked.

Example: python scripts/download_data.py counterfact zsre multi_counterfact counterfact-edit
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sphere.data.download import DEFAULT_BASE_URL, DEFAULT_DEST, FILES, DownloadError, download


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(FILES), help="datasets to fetch")
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, help=f"target directory (default {DEFAULT_DEST})"
    )
    parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"mirror URL (default {DEFAULT_BASE_URL})"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in dict.fromkeys(args.names):  # de-duplicate, keep order
        try:
            path = download(name, args.dest, args.base_url, progress=not args.no_progress)
        except DownloadError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
