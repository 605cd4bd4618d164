"""ZsRE reader for MEND's ``zsre_mend_eval.json`` schema (subject, src, rephrase, alt, answers, loc, loc_ans).

Follows the reference ``MENDQADataset`` in building the template from ``src`` and the neighbourhood prompt
as ``loc + "?"`` with the NQ answer ``loc_ans``. The per-token split of the neighbourhood answer is the
evaluator's job, so the record keeps the whole answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sphere.data._io import (
    RecordProblem,
    check_template,
    collect_records,
    get_str_list,
    get_text,
    read_json_list,
    template_from_filled,
)
from sphere.data.records import EditRecord

ZsreTarget = Literal["alt", "answers"]


def _builder(target: ZsreTarget):
    """A record builder; ``target`` picks the field the edit writes (see ``read_zsre``)."""

    def build(index: int, row: dict[str, Any]) -> EditRecord:
        subject = get_text(row, "subject")
        template = template_from_filled(get_text(row, "src"), subject)
        check_template(template)
        if target == "alt":
            target_new = get_text(row, "alt")
        else:
            answers = get_str_list(row, "answers")
            if not answers or not answers[0].strip():
                raise RecordProblem("field 'answers' is empty")
            target_new = answers[0]
        return EditRecord(
            case_id=index,
            kind="zsre",
            prompt=template,
            subject=subject,
            target_new=target_new,
            target_true=None,
            paraphrase_prompts=(get_text(row, "rephrase"),),
            neighborhood_prompts=(get_text(row, "loc") + "?",),
            neighborhood_targets=(get_text(row, "loc_ans"),),
        )

    return build


def read_zsre(
    path: str | Path,
    limit: int | None = None,
    skip_malformed: bool = False,
    target: ZsreTarget = "answers",
) -> list[EditRecord]:
    """All (or the first ``limit`` valid) ZsRE records; ``case_id`` is the row index in the file.

    ``target="answers"`` (default) uses ``answers[0]``, as ROME/MEMIT/AlphaEdit/SPHERE's
    ``MENDQADataset`` does (the papers' ZsRE numbers); ``target="alt"`` edits towards MEND's
    alternative answer, as EasyEdit does.
    Malformed records raise ``MalformedRecordError`` (a ``ValueError``) unless ``skip_malformed``.
    """
    if target not in ("alt", "answers"):
        raise ValueError(f"target must be 'alt' or 'answers', got {target!r}")
    path = Path(path)
    rows = read_json_list(path)
    return collect_records(
        path, enumerate(rows), _builder(target), lambda index, _row: index, limit, skip_malformed
    )
