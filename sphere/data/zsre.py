"""ZsRE reader for MEND's ``zsre_mend_eval.json`` schema (subject, src, rephrase, alt, answers, loc, loc_ans).

Follows the reference ``MENDQADataset`` in building the template from ``src`` and the neighbourhood prompt
as ``loc + "?"`` with the NQ answer ``loc_ans``. The per-token split of the neighbourhood answer is the
evaluator's job, so the record keeps the whole answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sphere.data.reading import (
    RecordProblem,
    check_template,
    check_text,
    collect_records,
    describe,
    get_field,
    get_str_list,
    get_text,
    read_json_list,
    template_from_filled,
)
from sphere.data.records import EditRecord, RecordList

ZsreTarget = Literal["alt", "answers"]


def _first_answer(row: dict[str, Any]) -> str:
    """``answers[0]``: a non-empty list of strings; only the first is edited towards, so only it must be
    non-blank (a blank alternative answer further down is harmless and was always accepted)."""
    answers = get_field(row, "answers", kind=list)
    if not answers:
        raise RecordProblem("field 'answers' is empty (an empty list); at least one answer is required")
    for i, item in enumerate(answers):
        if not isinstance(item, str):
            raise RecordProblem(f"field 'answers' must be a list of strings; item {i} is {describe(item)}")
    return check_text(answers[0], "field 'answers' item 0")


def _locality(row: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Neighbourhood prompts (``loc + "?"``) and their answers (``loc_ans``).

    MEND's file has one string each; parallel lists of equal length are accepted too, since each
    prompt needs its own answer (the evaluator pairs them up one to one).
    """
    loc, loc_ans = row.get("loc"), row.get("loc_ans")
    if not isinstance(loc, list) and not isinstance(loc_ans, list):
        return (get_text(row, "loc") + "?",), (get_text(row, "loc_ans"),)
    if "loc" in row and "loc_ans" in row and not (isinstance(loc, list) and isinstance(loc_ans, list)):
        raise RecordProblem(
            f"fields 'loc' and 'loc_ans' must both be strings or both lists of the same length, "
            f"got {describe(loc)} and {describe(loc_ans)}"
        )
    prompts, answers = get_str_list(row, "loc"), get_str_list(row, "loc_ans")
    if len(prompts) != len(answers) or not prompts:
        raise RecordProblem(
            f"fields 'loc' and 'loc_ans' must be lists of the same, non-zero length (one answer per "
            f"prompt), got {len(prompts)} prompts and {len(answers)} answers"
        )
    return tuple(p + "?" for p in prompts), answers


def _builder(target: ZsreTarget):
    """A record builder; ``target`` picks the field the edit writes (see ``read_zsre``)."""

    def build(index: int, row: dict[str, Any]) -> EditRecord:
        subject = get_text(row, "subject")
        template = template_from_filled(get_text(row, "src"), subject)
        check_template(template)
        target_new = get_text(row, "alt") if target == "alt" else _first_answer(row)
        neighborhood_prompts, neighborhood_targets = _locality(row)
        return EditRecord(
            case_id=index,
            kind="zsre",
            prompt=template,
            subject=subject,
            target_new=target_new,
            target_true=None,
            paraphrase_prompts=(get_text(row, "rephrase"),),
            neighborhood_prompts=neighborhood_prompts,
            neighborhood_targets=neighborhood_targets,
        )

    return build


def read_zsre(
    path: str | Path,
    limit: int | None = None,
    skip_malformed: bool = False,
    target: ZsreTarget = "answers",
) -> RecordList:
    """All (or the first ``limit`` valid) ZsRE records; ``case_id`` is the row index in the file.

    ``target="answers"`` (default) uses ``answers[0]``, as ROME/MEMIT/AlphaEdit/SPHERE's
    ``MENDQADataset`` does (the papers' ZsRE numbers); ``target="alt"`` edits towards MEND's
    alternative answer, as EasyEdit does.
    Malformed records raise ``MalformedRecordError`` (a ``ValueError``) unless ``skip_malformed``, in
    which case they are logged, skipped and counted in the result's ``skipped``.
    """
    if target not in ("alt", "answers"):
        raise ValueError(f"target must be 'alt' or 'answers', got {target!r}")
    path = Path(path)
    rows = read_json_list(path)
    return collect_records(
        path, enumerate(rows), _builder(target), lambda index, _row: index, limit, skip_malformed
    )
