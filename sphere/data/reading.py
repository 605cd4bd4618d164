"""Shared plumbing for the dataset readers: file reading, field checks and malformed-record handling.

Readers parse with the standard ``json`` module rather than HF ``datasets``: Arrow unifies the schema
across records and silently fills a missing field with ``null``, which would hide exactly the malformed
records we want to report, and it writes a cache for files that are read in well under a second anyway.

Every problem becomes one line that names the file, the record (case_id and index) or the field, what
was found and what is allowed: a long sequential run should fail at load time with a message that says
what to fix, never hundreds of edits in with a ``KeyError`` from deep inside an editor. Values are shown
with ``show`` (a truncated ``repr``), so a huge or multi-line field cannot spill over several lines.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from editors.core.requests import MalformedRequestError
from sphere.data.records import EditRecord, RecordList

log = logging.getLogger("sphere.data")

# Longest prompt, subject or target accepted. Real CounterFact/ZsRE fields are under 300 characters;
# anything near this is a broken export (a whole document in one field) that would only waste memory
# and context length, so it is reported rather than silently truncated.
MAX_TEXT_CHARS = 4000

# case ids key checkpoints and logs and are stored as int64 there.
MAX_CASE_ID = 2**63 - 1

# How much of a value an error message quotes.
_SHOW_CHARS = 60

_GZIP_MAGIC = b"\x1f\x8b"
_SKIP_HINT = "drop or repair the record, or set dataset.skip_malformed=true (skip_malformed=True) to skip it"


class MalformedRecordError(ValueError):
    """A dataset record that cannot become an ``EditRecord``; the message names file, case_id and fix."""


class RecordProblem(Exception):
    """Raised by a record builder with a short description; ``collect_records`` adds file and case_id."""


# --- describing values in messages ------------------------------------------------------------------


def show(value: Any) -> str:
    """A one-line ``repr`` cut to ``_SHOW_CHARS`` characters, with the full length when it was cut."""
    if isinstance(value, str) and len(value) > _SHOW_CHARS:
        return f"{value[:_SHOW_CHARS]!r}... ({len(value)} chars)"
    text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "..."


def describe(value: Any) -> str:
    """What a JSON value is, in JSON's terms (``null``, ``boolean true``, ``list of 3 items``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {show(value)}"
    if isinstance(value, list):
        return f"list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"object with keys {show(sorted(map(str, value)))}"
    return type(value).__name__


# --- reading files ------------------------------------------------------------------------------------


def _file_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its suffix)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw, False
    try:
        return gzip.decompress(raw), True
    except EOFError as err:
        raise ValueError(f"{path}: gzip data is truncated ({err}); re-download the file") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{path}: gzip data is corrupt ({err}); re-download the file") from None


def _decode_utf8(path: Path, raw: bytes, gzipped: bool) -> str:
    """The text of the file; a UTF-8 byte-order mark is tolerated (some editors write one)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        where = "byte offset (after gunzip)" if gzipped else "byte offset"
        raise ValueError(
            f"{path}: not UTF-8 text: byte 0x{raw[err.start]:02x} at {where} {err.start} ({err.reason}); "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def read_text(path: Path) -> str:
    """The text of a file (gunzipped when it starts with the gzip magic, UTF-8 checked): what every
    reader of bundled or downloaded data starts from; an unreadable file is a one-line ValueError."""
    raw, gzipped = _file_bytes(path)
    return _decode_utf8(path, raw, gzipped)


def _parse_json(path: Path, text: str) -> Any:
    """``json.loads`` with every failure (syntax, 4300+ digit ints, deep nesting) turned into one line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = "re-download or repair it"
        if err.msg == "Extra data":
            hint = "it looks like JSON Lines; wrap the records in one JSON list [...]"
        raise ValueError(
            f"{path}: not a readable JSON file ({err.msg} at line {err.lineno} column {err.colno}); {hint}"
        ) from None
    except RecursionError:
        raise ValueError(
            f"{path}: not a readable JSON file (nested too deeply); re-download or repair it"
        ) from None
    except ValueError as err:  # e.g. an integer literal longer than Python's int-parsing limit
        raise ValueError(f"{path}: not a readable JSON file ({err}); re-download or repair it") from None


