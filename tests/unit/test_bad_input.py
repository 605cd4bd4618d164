"""Bad dataset input: every malformed record or file gives one clear line, and the parsers never crash.

The tables below are one bad input per row, with a substring the message must contain; every message
must also be a single line that names the file and, for a record, its case_id and index. The
property-based tests then throw arbitrary JSON (and arbitrary bytes) at both readers: the only
acceptable outcomes are valid ``EditRecord``s or a one-line ``ValueError``/``MalformedRecordError``,
never a ``KeyError``, ``TypeError``, ``AttributeError``, ``IndexError``...
"""

from __future__ import annotations

import copy
import gzip
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from editors.core.requests import EditRequest, MalformedRequestError
from sphere.data import (
    MAX_TEXT_CHARS,
    EditRecord,
    MalformedRecordError,
    RecordList,
    check_tokenizable,
    load_records,
    read_counterfact,
    read_zsre,
)
from sphere.models.tokenizers import load_bundled_tokenizer

ROME = {
    "case_id": 0,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": ["Danielle Darrieux, a native", "Danielle Darrieux spoke the language"],
    "neighborhood_prompts": ["The mother tongue of Léon Blum is", "Michel Rocard is a native speaker of"],
    "generation_prompts": ["Danielle Darrieux's mother tongue is"],
}

EASYEDIT = {
    "case_id": 0,
    "prompt": "The mother tongue of Danielle Darrieux is",
    "target_new": "English",
    "subject": "Danielle Darrieux",
    "ground_truth": "French",
    "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
    "locality_prompt": "Michel Rocard is a native speaker of",
    "locality_ground_truth": "French",
}

ZSRE = {
    "subject": "IAAF Combined Events Challenge",
    "src": "When was the inception of IAAF Combined Events Challenge?",
    "rephrase": "When was the IAAF Combined Events Challenge launched?",
    "alt": "2006",
    "answers": ["1998"],
    "loc": "nq question: what is the name of the last episode of spongebob",
    "loc_ans": "The String",
}

HUGE = "x" * (MAX_TEXT_CHARS + 1)
_DELETE = object()


