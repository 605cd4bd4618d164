"""Editing-quality evaluation: per-record metrics (CounterFact, ZsRE) and their run-level aggregation."""

from __future__ import annotations

import math
from collections.abc import Sequence

from editors.core.tokens import Tokenizer
from sphere.data.records import EditRecord
from sphere.evaluation.counterfact import evaluate_counterfact
from sphere.evaluation.scoring import ContinuationScore, score_continuations
from sphere.evaluation.zsre import evaluate_zsre

__all__ = [
    "HEADLINE",
    "ContinuationScore",
    "aggregate",
    "evaluate_counterfact",
    "evaluate_records",
    "evaluate_zsre",
    "score_continuations",
]

# The columns a run reports first: both conventions (probability comparison, then top-1).
HEADLINE = (
    "efficacy",
    "generalization",
    "specificity",
    "efficacy_top1",
    "generalization_top1",
    "specificity_top1",
)

# paper column -> per-record group name (rewrite/paraphrase/neighborhood)
_COLUMNS = (("efficacy", "rewrite"), ("generalization", "paraphrase"), ("specificity", "neighborhood"))


def evaluate_records(
    model, tok: Tokenizer, records: Sequence[EditRecord], batch_size: int = 32, *, desc: str | None = None
) -> list[dict]:
    """Per-record metrics for a batch of records of one kind ("counterfact" or "zsre").

    Mixed kinds are refused rather than split, because their rows have different keys and
    :func:`aggregate` could not summarise them into one set of paper columns. ``desc``: progress
    shown while scoring, once per mini-batch of prompts (e.g. ``"evaluating 300 records (final)"``);
    ``None`` shows none.
    """
    if not records:
        return []
    kinds = {r.kind for r in records}
    if len(kinds) > 1:
        raise ValueError(f"records mix kinds {sorted(kinds)}; evaluate each kind separately")
    kind = kinds.pop()
    if kind == "counterfact":
        return evaluate_counterfact(model, tok, records, batch_size=batch_size, desc=desc)
    if kind == "zsre":
        return evaluate_zsre(model, tok, records, batch_size=batch_size, desc=desc)
    raise ValueError(f"unknown record kind {kind!r}; expected 'counterfact' or 'zsre'")


def _finite(rows: Sequence[dict], key: str) -> list[float]:
    """The finite values of ``key`` (NaN marks a record with no prompts of a group)."""
    return [float(r[key]) for r in rows if not math.isnan(float(r[key]))]


def _mean_pct(rows: list[dict], key: str) -> float:
    """Mean ×100 of ``key`` over the rows where it is finite."""
    vals = _finite(rows, key)
    return 100.0 * sum(vals) / len(vals) if vals else math.nan


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean over cases, s/√n with the sample standard deviation (ddof = 1);
    the paper's ± after each number. NaN for fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _with_se(out: dict[str, float], column: str, rows: list[dict], key: str) -> None:
    """``out[column]`` = mean ×100 of the per-case ``key`` and ``out[column + "_se"]`` its standard error ×100."""
    out[column] = _mean_pct(rows, key)
    out[f"{column}_se"] = 100.0 * standard_error(_finite(rows, key))


def _harmonic(values: Sequence[float]) -> float:
    """Harmonic mean (scipy ``hmean`` semantics): 0 if any value is 0, NaN if any is undefined."""
    if any(math.isnan(v) for v in values):
        return math.nan
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def aggregate(rows: Sequence[dict]) -> dict[str, float]:
    """Run-level metrics in percent (×100, arithmetic means across records), keyed by paper column.

    CounterFact rows give ``efficacy``/``generalization``/``specificity`` from the NLL comparison
    (``*_success``), ``*_top1`` from all-tokens-argmax (the reference's ``*_correct``), ``*_magnitude``
    (probability margin, positive = good) and ``*_token_acc`` (per-token argmax accuracy).

    ZsRE: ``efficacy`` etc. are the reference's token accuracies (``*_acc``, also under ``*_token_acc``),
    and ``*_top1`` the all-tokens convention (fraction of prompts whose whole answer is the argmax), so
    tables use the same keys for both datasets and both conventions.

    Every per-case column ``m`` comes with ``m_se``, its standard error over cases ×100 (the paper's ±).
    Only these named per-record means are read: the per-prompt outcome lists (``*_prompts``),
    ``measured_at`` and any other key of a row never reach the aggregate.

    Both give ``score`` = harmonic mean of efficacy, generalization and specificity ([M]/[A] summarize;
    0 if any is 0 — not the arithmetic mean [S] mislabels "harmonic"), and ``n_records``. Empty → ``{}``.
    """
    rows = list(rows)
    if not rows:
        return {}
    is_cf = ["rewrite_success" in r for r in rows]
    is_zsre = ["rewrite_acc" in r for r in rows]
    out: dict[str, float] = {}
    if all(is_cf):
        for column, group in _COLUMNS:
            _with_se(out, column, rows, f"{group}_success")
            _with_se(out, f"{column}_top1", rows, f"{group}_top1")
            _with_se(out, f"{column}_magnitude", rows, f"{group}_magnitude")
            _with_se(out, f"{column}_token_acc", rows, f"{group}_token_acc")
    elif all(is_zsre):
        for column, group in _COLUMNS:
            _with_se(out, column, rows, f"{group}_acc")
            _with_se(out, f"{column}_top1", rows, f"{group}_exact")
            out[f"{column}_token_acc"], out[f"{column}_token_acc_se"] = out[column], out[f"{column}_se"]
    else:
        raise ValueError(
            "rows mix CounterFact and ZsRE metrics (or are neither); aggregate each kind separately"
        )
    out["score"] = _harmonic([out[c] for c, _ in _COLUMNS])
    out["n_records"] = len(rows)
    return out