def read_json_list(path: Path) -> list[Any]:
    """The top-level JSON list of a ``.json`` or ``.json.gz`` file (gzip detected by magic bytes).

    Raises ``ValueError`` with one line naming the file for an unreadable file: truncated or corrupt
    gzip, non-UTF-8 bytes (with the byte offset), an empty file, invalid JSON, or a top level that is
    not a list. An empty list is fine and gives no records.
    """
    raw, gzipped = _file_bytes(path)
    text = _decode_utf8(path, raw, gzipped)
    if not text.strip():
        size = f"{len(raw)} bytes after gunzip" if gzipped else f"{len(raw)} bytes"
        raise ValueError(f"{path}: file is empty ({size}); expected a JSON list of records")
    data = _parse_json(path, text)
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: expected a JSON list of records at the top level, got {describe(data)}; "
            "if the records sit under a key, save that list on its own"
        )
    return data


# --- checking fields ------------------------------------------------------------------------------------


def get_field(row: Any, *keys: str, kind: type = str, required: bool = True) -> Any:
    """``row[k1][k2]...`` checked for presence and type, so every problem names the dotted field.

    ``required=False`` returns ``None`` for a missing or ``null`` field; a present value of the
    wrong type is an error either way.
    """
    value = row
    for depth, key in enumerate(keys):
        if not isinstance(value, dict):
            parent = ".".join(keys[:depth])
            raise RecordProblem(f"field {parent!r} must be an object with key {key!r}, got {describe(value)}")
        if key not in value:
            if required:
                expected = kind.__name__ if depth == len(keys) - 1 else "an object"
                raise RecordProblem(f"missing field {'.'.join(keys[: depth + 1])!r} (expected {expected})")
            return None
        value = value[key]
    if value is None and not required:
        return None
    # bool is an int subclass; a boolean case_id is a data error, not an id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordProblem(f"field {'.'.join(keys)!r} must be {kind.__name__}, got {describe(value)}")
    return value


def check_text(value: str, name: str) -> str:
    """A prompt/subject/target must be non-blank, at most ``MAX_TEXT_CHARS`` long and valid Unicode.

    Lone surrogates (``"\\ud800"`` escapes in the JSON) are valid Python strings but cannot be encoded
    to UTF-8, so a tokenizer would fail on them in the middle of a run.
    """
    if not value.strip():
        raise RecordProblem(f"{name} is empty ({show(value)}); a non-blank string is required")
    if len(value) > MAX_TEXT_CHARS:
        raise RecordProblem(
            f"{name} is {len(value)} characters long; the limit is {MAX_TEXT_CHARS} (MAX_TEXT_CHARS)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RecordProblem(
            f"{name} contains a lone surrogate {value[err.start]!r} at character {err.start}, "
            "which is not valid Unicode text; fix the \\u escape in the file"
        ) from None
    return value


def get_text(row: Any, *keys: str) -> str:
    """A required, non-blank string field (prompts, subjects and targets are useless when blank)."""
    return check_text(get_field(row, *keys), f"field {'.'.join(keys)!r}")


def get_str_list(row: Any, *keys: str, required: bool = True) -> tuple[str, ...]:
    """A list-of-strings field as a tuple (``EditRecord`` is frozen, so it stores tuples).

    Every item is checked like a single text field: the items are prompts or answers that get
    tokenized and evaluated, so a number or a blank string among them would fail mid-run.
    """
    value = get_field(row, *keys, kind=list, required=required)
    if value is None:
        return ()
    dotted = ".".join(keys)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RecordProblem(f"field {dotted!r} must be a list of strings; item {i} is {describe(item)}")
        check_text(item, f"field {dotted!r} item {i}")
    return tuple(value)