def write(path: Path, rows: Any, gz: bool = False) -> Path:
    data = json.dumps(rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def assert_one_line(message: str) -> None:
    """A message a user can read in a log line: non-empty, no line break of any kind, no traceback."""
    assert message.strip()
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message


def edit(path: str, value: Any = _DELETE) -> Callable[[dict], None]:
    """A mutation of a record: set (or, without ``value``, delete) the field at dotted ``path``."""
    *parents, last = path.split(".")

    def apply(record: dict) -> None:
        target = record
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = copy.deepcopy(value)

    return apply


def bad_file(tmp_path: Path, base: dict, mutation: Callable[[dict], None] | Any, *, ids: bool) -> Path:
    """[good, bad, good]: the bad record sits at index 1 (case_id 1 unless the mutation changes it)."""
    rows = []
    for case_id in range(3):
        row = copy.deepcopy(base)
        if ids:
            row["case_id"] = case_id
        rows.append(row)
    if callable(mutation):
        mutation(rows[1])
    else:
        rows[1] = mutation  # the whole record replaced (a list, null, a number...)
    return write(tmp_path / "data.json", rows)


def check_record_error(path: Path, read: Callable[..., RecordList], expected: str, **kwargs: Any) -> None:
    """The bad record at index 1 raises one line naming file, record, problem and fix; skipping works."""
    with pytest.raises(MalformedRecordError) as info:
        read(path, **kwargs)
    message = str(info.value)
    assert_one_line(message)
    assert str(path) in message and "malformed record case_id=" in message and "(index 1)" in message
    assert expected in message, message
    assert "drop or repair the record" in message and "skip_malformed" in message
    kept = read(path, skip_malformed=True, **kwargs)
    assert isinstance(kept, RecordList) and kept.skipped == 1
    assert [r.case_id for r in kept] == [0, 2]


# --- CounterFact, ROME schema ------------------------------------------------------------------------

ROME_CASES = [
    # missing fields
    (edit("case_id"), "missing field 'case_id' (expected int)"),
    (edit("requested_rewrite"), "missing field 'requested_rewrite' (expected an object)"),
    (edit("requested_rewrite.prompt"), "missing field 'requested_rewrite.prompt' (expected str)"),
    (edit("requested_rewrite.subject"), "missing field 'requested_rewrite.subject'"),
    (edit("requested_rewrite.target_new.str"), "missing field 'requested_rewrite.target_new.str'"),
    (edit("requested_rewrite.target_true"), "missing field 'requested_rewrite.target_true'"),
    (edit("paraphrase_prompts"), "missing field 'paraphrase_prompts' (expected list)"),
    (edit("neighborhood_prompts"), "missing field 'neighborhood_prompts' (expected list)"),
    # wrong container types
    (
        edit("requested_rewrite", []),
        "field 'requested_rewrite' must be an object with key 'prompt', got list",
    ),
    (edit("requested_rewrite.target_new", "English"), "'requested_rewrite.target_new' must be an object"),
    # case ids
    (edit("case_id", "3"), "field 'case_id' must be int, got str '3'"),
    (edit("case_id", 3.0), "field 'case_id' must be int, got float 3.0"),
    (edit("case_id", True), "field 'case_id' must be int, got boolean true"),
    (edit("case_id", None), "field 'case_id' must be int, got null"),
    (edit("case_id", [1]), "field 'case_id' must be int, got list of 1 item"),
    (edit("case_id", -1), "field 'case_id' is -1; case ids must be ints from 0 to 2**63 - 1"),
    (edit("case_id", 2**64), f"field 'case_id' is {2**64}; case ids must be ints from 0"),
    # wrong scalar types
    (edit("requested_rewrite.subject", 5), "'requested_rewrite.subject' must be str, got int 5"),
    (edit("requested_rewrite.subject", ["Danielle"]), "must be str, got list of 1 item"),
    (edit("requested_rewrite.subject", {"x": 1}), "must be str, got object with keys ['x']"),
    (edit("requested_rewrite.subject", False), "must be str, got boolean false"),
    (
        edit("requested_rewrite.target_new.str", None),
        "'requested_rewrite.target_new.str' must be str, got null",
    ),
    (edit("requested_rewrite.target_true.str", 1.5), "must be str, got float 1.5"),
    (edit("requested_rewrite.relation_id", 103), "'requested_rewrite.relation_id' must be str, got int 103"),
    # empty and whitespace-only
    (edit("requested_rewrite.subject", ""), "field 'requested_rewrite.subject' is empty ('')"),
    (edit("requested_rewrite.subject", " \t\n"), "is empty (' \\t\\n'); a non-blank string is required"),
    (edit("requested_rewrite.target_new.str", "\u3000"), "field 'requested_rewrite.target_new.str' is empty"),
    # the template
    (
        edit("requested_rewrite.prompt", "The mother tongue of Danielle is"),
        "exactly one '{}' for the subject, found 0",
    ),
    (edit("requested_rewrite.prompt", "{} speaks {}"), "exactly one '{}' for the subject, found 2"),
    (edit("requested_rewrite.prompt", "The {0} of {} is"), "stray brace besides the subject's '{}'"),
    (edit("requested_rewrite.prompt", "The mother tongue of {} is }"), "stray brace"),
    (edit("requested_rewrite.prompt", "{{}} is"), "stray brace"),
    # huge strings
    (
        edit("requested_rewrite.prompt", HUGE + "{}"),
        f"is {MAX_TEXT_CHARS + 3} characters long; the limit is 4000",
    ),
    (edit("requested_rewrite.subject", HUGE), f"is {MAX_TEXT_CHARS + 1} characters long; the limit is 4000"),
    (edit("requested_rewrite.target_true.str", HUGE), "the limit is 4000 (MAX_TEXT_CHARS)"),
    # text that is not Unicode (a "\ud800" escape in the JSON)
    (edit("requested_rewrite.subject", "Dani\ud800"), "contains a lone surrogate '\\ud800' at character 4"),
    # lists
    (edit("paraphrase_prompts", "a string"), "field 'paraphrase_prompts' must be list, got str 'a string'"),
    (
        edit("paraphrase_prompts", ["ok", 7]),
        "'paraphrase_prompts' must be a list of strings; item 1 is int 7",
    ),
    (
        edit("neighborhood_prompts", [None]),
        "'neighborhood_prompts' must be a list of strings; item 0 is null",
    ),
    (edit("neighborhood_prompts", ["ok", ["nested"]]), "item 1 is list of 1 item"),
    (edit("neighborhood_prompts", [{"a": 1}]), "item 0 is object with keys ['a']"),
    (edit("paraphrase_prompts", ["  "]), "field 'paraphrase_prompts' item 0 is empty"),
    (edit("paraphrase_prompts", ["ok", HUGE]), "field 'paraphrase_prompts' item 1 is 4001 characters long"),
    (edit("generation_prompts", [1]), "'generation_prompts' must be a list of strings; item 0 is int 1"),
    # the record itself is not an object
    ([], "record is list of 0 items, not a JSON object"),
    (None, "record is null, not a JSON object"),
    ("case 1", "record is str 'case 1', not a JSON object"),
    (42, "record is int 42, not a JSON object"),
]


@pytest.mark.parametrize(("mutation", "expected"), ROME_CASES)
def test_rome_bad_record(tmp_path, mutation, expected):
    check_record_error(bad_file(tmp_path, ROME, mutation, ids=True), read_counterfact, expected)


# --- CounterFact, EasyEdit schema ----------------------------------------------------------------------

EASYEDIT_CASES = [
    (
        edit("prompt", "The mother tongue of Someone Else is"),
        "subject 'Danielle Darrieux' does not occur in prompt",
    ),
    (edit("subject", "danielle darrieux"), "the prompt must contain the subject verbatim"),
    (edit("prompt", "The {} tongue of Danielle Darrieux is"), "contains a brace, which would break the '{}'"),
    (edit("prompt", "The mother tongue of Danielle Darrieux is }"), "contains a brace"),
    (
        lambda r: r.update(subject="Dani{x}", prompt="The mother tongue of Dani{x} is"),
        "no '{' or '}' is allowed in prompts or subjects",
    ),
    (edit("ground_truth", None), "field 'ground_truth' must be str, got null"),
    (edit("rephrase_prompt"), "missing field 'rephrase_prompt' (expected str)"),
    (edit("locality_ground_truth"), "missing field 'locality_ground_truth'"),
    (edit("locality_prompt", 3), "field 'locality_prompt' must be str, got int 3"),
    (edit("target_new", ["English"]), "field 'target_new' must be str, got list of 1 item"),
    (edit("target_new", " "), "field 'target_new' is empty"),
    (edit("case_id", "1"), "field 'case_id' must be int, got str '1'"),
    (edit("case_id", -5), "field 'case_id' is -5"),
    (
        edit("prompt", HUGE + " Danielle Darrieux"),
        "field 'prompt' is 4019 characters long; the limit is 4000",
    ),
    (edit("rephrase_prompt", "\udfff"), "field 'rephrase_prompt' contains a lone surrogate"),
]


@pytest.mark.parametrize(("mutation", "expected"), EASYEDIT_CASES)
def test_easyedit_bad_record(tmp_path, mutation, expected):
    check_record_error(bad_file(tmp_path, EASYEDIT, mutation, ids=True), read_counterfact, expected)


# --- ZsRE ----------------------------------------------------------------------------------------------

ZSRE_CASES = [
    (edit("loc"), "missing field 'loc' (expected str)", "answers"),
    (edit("loc_ans"), "missing field 'loc_ans' (expected str)", "answers"),
    (edit("loc_ans", None), "field 'loc_ans' must be str, got null", "answers"),
    (
        edit("loc", ["q1", "q2"]),
        "'loc' and 'loc_ans' must both be strings or both lists of the same length, got list of 2 items "
        "and str 'The String'",
        "answers",
    ),
    (
        lambda r: r.update(loc=["q1", "q2"], loc_ans=["a1"]),
        "must be lists of the same, non-zero length (one answer per prompt), got 2 prompts and 1 answers",
        "answers",
    ),
    (lambda r: r.update(loc=[], loc_ans=[]), "got 0 prompts and 0 answers", "answers"),
    (
        lambda r: r.update(loc=["q1", 3], loc_ans=["a1", "a2"]),
        "'loc' must be a list of strings; item 1 is int 3",
        "answers",
    ),
    (lambda r: r.update(loc=["q1"], loc_ans=[""]), "field 'loc_ans' item 0 is empty", "answers"),
    (
        edit("answers", []),
        "field 'answers' is empty (an empty list); at least one answer is required",
        "answers",
    ),
    (edit("answers", [""]), "field 'answers' item 0 is empty", "answers"),
    (edit("answers", [1998]), "field 'answers' must be a list of strings; item 0 is int 1998", "answers"),
    (edit("answers", "1998"), "field 'answers' must be list, got str '1998'", "answers"),
    (edit("answers"), "missing field 'answers' (expected list)", "answers"),
    (edit("src", "Who founded it?"), "does not occur in prompt 'Who founded it?'", "answers"),
    (edit("src", "When was {IAAF Combined Events Challenge}?"), "contains a brace", "answers"),
    (edit("rephrase"), "missing field 'rephrase'", "answers"),
    (edit("subject", None), "field 'subject' must be str, got null", "answers"),
    (edit("subject", ""), "field 'subject' is empty", "answers"),
    (edit("alt"), "missing field 'alt' (expected str)", "alt"),
    (edit("alt", 2006), "field 'alt' must be str, got int 2006", "alt"),
]


@pytest.mark.parametrize(("mutation", "expected", "target"), ZSRE_CASES)
def test_zsre_bad_record(tmp_path, mutation, expected, target):
    path = bad_file(tmp_path, ZSRE, mutation, ids=False)
    check_record_error(path, read_zsre, expected, target=target)


def test_zsre_parallel_locality_lists_are_accepted(tmp_path):
    row = dict(ZSRE, loc=["q1", "q2"], loc_ans=["a1", "a2"])
    [record] = read_zsre(write(tmp_path / "z.json", [row]))
    assert record.neighborhood_prompts == ("q1?", "q2?") and record.neighborhood_targets == ("a1", "a2")


# --- duplicate case ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [ROME, EASYEDIT], ids=["rome", "easyedit"])
def test_duplicate_case_id(tmp_path, base):
    check_record_error(
        bad_file(tmp_path, base, edit("case_id", 0), ids=True),
        read_counterfact,
        "duplicate case_id, already used by the record at index 0; case ids must be unique",
    )


# --- unreadable files ----------------------------------------------------------------------------------

LATIN1 = '[{"subject": "Léon"}]'.encode("latin-1")  # 'é' is byte 0xe9 at offset 15


def _gzip_with_bad_crc() -> bytes:
    data = bytearray(gzip.compress(b"[]"))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    return bytes(data)


FILE_CASES = [
    (b"", "file is empty (0 bytes); expected a JSON list of records"),
    (b" \n\t", "file is empty (3 bytes)"),
    (gzip.compress(b""), "file is empty (0 bytes after gunzip)"),
    (b"hello", "not a readable JSON file (Expecting value at line 1 column 1)"),
    (b'[{"case_id": 0,', "not a readable JSON file (Expecting property name enclosed in double quotes"),
    (b'{"case_id": 0}\n{"case_id": 1}\n', "it looks like JSON Lines; wrap the records in one JSON list"),
    (b"[" * 100_000, "not a readable JSON file (nested too deeply)"),
    (b'{"data": []}', "expected a JSON list of records at the top level, got object with keys ['data']"),
    (b'"records"', "got str 'records'"),
    (b"42", "got int 42"),
    (b"null", "got null"),
    (
        LATIN1,
        "not UTF-8 text: byte 0xe9 at byte offset 15 (invalid continuation byte); re-encode the file as UTF-8",
    ),
    (gzip.compress(LATIN1), "byte 0xe9 at byte offset (after gunzip) 15"),
    (b"\xff\xfe[\x00]\x00", "byte 0xff at byte offset 0"),  # UTF-16
    (gzip.compress(json.dumps([EASYEDIT]).encode())[:30], "gzip data is truncated"),
    (_gzip_with_bad_crc(), "gzip data is corrupt (CRC check failed"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 20, "gzip data is corrupt"),
]


FILE_CASE_IDS = [
    "empty",
    "blank",
    "empty-gzip",
    "not-json",
    "truncated-json",
    "json-lines",
    "deep-nesting",
    "top-object",
    "top-string",
    "top-number",
    "top-null",
    "latin1",
    "latin1-gzip",
    "utf16",
    "truncated-gzip",
    "gzip-bad-crc",
    "gzip-bad-deflate",
]


@pytest.mark.parametrize(("content", "expected"), FILE_CASES, ids=FILE_CASE_IDS)
@pytest.mark.parametrize("read", [read_counterfact, read_zsre], ids=["counterfact", "zsre"])
def test_unreadable_file(tmp_path, read, content, expected):
    path = tmp_path / "data.json.gz"
    path.write_bytes(content)
    for skip in (False, True):  # skip_malformed skips records, never a broken file
        with pytest.raises(ValueError) as info:
            read(path, skip_malformed=skip)
        message = str(info.value)
        assert_one_line(message)
        assert message.startswith(f"{path}: ") and expected in message, message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([1, 2], "unrecognised CounterFact schema (first record: int)"),
        ([{"foo": 1}], "(first record: ['foo'])"),
    ],
)
def test_unknown_counterfact_schema(tmp_path, rows, expected):
    with pytest.raises(ValueError) as info:
        read_counterfact(write(tmp_path / "cf.json", rows))
    assert_one_line(str(info.value))
    assert expected in str(info.value)


