"""The progress of a sequential run: what a checkpoint must hold to continue where it stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Progress:
    """Where the run stands after ``batches_done`` batches.

    Attributes:
        batches_done, n_edits: batches and edits applied so far.
        pre: every evaluator's metrics of the unedited model (None until measured).
        evaluators: each evaluator's ``state_dict`` at the last checkpoint, by name.
        skipped: indices of batches undone for a non-finite update (``run.on_nonfinite=skip``).
        timings: seconds spent so far in setup, editing and evaluation.
        extended_from: the lengths (edits) at which the run was extended to a longer stream
            (``sphere.run.extend``); empty for a run edited at one length.
    """

    batches_done: int = 0
    n_edits: int = 0
    pre: dict[str, float] | None = None
    evaluators: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"setup_s": 0.0, "edit_s": 0.0, "eval_s": 0.0})
    extended_from: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**d)
