"""The ``eval`` config group: which evaluators run, when, and HE's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from sphere.method.projection import check_choice


@dataclass
class HEConfig:
    """Hyperspherical energy Σ_{i≠j} (‖x̂_i − x̂_j‖² + eps)^(−power) of each edited matrix."""

    power: float = 1.0
    eps: float = 1e-4
    block_size: int = 1024
    normalized: bool = True


@dataclass
class EvalConfig:
    """When and how edit quality is measured.

    ``protocol``: ``edited_so_far`` evaluates every record edited so far at each evaluation point
    (the paper's checkpoint evaluation; the final numbers cover all edits on the final model);
    ``last_batch`` evaluates each batch right after editing it and reports the mean of those
    immediate results (much higher numbers under forgetting: never compare the two).
    """

    protocol: str = "edited_so_far"
    evaluators: list[str] = field(default_factory=lambda: ["edit_quality", "he"])
    every: int = 0
    pre: bool = True
    batch_size: int = 32
    he: HEConfig = field(default_factory=HEConfig)

    def __post_init__(self) -> None:
        check_choice("eval.protocol", self.protocol, ("edited_so_far", "last_batch"))
        if self.every < 0:
            raise ValueError(f"eval.every={self.every} must be >= 0 (0: evaluate only at the end)")
