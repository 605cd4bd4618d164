"""Shared plumbing for the dataset readers: file reading, field checks and malformed-record handling.

Readers parse with the standard ``json`` module rather than HF ``datasets``: Arrow unifies the schema
across records and silently fills a missing field with ``null``, which would hide exactly the malformed
records we want to report, and it writes a cache for files that are read in well under a second anyway.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from editors.core.requests import MalformedRequestError
from sphere.data.records import EditRecord

log = logging.getLogger("sphere.data")


class MalformedRecordError(ValueError):
    """A dataset record that cannot become an ``EditRecord``; the message names file, case_id and fix."""


class RecordProblem(Exception):
    """Raised by a record builder with a short description; ``collect_records`` adds file and case_id."""


def read_json_list(path: Path) -> list[Any]:
    """The top-level JSON list of a ``.json`` or ``.json.gz`` file (gzip detected by magic bytes)."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err}); re-download or repair it") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got a {type(data).__name__}")
    return data


def get_field(row: Any, *keys: str, kind: type = str, required: bool = True) -> Any:
    """``row[k1][k2]...`` checked for presence and type, so every problem names the dotted field."""
    dotted = ".".join(keys)
    value = row
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            if required:
                raise RecordProblem(f"missing field {dotted!r}")
            return None
        value = value[key]
    if value is None and not required:
        return None
    # bool is an int subclass; a boolean case_id is a data error, not an id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordProblem(f"field {dotted!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def get_text(row: Any, *keys: str) -> str:
    """A required, non-blank string field (prompts, subjects and targets are useless when blank)."""
    value = get_field(row, *keys)
    if not value.strip():
        raise RecordProblem(f"field {'.'.join(keys)!r} is empty")
    return value


def get_str_list(row: Any, *keys: str, required: bool = True) -> tuple[str, ...]:
    """A list-of-strings field as a tuple (``EditRecord`` is frozen, so it stores tuples)."""
    value = get_field(row, *keys, kind=list, required=required)
    if value is None:
        return ()
    if not all(isinstance(item, str) for item in value):
        raise RecordProblem(f"field {'.'.join(keys)!r} must be a list of strings")
    return tuple(value)


def check_template(template: str) -> None:
    """Editors call ``template.format(subject)``: exactly one ``{}`` and no other brace may appear."""
    if template.count("{}") != 1:
        raise RecordProblem(f"prompt template {template!r} must contain exactly one '{{}}' for the subject")
    rest = template.replace("{}", "")
    if "{" in rest or "}" in rest:
        raise RecordProblem(f"prompt template {template!r} has a stray brace besides the subject's '{{}}'")


def template_from_filled(prompt: str, subject: str) -> str:
    """Rebuild a ROME template from a prompt with the subject filled in (first occurrence)."""
    if subject not in prompt:
        raise RecordProblem(f"subject {subject!r} does not occur in prompt {prompt!r}")
    if "{" in prompt or "}" in prompt:
        raise RecordProblem(f"prompt {prompt!r} contains a brace, which would break the '{{}}' template")
    return prompt.replace(subject, "{}", 1)


def check_limit(limit: int | None) -> None:
    """Reject a negative limit early instead of silently returning nothing."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")


def collect_records(
    path: Path,
    rows: Iterable[tuple[int, Any]],
    build: Callable[[int, Any], EditRecord],
    case_id_of: Callable[[int, Any], object],
    limit: int | None,
    skip_malformed: bool,
) -> list[EditRecord]:
    """Build records until ``limit`` valid ones; a bad one raises (or is logged and skipped).

    Each record's ``request`` is built here so editor-level problems surface at load time, with the
    file name attached, rather than hundreds of edits into a sequential run.
    """
    check_limit(limit)
    out: list[EditRecord] = []
    seen: set[int] = set()
    skipped = 0
    for index, row in rows:
        if limit is not None and len(out) >= limit:
            break
        try:
            if not isinstance(row, dict):
                raise RecordProblem(f"record is a {type(row).__name__}, not a JSON object")
            record = build(index, row)
            try:
                record.request  # noqa: B018 - validates the edit request
            except MalformedRequestError as err:
                raise RecordProblem(str(err).split(": ", 1)[-1]) from err
            if record.case_id in seen:
                raise RecordProblem("duplicate case_id (checkpoints and logs are keyed by it)")
        except RecordProblem as problem:
            case_id = case_id_of(index, row)
            message = (
                f"{path}: malformed record case_id={case_id} (index {index}): {problem}; "
                "drop or repair the record, or pass skip_malformed=True to skip it"
            )
            if not skip_malformed:
                raise MalformedRecordError(message) from None
            log.warning("skipping %s", message.split("; drop or repair")[0])
            skipped += 1
            continue
        seen.add(record.case_id)
        out.append(record)
    if skipped:
        log.warning("%s: skipped %d malformed record(s), kept %d", path, skipped, len(out))
    return out
