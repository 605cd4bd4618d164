"""The keys of every committed edit, kept per edited layer as their Gram sum Σ k kᵀ (d_ff × d_ff).

Sequential editors that must not move earlier edits read this sum: AlphaEdit's C_past (spec §2.5)
and MEMIT's optional ``past_edit_weight`` term. The keys are read on the model *after* their batch
was written, as the reference's AlphaEdit does, so the sum is what the next solve has to preserve.
"""

from __future__ import annotations

import torch

from editors.core.footprint import Footprint, PlanItem, ShapeInfo


class PastKeys:
    """Per-layer Σ k kᵀ of committed edits; ``state_dict`` carries it across a resumed run."""

    def __init__(self) -> None:
        self.gram: dict[int, torch.Tensor] = {}

    def ensure(self, layer: int, like: torch.Tensor) -> None:
        """Start layer ``layer``'s sum at zero (shape, dtype and device of ``like``) unless it exists."""
        self.gram.setdefault(layer, torch.zeros_like(like))

    def __getitem__(self, layer: int) -> torch.Tensor:
        return self.gram[layer]

    def add(self, keys: dict[int, torch.Tensor]) -> None:
        """Add a committed batch's keys (rows, n × d_ff) to each layer's sum."""
        for layer, k in keys.items():
            g = self.gram[layer]
            self.gram[layer] = g + (k.T @ k).to(device=g.device, dtype=g.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"past.{layer}": g for layer, g in self.gram.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.gram.update({int(k[5:]): v for k, v in state.items() if k.startswith("past.")})

    @staticmethod
    def footprint(shape: ShapeInfo, label: str, setting: str) -> Footprint:
        """Σkkᵀ of every edited layer: d_ff² float32 per layer in host memory (moved to the device
        one layer at a time by the solve that reads it), and in every checkpoint (``state_dict``).
        ``label`` names the owner ("AlphaEdit: key cache ..."), ``setting`` what shrinks it."""
        n, ff = len(shape.layers), shape.d_ff
        return Footprint(
            [PlanItem(label, "host", n * ff**2 * 4, f"{n} × {ff}² × 4 B", setting=setting, checkpointed=True)]
        )
