"""CounterFact / MultiCounterFact reader: ROME's canonical schema or the EasyEdit split schema.

The schema is detected per file from its first record that carries a schema's marker field, so the
full canonical ``counterfact.json`` and
the offline EasyEdit splits (which keep 1 paraphrase and 1 neighbourhood prompt per case) load into the
same ``EditRecord`` shape and the editors and metrics never see the difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sphere.data.reading import (
    check_template,
    collect_records,
    get_case_id,
    get_field,
    get_str_list,
    get_text,
    read_json_list,
    show,
    template_from_filled,
)
from sphere.data.records import EditRecord, RecordList

Schema = Literal["rome", "easyedit"]

# Fields that identify each schema in a file's first record.
_ROME_MARKER = "requested_rewrite"
_EASYEDIT_MARKERS = ("rephrase_prompt", "locality_prompt", "ground_truth")


def detect_schema(path: Path, rows: list[Any]) -> Schema:
    """Which CounterFact schema a file uses, judged from its first record with a marker field.

    Skipping unmarked leading records lets one broken first record be reported (or skipped with
    ``skip_malformed``) like any other instead of making the whole file unreadable.
    """
    for row in rows:
        if isinstance(row, dict):
            if _ROME_MARKER in row:
                return "rome"
            if any(key in row for key in _EASYEDIT_MARKERS):
                return "easyedit"
    first = rows[0]
    found = show(sorted(map(str, first))) if isinstance(first, dict) else type(first).__name__
    raise ValueError(
        f"{path}: unrecognised CounterFact schema (first record: {found}); expected ROME's counterfact.json "
        "(case_id, requested_rewrite, paraphrase_prompts, neighborhood_prompts) or an EasyEdit split "
        "(case_id, prompt, subject, target_new, ground_truth, rephrase_prompt, locality_prompt, ...)"
    )


def _from_rome(_index: int, row: dict[str, Any]) -> EditRecord:
    """ROME schema: the template is stored; neighbourhood answers are the record's true object."""
    case_id = get_case_id(row)
    template = get_text(row, "requested_rewrite", "prompt")
    check_template(template)
    target_true = get_text(row, "requested_rewrite", "target_true", "str")
    neighborhood = get_str_list(row, "neighborhood_prompts")
    return EditRecord(
        case_id=case_id,
        kind="counterfact",
        prompt=template,
        subject=get_text(row, "requested_rewrite", "subject"),
        target_new=get_text(row, "requested_rewrite", "target_new", "str"),
        target_true=target_true,
        paraphrase_prompts=get_str_list(row, "paraphrase_prompts"),
        neighborhood_prompts=neighborhood,
        neighborhood_targets=(target_true,) * len(neighborhood),
        relation_id=get_field(row, "requested_rewrite", "relation_id", required=False),
        generation_prompts=get_str_list(row, "generation_prompts", required=False),
        target_new_id=get_field(row, "requested_rewrite", "target_new", "id", required=False),
    )


def _from_easyedit(_index: int, row: dict[str, Any]) -> EditRecord:
    """EasyEdit split: the subject is filled in, so the template is rebuilt around its first occurrence."""
    case_id = get_case_id(row)
    subject = get_text(row, "subject")
    template = template_from_filled(get_text(row, "prompt"), subject)
    check_template(template)
    return EditRecord(
        case_id=case_id,
        kind="counterfact",
        prompt=template,
        subject=subject,
        target_new=get_text(row, "target_new"),
        target_true=get_text(row, "ground_truth"),
        paraphrase_prompts=(get_text(row, "rephrase_prompt"),),
        neighborhood_prompts=(get_text(row, "locality_prompt"),),
        neighborhood_targets=(get_text(row, "locality_ground_truth"),),
    )


def _case_id_of(index: int, row: Any) -> object:
    """The case_id for error messages, falling back to the row position when it is missing."""
    if isinstance(row, dict) and "case_id" in row:
        return row["case_id"]
    return f"<missing, row {index}>"


def read_counterfact(path: str | Path, limit: int | None = None, skip_malformed: bool = False) -> RecordList:
    """All (or the first ``limit`` valid) CounterFact records of a ``.json``/``.json.gz`` file.

    Raises ``MalformedRecordError`` (a ``ValueError``) naming file, case_id, problem and fix for a bad
    record, unless ``skip_malformed`` is set, in which case it is logged, skipped and counted in the
    result's ``skipped``. An unreadable file raises ``ValueError`` whatever ``skip_malformed`` says.
    """
    path = Path(path)
    rows = read_json_list(path)
    if not rows:
        return RecordList()
    build = _from_rome if detect_schema(path, rows) == "rome" else _from_easyedit
    return collect_records(path, enumerate(rows), build, _case_id_of, limit, skip_malformed)
