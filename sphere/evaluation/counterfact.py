"""CounterFact editing-quality metrics (reference ``compute_rewrite_quality_counterfact`` + summarize, spec §4.1/4.3).

Per record, the rewrite prompt, each paraphrase prompt and each neighbourhood prompt is scored with both the
new and the "true" object; the neighbourhood's "true" object is the record's ``neighborhood_targets[i]``
(CounterFact: ``target_true``). All records' sequences go through one :func:`score_continuations` call so
the batches are full regardless of how few prompts a single record has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from editors.core.tokens import Tokenizer
from sphere.data.records import EditRecord
from sphere.evaluation.scoring import ContinuationScore, score_continuations


def _neighborhood_targets(record: EditRecord) -> tuple[str, ...]:
    """The expected answer for every neighbourhood prompt; falls back to ``target_true`` as in CounterFact."""
    prompts = record.neighborhood_prompts
    targets = record.neighborhood_targets or (record.target_true,) * len(prompts)
    if len(targets) != len(prompts):
        raise ValueError(
            f"case {record.case_id}: {len(prompts)} neighborhood prompts but {len(targets)} targets"
        )
    return targets  # type: ignore[return-value]  # target_true checked non-None by the caller


def _mean(xs: Sequence[float]) -> float:
    """Mean, NaN for an empty group (a record without paraphrases must not count as 0% or 100%)."""
    return sum(xs) / len(xs) if xs else math.nan


def _group_metrics(
    pairs: list[tuple[ContinuationScore, ContinuationScore]], favour_new: bool
) -> dict[str, float | list[int]]:
    """Success, magnitude, top-1 and token accuracy of one prompt group, and the per-prompt 0/1
    outcomes behind the success and top-1 means (``success_prompts``, ``top1_prompts``).

    ``pairs`` holds (new, true) scores per prompt. ``favour_new`` is True for rewrite/paraphrase (the edit
    should make the new object likelier) and False for neighbourhood (the true object should stay likelier);
    the argmax metrics are computed on the object that *should* win. The per-prompt lists let two runs
    on the same records be compared prompt by prompt (McNemar's test); a record's mean hides them.
    """
    success: list[int] = []
    magnitude: list[float] = []
    top1: list[int] = []
    hits: list[float] = []
    for new, true in pairs:
        want, other = (new, true) if favour_new else (true, new)
        success.append(int(want.nll < other.nll))
        magnitude.append(math.exp(-want.nll) - math.exp(-other.nll))
        top1.append(int(want.all_correct))
        hits.extend(float(h) for h in want.token_correct)
    return {
        "success": _mean(success),
        "magnitude": _mean(magnitude),
        "top1": _mean(top1),
        "token_acc": _mean(hits),
        "success_prompts": success,
        "top1_prompts": top1,
    }


def evaluate_counterfact(
    model, tok: Tokenizer, records: Sequence[EditRecord], batch_size: int = 32, *, desc: str | None = None
) -> list[dict]:
    """Per-record CounterFact metrics, each a mean over that record's prompts of the given group.

    Keys: ``case_id``; ``{rewrite,paraphrase,neighborhood}_success`` (rewrite/paraphrase: p_new > p_true,
    i.e. nll_new < nll_true; neighbourhood: p_true > p_new); ``*_magnitude`` (exp(−nll_new) − exp(−nll_true)
    for rewrite/paraphrase, the opposite sign for neighbourhood, so positive is always "good");
    ``*_top1`` (every token of the object that should win is the teacher-forced argmax — the reference's
    ``*_correct``); ``*_token_acc`` (fraction of those tokens that are the argmax, pooled over the group's
    prompts). A group with no prompts yields NaN, which :func:`sphere.evaluation.aggregate` skips.
    ``*_success_prompts`` and ``*_top1_prompts``: the 0/1 outcome of each prompt of the group, in the
    record's prompt order (one for rewrite, empty for a group with no prompts), whose means are
    ``*_success`` and ``*_top1``; ``aggregate`` reads only the means.
    """
    flat: list[tuple[str, str]] = []
    layout: list[dict[str, list[int]]] = []  # per record: group -> indices into flat (pairs new, true)
    for record in records:
        if record.target_true is None:
            raise ValueError(f"case {record.case_id}: CounterFact metrics need target_true")
        groups: dict[str, list[tuple[str, str, str]]] = {
            "rewrite": [(record.prompt.format(record.subject), record.target_new, record.target_true)],
            "paraphrase": [(p, record.target_new, record.target_true) for p in record.paraphrase_prompts],
            "neighborhood": [
                (p, record.target_new, t)
                for p, t in zip(record.neighborhood_prompts, _neighborhood_targets(record))
            ],
        }
        entry: dict[str, list[int]] = {}
        for name, items in groups.items():
            entry[name] = []
            for prefix, new, true in items:
                entry[name].append(len(flat))
                flat.extend([(prefix, new), (prefix, true)])
        layout.append(entry)

    scores = score_continuations(model, tok, flat, batch_size=batch_size, desc=desc)

    rows: list[dict] = []
    for record, entry in zip(records, layout):
        row: dict = {"case_id": record.case_id}
        for name, starts in entry.items():
            pairs = [(scores[i], scores[i + 1]) for i in starts]
            for key, value in _group_metrics(pairs, favour_new=name != "neighborhood").items():
                row[f"{name}_{key}"] = value
        rows.append(row)
    return rows
