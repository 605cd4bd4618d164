"""What an editor is given, and the one way a batch's updates reach the weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from editors.core.model_spec import ModelSpec
from editors.core.weights import LayerUpdate, UpdateTransform, add_to_weight, apply_transforms, read_weight

StatsProvider = Callable[[Sequence[int]], dict[int, torch.Tensor]]
ArtifactCache = Callable[[str, Callable[[], torch.Tensor]], torch.Tensor]


def _no_cache(key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    return compute()


@dataclass
class EditContext:
    """Run-owned resources an editor uses; nothing here is global.

    Attributes:
        model, tok, spec: the model being edited, its tokenizer (right-padded) and module layout.
        stats: layers → {layer: C = E[k kᵀ]}, collected on the unedited model and cached by the run.
        transforms: user update transforms (e.g. SPHERE), each with its ``point``.
        seed: seeds context-template sampling.
        forward_batch_size: sequences per forward when reading keys and representations.
        cached: ``cached(key, compute)`` returns a tensor derived from the unedited model and its
            statistics (e.g. AlphaEdit's projector), from the run's disk cache when present. The
            run scopes keys by model and statistics, so ``key`` only names the artifact.
    """

    model: nn.Module
    tok: object
    spec: ModelSpec
    stats: StatsProvider
    transforms: list[UpdateTransform] = field(default_factory=list)
    seed: int = 0
    forward_batch_size: int = 64
    cached: ArtifactCache = _no_cache


def commit_step(
    ctx: EditContext, deltas: dict[int, torch.Tensor], transforms: Sequence[UpdateTransform]
) -> list[LayerUpdate]:
    """Apply the ``step`` transforms to each layer's ΔW (reference = live W before it) and add it."""
    updates = []
    for layer, delta in deltas.items():
        name = ctx.spec.weight_name(layer)
        delta = apply_transforms(
            transforms, "step", name, layer, read_weight(ctx.model, ctx.spec, layer), delta
        )
        add_to_weight(ctx.model, ctx.spec, layer, delta)
        updates.append(LayerUpdate(layer=layer, name=name, delta=delta))
    return updates