def test_broken_first_record_does_not_hide_the_schema(tmp_path):
    """The schema comes from the first record that has a marker, so a bad first row is just a bad row."""
    path = write(tmp_path / "cf.json", [{"case_id": 5}, ROME])
    with pytest.raises(
        MalformedRecordError, match=r"case_id=5 \(index 0\): missing field 'requested_rewrite'"
    ):
        read_counterfact(path)
    assert [r.case_id for r in read_counterfact(path, skip_malformed=True)] == [0]


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "cf.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([EASYEDIT]).encode())
    assert read_counterfact(path)[0].subject == "Danielle Darrieux"


def test_long_values_are_cut_in_messages(tmp_path):
    path = bad_file(tmp_path, EASYEDIT, edit("prompt", "y" * 100_000), ids=True)
    with pytest.raises(MalformedRecordError) as info:
        read_counterfact(path)
    assert "100000 characters long" in str(info.value) and len(str(info.value)) < 500


# --- RecordList and the skipped count -----------------------------------------------------------------


def test_record_list_counts_skipped(tmp_path):
    rows = [dict(EASYEDIT, case_id=i) for i in range(6)]
    rows[1]["prompt"] = "no subject here"
    rows[4]["target_new"] = 7
    path = write(tmp_path / "cf.json", rows)
    records = load_records("counterfact", path, skip_malformed=True)
    assert isinstance(records, list) and isinstance(records, RecordList)
    assert records.skipped == 2 and [r.case_id for r in records] == [0, 2, 3, 5]
    assert load_records("counterfact", path, limit=1).skipped == 0  # stops before the bad record
    assert load_records("counterfact", path, limit=2, skip_malformed=True).skipped == 1
    clean = load_records("zsre", "zsre-sample", limit=3)
    assert isinstance(clean, RecordList) and clean.skipped == 0 and len(clean) == 3
    # callers rebuild it from a subset (the runner's shuffle/limit) and pickle it (checkpoints)
    subset = type(records)(records[:2])
    assert subset.skipped == 0 and subset == records[:2]
    again = pickle.loads(pickle.dumps(records))
    assert again == records and again.skipped == 2
    assert RecordList([], skipped=3).skipped == 3
    assert read_counterfact(write(tmp_path / "empty.json", [])) == [] == RecordList()