def get_case_id(row: Any) -> int:
    """The record's ``case_id``: an int in ``[0, MAX_CASE_ID]`` (it keys checkpoints and logs)."""
    case_id = get_field(row, "case_id", kind=int)
    if not 0 <= case_id <= MAX_CASE_ID:
        raise RecordProblem(f"field 'case_id' is {case_id}; case ids must be ints from 0 to 2**63 - 1")
    return case_id


def check_template(template: str) -> None:
    """Editors call ``template.format(subject)``: exactly one ``{}`` and no other brace may appear."""
    count = template.count("{}")
    if count != 1:
        raise RecordProblem(
            f"prompt template {show(template)} must contain exactly one '{{}}' for the subject, found {count}"
        )
    rest = template.replace("{}", "")
    if "{" in rest or "}" in rest:
        raise RecordProblem(
            f"prompt template {show(template)} has a stray brace besides the subject's '{{}}'; "
            "no other '{' or '}' is allowed"
        )


def template_from_filled(prompt: str, subject: str) -> str:
    """Rebuild a ROME template from a prompt with the subject filled in (first occurrence)."""
    if subject not in prompt:
        raise RecordProblem(
            f"subject {show(subject)} does not occur in prompt {show(prompt)}; "
            "the prompt must contain the subject verbatim"
        )
    if "{" in prompt or "}" in prompt:
        raise RecordProblem(
            f"prompt {show(prompt)} contains a brace, which would break the '{{}}' template; "
            "no '{' or '}' is allowed in prompts or subjects"
        )
    return prompt.replace(subject, "{}", 1)


def check_limit(limit: int | None) -> None:
    """Reject a negative limit early instead of silently returning nothing."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")


def display_case_id(value: Any) -> str:
    """A case_id as error messages show it: plain when short and printable, else a truncated repr."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        text = str(value)
        if len(text) <= 30 and text.isprintable():
            return text
    return show(value)


# --- building records -------------------------------------------------------------------------------------


def _build_one(
    index: int, row: Any, build: Callable[[int, Any], EditRecord], seen: dict[int, int]
) -> EditRecord:
    """One record, or ``RecordProblem``; ``seen`` maps the case ids kept so far to their index."""
    if not isinstance(row, dict):
        raise RecordProblem(f"record is {describe(row)}, not a JSON object")
    record = build(index, row)
    try:
        record.request  # noqa: B018 - validates the edit request
    except MalformedRequestError as err:
        raise RecordProblem(str(err).split(": ", 1)[-1]) from None
    if record.case_id in seen:
        raise RecordProblem(
            f"duplicate case_id, already used by the record at index {seen[record.case_id]}; "
            "case ids must be unique (checkpoints and logs are keyed by them)"
        )
    return record


def collect_records(
    path: Path,
    rows: Iterable[tuple[int, Any]],
    build: Callable[[int, Any], EditRecord],
    case_id_of: Callable[[int, Any], object],
    limit: int | None,
    skip_malformed: bool,
) -> RecordList:
    """Build records until ``limit`` valid ones; a bad one raises (or is logged, skipped and counted).

    Each record's ``request`` is built here so editor-level problems surface at load time, with the
    file name attached, rather than hundreds of edits into a sequential run. The result's
    ``skipped`` says how many malformed records ``skip_malformed`` dropped.
    """
    check_limit(limit)
    out = RecordList()
    seen: dict[int, int] = {}
    for index, row in rows:
        if limit is not None and len(out) >= limit:
            break
        try:
            record = _build_one(index, row, build, seen)
        except RecordProblem as problem:
            where = (
                f"{path}: malformed record case_id={display_case_id(case_id_of(index, row))} (index {index})"
            )
            if not skip_malformed:
                raise MalformedRecordError(f"{where}: {problem}; {_SKIP_HINT}") from None
            log.warning("skipping %s: %s", where, problem)
            out.skipped += 1
            continue
        seen[record.case_id] = index
        out.append(record)
    if out.skipped:
        log.warning("%s: skipped %d malformed record(s), kept %d", path, out.skipped, len(out))
    return out
