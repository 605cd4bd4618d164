#!/usr/bin/env python
"""Write docs/results/README.md, the index of the committed run records: one table row per study
folder under docs/results/, from its study.yaml and the run directories below it.

    python scripts/results_index.py            # rewrite docs/results/README.md
    python scripts/results_index.py --check    # exit 1 if the committed file is not what it would write

Every folder under docs/results/ holds a ``study.yaml``:

    title: one line
    page: ../../results.md#section     # the doc section that discusses it, relative to the folder (or a list)
    command: [...]                     # the command(s) that produced the runs, copied from the page
    finding: one line, from the page
    note: optional, e.g. where a command was reconstructed from the runs' config.yaml

A run is a directory holding ``summary.json``; the commit column lists the distinct code versions in
their ``provenance.code`` (12 characters, "(modified)" when the tree had changes). Page links are
checked against the headings of the linked file. The output is sorted and written atomically.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from pathlib import Path

import yaml

from sphere.files import atomic_write_text
from sphere.run.rundir import SUMMARY_FILE, read_summary

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
INDEX = "README.md"
STUDY = "study.yaml"
REQUIRED = ("title", "page", "command", "finding")
OPTIONAL = ("note",)
REGENERATE = "python scripts/results_index.py"

HEADER = f"""# Run records