# --- targets that tokenize to nothing --------------------------------------------------------------------


class DroppingTokenizer:
    """A stand-in for a tokenizer whose normalizer drops whitespace and NUL (as some SentencePiece
    models do); the bundled byte-level BPE tokenizers give every non-empty string at least one token."""

    def __init__(self, bos_token_id: int | None = None, add_bos: bool = False):
        self.bos_token_id = bos_token_id
        self.eos_token_id = self.pad_token_id = None
        self.add_bos = add_bos

    def _ids(self, text: str) -> list[int]:
        ids = [ord(c) for c in text if not c.isspace() and c != "\x00"]
        return ([self.bos_token_id] if self.add_bos else []) + ids

    def __call__(self, text: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(text, str):
            return {"input_ids": self._ids(text)}
        return {"input_ids": [self._ids(t) for t in text]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target_new": "\x00"}, "target_new ' \\x00' tokenizes to zero tokens"),
        ({"ground_truth": "\x00\x00"}, "target_true ' \\x00\\x00' tokenizes to zero tokens"),
        ({"subject": "\x00", "prompt": "\x00"}, "prompt '\\x00' tokenizes to zero tokens"),
        ({"rephrase_prompt": "\x00"}, "paraphrase_prompts[0] '\\x00'"),
        ({"locality_prompt": "\x00 "}, "neighborhood_prompts[0]"),
        ({"locality_ground_truth": "\x00"}, "neighborhood_targets[0]"),
    ],
)
@pytest.mark.parametrize("bos", [False, True], ids=["no-bos", "lone-bos"])
def test_check_tokenizable(tmp_path, changes, field, bos):
    rows = [dict(EASYEDIT, case_id=3), dict(EASYEDIT, case_id=12, **changes)]
    records = read_counterfact(write(tmp_path / "cf.json", rows))  # readers accept these texts
    tok = DroppingTokenizer(bos_token_id=1, add_bos=True) if bos else DroppingTokenizer()
    check_tokenizable(records[:1], tok)
    with pytest.raises(MalformedRecordError) as info:
        check_tokenizable(records, tok, source="cf.json")
    message = str(info.value)
    assert_one_line(message)
    assert message.startswith("cf.json: record case_id=12: ") and field in message, message


