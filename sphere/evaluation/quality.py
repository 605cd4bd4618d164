"""Edit quality as an evaluator: efficacy, generalization, specificity (CounterFact, ZsRE).

Under ``eval.protocol=edited_so_far`` every evaluation measures the records edited so far on the
current model (the paper's numbers). Under ``last_batch`` each batch is measured right after it is
edited and the scheduled/final numbers are the mean of those immediate results, which are kept in
the evaluator's state so a resumed run reports the same mean.
"""

from __future__ import annotations

from typing import Any

from sphere.evaluation import aggregate, evaluate_records
from sphere.evaluation.registry import EvalView, Moment, register_evaluator


@register_evaluator("edit_quality")
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

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        if self.protocol == "last_batch" and moment in ("scheduled", "final"):
            return aggregate(self.immediate)
        rows = evaluate_records(view.model, view.tok, view.records, batch_size=self.batch_size)
        if moment == "batch":
            self.immediate.extend(rows)
            return {f"batch/{k}": v for k, v in aggregate(rows).items()}
        return aggregate(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"immediate": self.immediate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.immediate = list(state.get("immediate", []))
