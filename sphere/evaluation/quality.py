"""Edit quality as an evaluator: efficacy, generalization, specificity (CounterFact, ZsRE).

Under ``eval.protocol=edited_so_far`` every evaluation measures the records edited so far on the
current model (the paper's numbers). Under ``last_batch`` each batch is measured right after it is
edited and the scheduled/final numbers are the mean of those immediate results, which are kept in
the evaluator's state so a resumed run reports the same mean.

The per-record rows behind the final numbers are offered to the runner (``final_outcomes``), which
writes them to ``outcomes.jsonl``: under ``edited_so_far`` the rows of the final measurement, under
``last_batch`` the immediate rows themselves (each stamped with ``measured_at``, the number of
edits when it was measured).
"""

from __future__ import annotations

from typing import Any

from sphere.evaluation import aggregate, evaluate_records
from sphere.evaluation.catalogue import Metric
from sphere.evaluation.registry import EvalView, Moment, register_evaluator

# The paper's columns in both conventions (probability comparison, then top-1), the score, and the
# per-case margins and token accuracies that summary.json keeps beside them.
METRICS = [
    Metric("efficacy", "Efficacy", outcome="rewrite_success_prompts", curve=True, order=10),
    Metric("generalization", "Generalization", outcome="paraphrase_success_prompts", curve=True, order=11),
    Metric("specificity", "Specificity", outcome="neighborhood_success_prompts", curve=True, order=12),
    Metric("efficacy_top1", "Efficacy (top-1)", outcome="rewrite_top1_prompts", curve=True, order=16),
    Metric(
        "generalization_top1",
        "Generalization (top-1)",
        outcome="paraphrase_top1_prompts",
        curve=True,
        order=17,
    ),
    Metric(
        "specificity_top1", "Specificity (top-1)", outcome="neighborhood_top1_prompts", curve=True, order=18
    ),
    Metric("score", "Score", curve=True, order=19, composite=True),
    *(
        Metric(f"{m}_magnitude", f"{m.capitalize()} margin", unit="probability ×100", table=False, order=30)
        for m in ("efficacy", "generalization", "specificity")
    ),
    *(
        Metric(f"{m}_token_acc", f"{m.capitalize()} (token accuracy)", table=False, order=31)
        for m in ("efficacy", "generalization", "specificity")
    ),
]


@register_evaluator("edit_quality", metrics=METRICS)
class EditQuality:
    """Per-record editing metrics, aggregated to the paper's columns (``aggregate``)."""

    def __init__(self, cfg: Any) -> None:
        self.protocol, self.batch_size = cfg.protocol, cfg.batch_size
        moments = {"scheduled", "final"}
        if cfg.pre:
            moments.add("pre")
        if cfg.protocol == "last_batch":
            moments.add("batch")
        self.moments = frozenset(moments)
        self.immediate: list[dict] = []
        self._final: list[dict] | None = None  # not state: a resumed run measures "final" again

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        if self.protocol == "last_batch" and moment in ("scheduled", "final"):
            if moment == "final":
                self._final = self.immediate
            return aggregate(self.immediate)
        # progress for the long measurements; a batch's own records are covered by the editing bar
        desc = None if moment == "batch" else f"evaluating {len(view.records)} records ({moment})"
        rows = evaluate_records(view.model, view.tok, view.records, batch_size=self.batch_size, desc=desc)
        for row in rows:
            row["measured_at"] = view.n_edits
        if moment == "batch":
            self.immediate.extend(rows)
            return {f"batch/{k}": v for k, v in aggregate(rows).items()}
        if moment == "final":
            self._final = rows
        return aggregate(rows)

    def final_outcomes(self) -> list[dict] | None:
        """The per-record rows of the final measurement (see the module docstring)."""
        return self._final

    def state_dict(self) -> dict[str, Any]:
        return {"immediate": self.immediate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.immediate = list(state.get("immediate", []))