<!-- Written by scripts/results_index.py from docs/results/*/study.yaml and the run directories; do not edit. -->

One row per study folder under `docs/results/`. **runs**: run directories (a folder holding
`summary.json`; each holds `config.yaml`, `metrics.jsonl`, `summary.json`, for newer runs
`outcomes.jsonl`). **commit(s)**: the code versions in the runs' `summary.json` provenance
(`provenance.code`, 12 characters; "(modified)": the checkout had uncommitted changes; "before
provenance": the runs predate it, see the page for their date). **command**: copied from the page,
unless a note says otherwise. The write-ups with the numbers are [../results.md](../results.md) and
[../tuning.md](../tuning.md).

Regenerate after adding runs or a study: `{REGENERATE}`
(`--check` says whether this file is current; `tests/unit/test_results_index.py` runs it). A new
study folder needs a `study.yaml` with `title`, `page` (relative to the folder,
`../../results.md#section`), `command` (a list, copied from the page), `finding` (one line from the
page) and, where needed, `note`.
"""


class StudyError(ValueError):
    """A study folder whose record cannot be read or whose page link does not resolve."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _strings(value: object, field: str, path: Path) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise StudyError(f"{path}: `{field}` must be a non-empty string or a list of them")
    return [v.strip() for v in items]


def load_study(folder: Path) -> dict:
    """The study record of ``folder`` with ``page`` and ``command`` as lists of strings."""
    path = folder / STUDY
    if not path.is_file():
        raise StudyError(
            f"{path} is missing: every folder under {folder.parent} needs one, with "
            f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)}); see {INDEX} there"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise StudyError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path} is not a mapping")
    missing = [k for k in REQUIRED if data.get(k) in (None, "", [])]
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise StudyError(f"{path}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    study = {k: _one_line(data[k]) for k in ("title", "finding", "note") if data.get(k)}
    study["page"] = _strings(data["page"], "page", path)
    study["command"] = _strings(data["command"], "command", path)
    return study


def run_dirs(folder: Path) -> list[Path]:
    """The directories under ``folder`` (itself included) that hold a summary.json."""
    found = {p.parent for p in folder.rglob(SUMMARY_FILE) if p.is_file()}
    return sorted(d for d in found if not any(part.startswith(".") for part in d.relative_to(folder).parts))


def code_version(run: Path) -> str | None:
    """``commit[:12]`` (+ " (modified)") from the run's summary.json provenance; None without one."""
    path = run / SUMMARY_FILE
    try:
        summary = read_summary(run)
    except (OSError, ValueError) as e:
        raise StudyError(f"{path} is damaged ({type(e).__name__}: {e})") from None
    prov = summary.get("provenance") if isinstance(summary, dict) else None
    if not isinstance(prov, dict):
        return None
    code = prov.get("code") if isinstance(prov.get("code"), dict) else {}
    commit = str(code.get("commit") or "unknown")
    short = commit[:12] if re.fullmatch(r"[0-9a-f]{7,64}", commit) else commit
    return short + (" (modified)" if code.get("dirty") else "")


def commits_cell(versions: list[str | None]) -> str:
    if not versions:
        return "–"
    known = sorted({v for v in versions if v is not None})
    parts = [f"`{v.split(' ', 1)[0]}`" + (" (modified)" if v.endswith(" (modified)") else "") for v in known]
    before = sum(v is None for v in versions)
    if before:
        parts.append("before provenance" if not known else f"{before} runs before provenance")
    return "<br>".join(parts)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(doc: Path) -> dict[str, str]:
    """``{anchor: heading text}`` of a Markdown file, outside fenced code, duplicates numbered."""
    out: dict[str, str] = {}
    fence = None
    for line in doc.read_text(encoding="utf-8").splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
            continue
        m = None if fence else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug = github_slug(m.group(1))
            n = 0
            while slug in out:
                n += 1
                slug = f"{base}-{n}"
            out[slug] = m.group(1)
    return out


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def page_link(folder: Path, page: str, index_dir: Path) -> str:
    target, _, anchor = page.partition("#")
    doc = Path(os.path.normpath(folder / target))
    if not doc.is_file():
        raise StudyError(f"{folder / STUDY}: page {page!r}: {doc} does not exist")
    found = headings(doc)
    if anchor and anchor not in found:
        raise StudyError(f"{folder / STUDY}: page {page!r}: {doc.name} has no heading with anchor #{anchor}")
    rel = os.path.relpath(doc, index_dir).replace(os.sep, "/")
    label = doc.name + (f" § {found[anchor]}" if anchor else "")
    label = label.replace("[", "\\[").replace("]", "\\]")
    return f"[{_escape(label)}]({rel}{'#' + anchor if anchor else ''})"


def one_line_command(command: str) -> str:
    """A shell command of several lines as one: continuations joined, other lines with "; "."""
    out = ""
    for line in (s.strip() for s in command.splitlines()):
        if not line:
            continue
        if not out:
            out = line
        elif out.endswith("\\"):
            out = out[:-1].rstrip() + " " + line
        elif re.search(r"(^|[\s;])(do|then|else|\{)$", out) or out.endswith(("|", "&&", "||")):
            out += " " + line
        else:
            out += "; " + line
    return out


def code_span(text: str) -> str:
    text = _escape(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def row(folder: Path, index_dir: Path) -> str:
    study = load_study(folder)
    runs = run_dirs(folder)
    name = folder.name
    command = "<br>".join(code_span(one_line_command(c)) for c in study["command"])
    if study.get("note"):
        command += f"<br>*note: {_escape(study['note'])}*"
    cells = [
        f"[{name}]({name}/)<br>{_escape(study['title'])}",
        str(len(runs)),
        commits_cell([code_version(r) for r in runs]),
        command,
        _escape(study["finding"]),
        "<br>".join(page_link(folder, p, index_dir) for p in study["page"]),
    ]
    return "| " + " | ".join(cells) + " |"


def studies(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith("."))


def render(results: Path) -> str:
    """The index of ``results`` as Markdown (the same text for the same files)."""
    lines = [HEADER, "| study | runs | commit(s) | command | finding | page |", "|---|---:|---|---|---|---|"]
    lines += [row(folder, results) for folder in studies(results)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="default: docs/results")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if {INDEX} is not current; write nothing"
    )
    args = parser.parse_args(argv)
    results = args.results_dir.resolve()
    index = results / INDEX
    try:
        text = render(results)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    current = index.read_text(encoding="utf-8") if index.is_file() else ""
    if args.check:
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), text.splitlines(), "committed", "would write", lineterm="", n=0
        )
        shown = list(diff)[:40]
        print(
            f"{index} is out of date (a study or runs were added or changed): run `{REGENERATE}`"
            + (f" --results-dir {args.results_dir}" if results != RESULTS.resolve() else "")
            + " and commit it.\n"
            + "\n".join(shown),
            file=sys.stderr,
        )
        return 1
    if current == text:
        print(f"{index} is up to date")
        return 0
    atomic_write_text(index, text)
    print(f"wrote {index} ({len(studies(results))} studies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