def test_check_tokenizable_passes_bundled_samples():
    gpt2 = load_bundled_tokenizer("gpt2")
    for kind in ("counterfact", "zsre"):
        check_tokenizable(load_records(kind, f"{kind}-sample"), gpt2)


# --- EditRequest built by hand -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 5, "x", "y"), "prompt must be a str, got int"),
        ((0, "{} is", None, "y"), "subject must be a str, got NoneType"),
        ((0, "{} is", "x", ["y"]), "target_new must be a str, got list"),
        ((0, "{} is", "x", "y", 3), "target_true must be a str or None, got int"),
        (("0", "{} is", "x", "y"), "case_id must be an int, got str"),
        ((True, "{} is", "x", "y"), "case_id must be an int, got bool"),
        ((0, "{} is {x}", "x", "y"), "has a brace besides the subject's '{}'"),
    ],
)
def test_edit_request_rejects_bad_fields(args, expected):
    with pytest.raises(MalformedRequestError) as info:
        EditRequest(*args)
    assert_one_line(str(info.value))
    assert expected in str(info.value)


def test_edit_request_accepts_numpy_case_id():
    assert EditRequest(np.int64(4), "{} is", "x", "y").text == "x is"


# --- property-based fuzz ----------------------------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUNDTRIP = settings(FUZZ, max_examples=100)  # valid records only: fewer shapes to explore

