"""ZsRE editing-quality metrics (reference ``compute_rewrite_quality_zsre``, spec §4.2), on exact token ids.

The reference feeds one prefix per answer token (``prompt + decode(target[:i])``) and compares the argmax at
the last position with gold token ``i``. That is exactly teacher-forced per-token argmax accuracy, which
:func:`score_continuations` computes in a single sequence per prompt — without the decode/re-tokenise round
trip that, in the reference, breaks LLaMA-3 (BOS ids leaking into prompts and golds; spec §4.2/§7.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from editors.core.tokens import Tokenizer
from sphere.data.records import EditRecord
from sphere.evaluation.scoring import score_continuations


def evaluate_zsre(
    model, tok: Tokenizer, records: Sequence[EditRecord], batch_size: int = 32, *, desc: str | None = None
) -> list[dict]:
    """Per-record ZsRE token accuracies.

    Keys: ``case_id``; ``rewrite_acc`` (rewrite prompt vs ``target_new`` tokens), ``paraphrase_acc``
    (paraphrase prompts vs ``target_new``), ``neighborhood_acc`` (neighbourhood prompts vs their gold answer
    ``neighborhood_targets[i]``, not vs pre-edit predictions — as in the reference). Each is the fraction of
    target tokens that are the teacher-forced argmax, pooled over the group's prompts (the reference's
    per-case mean of per-token booleans); NaN for a group with no prompts. ``*_exact`` is the second
    convention: the fraction of the group's prompts whose answer is reproduced in full (every token the
    argmax), the all-tokens criterion CounterFact's ``*_correct`` uses; ``*_exact_prompts`` the 0/1
    outcome of each of those prompts (their mean is ``*_exact``), for prompt-level paired tests.
    ``desc``: progress shown while scoring (``score_continuations``).
    """
    flat: list[tuple[str, str]] = []
    layout: list[dict[str, list[int]]] = []
    for record in records:
        if len(record.neighborhood_targets) != len(record.neighborhood_prompts):
            raise ValueError(
                f"case {record.case_id}: {len(record.neighborhood_prompts)} neighborhood prompts but "
                f"{len(record.neighborhood_targets)} targets"
            )
        groups = {
            "rewrite": [(record.prompt.format(record.subject), record.target_new)],
            "paraphrase": [(p, record.target_new) for p in record.paraphrase_prompts],
            "neighborhood": list(zip(record.neighborhood_prompts, record.neighborhood_targets)),
        }
        entry: dict[str, list[int]] = {}
        for name, items in groups.items():
            entry[name] = list(range(len(flat), len(flat) + len(items)))
            flat.extend(items)
        layout.append(entry)

    scores = score_continuations(model, tok, flat, batch_size=batch_size, desc=desc)

    rows: list[dict] = []
    for record, entry in zip(records, layout):
        row: dict = {"case_id": record.case_id}
        for name, idx in entry.items():
            hits = [h for i in idx for h in scores[i].token_correct]
            row[f"{name}_acc"] = sum(hits) / len(hits) if hits else math.nan
            exact = [int(scores[i].all_correct) for i in idx]
            row[f"{name}_exact"] = sum(exact) / len(exact) if exact else math.nan
            row[f"{name}_exact_prompts"] = exact
        rows.append(row)
    return rows
