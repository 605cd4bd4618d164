"""``outcomes.jsonl``: every edited record's results at the final evaluation, one JSON row each.

summary.json holds means; a paired comparison of two settings (SPHERE on and off, same records,
seed and number of edits) needs the records. With these rows McNemar's test can be run per record
(``rewrite_success`` of one run against the other's) or per prompt (the ``*_prompts`` lists).

Row schema, written by :func:`write_outcomes`::

    {"case_id": <the record's case_id>,
     "n_edits": <edits applied at the final evaluation>,
     ...the per-record values of every evaluator that offers them (``OutcomeSource``)}

For ``edit_quality`` those values are the evaluator's own per-record keys (the source of truth;
``sphere.evaluation.counterfact`` / ``zsre`` define them): ``measured_at`` (edits applied when the
record was measured: ``n_edits`` under ``eval.protocol=edited_so_far``, the end of the record's
batch under ``last_batch``); CounterFact ``{rewrite,paraphrase,neighborhood}_{success,magnitude,
top1,token_acc}`` (means over the record's prompts of the group) and ``*_success_prompts`` /
``*_top1_prompts`` (the 0/1 outcome of each prompt; one for rewrite); ZsRE ``*_acc``, ``*_exact``
and ``*_exact_prompts``. The summary's headline columns are means ×100 of these over the rows:
rewrite → efficacy, paraphrase → generalization, neighborhood → specificity (``*_success`` for
CounterFact, ``*_acc`` for ZsRE; ``*_top1`` / ``*_exact`` give the ``_top1`` columns). A value
that is undefined (NaN: a record without paraphrases) is written as ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sphere.files import atomic_write_text

OUTCOMES_FILE = "outcomes.jsonl"


def merge_outcomes(sources: Iterable[list[dict[str, Any]]], n_edits: int) -> list[dict[str, Any]]:
    """One row per record from several evaluators' rows, matched on ``case_id`` (the k-th row of a
    case_id with the k-th of the same id elsewhere, should a record be edited twice), in the order
    records first appear; a key two evaluators both give takes the later evaluator's value."""
    merged: dict[tuple[Any, int], dict[str, Any]] = {}
    for rows in sources:
        seen: dict[Any, int] = {}
        for row in rows:
            cid = row["case_id"]
            k = seen[cid] = seen.get(cid, -1) + 1
            merged.setdefault((cid, k), {"case_id": cid, "n_edits": n_edits}).update(
                {key: v for key, v in row.items() if key != "case_id"}
            )
    return list(merged.values())


def _json_safe(value: Any) -> Any:
    """NaN/inf → None (JSON has no NaN; ``json.dumps`` would write the invalid token ``NaN``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def write_outcomes(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``run_dir/outcomes.jsonl`` atomically (a killed run leaves the old file or
    none, never half of one); returns the path."""
    path = Path(run_dir) / OUTCOMES_FILE
    text = "".join(json.dumps(_json_safe(r), allow_nan=False) + "\n" for r in rows)
    atomic_write_text(path, text)
    return path


def read_outcomes(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/outcomes.jsonl`` (nulls stay None)."""
    lines = (Path(run_dir) / OUTCOMES_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