# Surrogate-free text (JSON cannot carry lone surrogates as UTF-8), with braces and blanks over-represented.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20) | st.sampled_from(
    ["", " ", "{}", "{", "}", "{0}", "{}{}", "\t\n", "\x00", "Danielle Darrieux", "{} is", HUGE]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def _paths(record: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested record, e.g. ("requested_rewrite", "target_new", "str")."""
    out = []
    for key, value in record.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += _paths(value, (*prefix, key))
    return out


def _replacement(value: Any) -> st.SearchStrategy[Any]:
    """What a field may become: dropped, arbitrary JSON, arbitrary text, or the old text with
    random text around it (keeps a subject inside its prompt, so later checks are reached too)."""
    options = [st.just(_DELETE), JSON, TEXT]
    if isinstance(value, str):
        options.append(st.builds(lambda a, b: a + value + b, TEXT, TEXT))
    elif isinstance(value, list):
        options.append(st.lists(TEXT | JSON, max_size=3))
    return st.one_of(options)


def mutated(base: dict) -> st.SearchStrategy[dict]:
    """Records shaped like ``base`` with up to three fields (at any depth) dropped or replaced, and
    sometimes extra keys; one change at a time lets the fuzz reach the checks deep in a record."""

    @st.composite
    def build(draw: st.DrawFn) -> dict:
        record = copy.deepcopy(base)
        for path in draw(st.lists(st.sampled_from(_paths(base)), max_size=3, unique=True)):
            parent = record
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or path[-1] not in parent:
                continue  # an enclosing field was already replaced
            new = draw(_replacement(parent[path[-1]]))
            if new is _DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = new
        extra = draw(st.dictionaries(TEXT, JSON, max_size=2))
        return {**extra, **record}

    return build()


READERS = {
    "rome": (read_counterfact, mutated(ROME)),
    "easyedit": (read_counterfact, mutated(EASYEDIT)),
    "zsre": (read_zsre, mutated(ZSRE)),
}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_valid(records: list[EditRecord]) -> None:
    """What every record a reader returns must satisfy, whatever the input was."""
    assert len({r.case_id for r in records}) == len(records)
    for r in records:
        assert isinstance(r, EditRecord) and isinstance(r.case_id, int) and r.case_id >= 0
        texts = [r.prompt, r.subject, r.target_new, *r.paraphrase_prompts, *r.neighborhood_prompts]
        texts += [*r.neighborhood_targets, *([r.target_true] if r.target_true is not None else [])]
        for text in texts:
            assert isinstance(text, str) and text.strip() and len(text) <= MAX_TEXT_CHARS + 1
            text.encode("utf-8")
        assert r.prompt.count("{}") == 1
        assert isinstance(r.request.text, str)
        assert len(r.neighborhood_prompts) == len(r.neighborhood_targets)


def run_reader(read: Callable[..., RecordList], path: Path, n_rows: int, skip: bool) -> None:
    """Either valid records (all rows accounted for when skipping) or a one-line ValueError."""
    try:
        records = read(path, skip_malformed=skip)
    except ValueError as err:  # MalformedRecordError included; anything else fails the test
        assert_one_line(str(err))
        assert str(path) in str(err)
        return
    assert isinstance(records, RecordList)
    check_valid(records)
    if skip:
        assert len(records) + records.skipped == n_rows
    else:
        assert records.skipped == 0 and len(records) == n_rows


@pytest.mark.parametrize("schema", sorted(READERS))
@FUZZ
@given(data=st.data(), skip=st.booleans(), ascii_only=st.booleans())
def test_fuzz_records(fuzz_dir, schema, data, skip, ascii_only):
    read, record = READERS[schema]
    rows = data.draw(st.lists(record, min_size=1, max_size=4))
    if data.draw(st.booleans()):  # a row that is not a record at all
        rows.insert(data.draw(st.integers(0, len(rows))), data.draw(JSON))
    path = fuzz_dir / f"{schema}.json"
    path.write_text(json.dumps(rows, ensure_ascii=ascii_only), encoding="utf-8")
    run_reader(read, path, len(rows), skip)


@FUZZ
@given(content=st.binary(max_size=200), gz=st.booleans(), json_prefix=st.booleans())
def test_fuzz_bytes(fuzz_dir, content, gz, json_prefix):
    if json_prefix:  # start like a record list, so the parser gets past the first byte more often
        content = b'[{"case_id": 0, "subject": "' + content
    path = fuzz_dir / "bytes.json"
    path.write_bytes(gzip.compress(content) if gz else content)
    for read in (read_counterfact, read_zsre):
        try:
            read(path, skip_malformed=True)
        except ValueError as err:
            assert_one_line(str(err))


# --- round trip: valid generated records parse to the same fields --------------------------------------

WORD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="{}"), max_size=20)
NONBLANK = WORD.filter(lambda s: bool(s.strip()))
PROMPTS = st.lists(NONBLANK, max_size=3)


@ROUNDTRIP
@given(
    ids=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=3, unique=True),
    pieces=st.lists(
        st.tuples(WORD, WORD, NONBLANK, NONBLANK, NONBLANK, PROMPTS, PROMPTS), min_size=3, max_size=3
    ),
    subject_braces=st.booleans(),
)
def test_roundtrip_rome(fuzz_dir, ids, pieces, subject_braces):
    rows = []
    for case_id, (before, after, subject, new, true, para, neigh) in zip(ids, pieces):
        subject = "{" + subject + "}" if subject_braces else subject  # filled in by format: harmless
        rewrite = {"prompt": before + "{}" + after, "subject": subject}
        rewrite |= {"target_new": {"str": new}, "target_true": {"str": true}}
        rows.append(
            {
                "case_id": case_id,
                "requested_rewrite": rewrite,
                "paraphrase_prompts": para,
                "neighborhood_prompts": neigh,
            }
        )
    records = read_counterfact(write(fuzz_dir / "rt_rome.json", rows))
    assert records.skipped == 0 and len(records) == len(rows)
    for row, r in zip(rows, records):
        rw = row["requested_rewrite"]
        assert (r.case_id, r.prompt, r.subject) == (row["case_id"], rw["prompt"], rw["subject"])
        assert (r.target_new, r.target_true) == (rw["target_new"]["str"], rw["target_true"]["str"])
        assert r.paraphrase_prompts == tuple(row["paraphrase_prompts"])
        assert r.neighborhood_prompts == tuple(row["neighborhood_prompts"])
        assert r.neighborhood_targets == (r.target_true,) * len(r.neighborhood_prompts)
        assert r.request.text == rw["prompt"].format(rw["subject"])


@ROUNDTRIP
@given(
    ids=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=3, unique=True),
    pieces=st.lists(st.tuples(WORD, WORD, *[NONBLANK] * 6), min_size=3, max_size=3),
)
def test_roundtrip_easyedit(fuzz_dir, ids, pieces):
    rows = [
        {
            "case_id": case_id,
            "prompt": before + subject + after,
            "subject": subject,
            "target_new": new,
            "ground_truth": true,
            "rephrase_prompt": rephrase,
            "locality_prompt": loc,
            "locality_ground_truth": loc_ans,
        }
        for case_id, (before, after, subject, new, true, rephrase, loc, loc_ans) in zip(ids, pieces)
    ]
    records = read_counterfact(write(fuzz_dir / "rt_easyedit.json", rows))
    assert records.skipped == 0 and len(records) == len(rows)
    for row, r in zip(rows, records):
        assert (r.case_id, r.subject, r.request.text) == (row["case_id"], row["subject"], row["prompt"])
        assert (r.target_new, r.target_true) == (row["target_new"], row["ground_truth"])
        assert r.paraphrase_prompts == (row["rephrase_prompt"],)
        assert r.neighborhood_prompts == (row["locality_prompt"],)
        assert r.neighborhood_targets == (row["locality_ground_truth"],)


@ROUNDTRIP
@given(
    pieces=st.lists(st.tuples(WORD, WORD, *[NONBLANK] * 6), min_size=1, max_size=3),
    target=st.sampled_from(["answers", "alt"]),
)
def test_roundtrip_zsre(fuzz_dir, pieces, target):
    rows = [
        {
            "subject": subject,
            "src": before + subject + after,
            "rephrase": rephrase,
            "alt": alt,
            "answers": [answer],
            "loc": loc,
            "loc_ans": loc_ans,
        }
        for before, after, subject, alt, answer, rephrase, loc, loc_ans in pieces
    ]
    records = read_zsre(write(fuzz_dir / "rt_zsre.json", rows), target=target)
    assert records.skipped == 0 and [r.case_id for r in records] == list(range(len(rows)))
    for row, r in zip(rows, records):
        assert (r.subject, r.request.text, r.target_true) == (row["subject"], row["src"], None)
        assert r.target_new == (row["answers"][0] if target == "answers" else row["alt"])
        assert r.paraphrase_prompts == (row["rephrase"],)
        assert (r.neighborhood_prompts, r.neighborhood_targets) == ((row["loc"] + "?",), (row["loc_ans"],))
