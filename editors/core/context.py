"""What an editor is given, and the two ways a batch's updates reach the weights."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from editors.core.faults import kill_point
from editors.core.model_spec import ModelSpec
from editors.core.templates import ContextTemplates, generate_context_templates
from editors.core.tokens import Tokenizer
from editors.core.weights import (
    EditedWeights,
    LayerUpdate,
    UpdateTransform,
    accumulated_view,
    apply_transforms,
    check_editable,
    check_finite,
)

CovarianceProvider = Callable[[Sequence[int]], dict[int, torch.Tensor]]
ArtifactCache = Callable[[str, Callable[[], torch.Tensor]], torch.Tensor]


def _no_cache(key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    return compute()


@dataclass
class EditContext:
    """Run-owned resources an editor uses; nothing here is global.

    Attributes:
        model, tok, spec: the model being edited, its tokenizer (right-padded) and module layout.
        covariance: layers → {layer: C = E[k kᵀ]}, the key covariance, collected on the unedited
            model and cached by the run (``stats`` before: still readable, with a warning).
        transforms: update transforms from outside the editor (e.g. SPHERE), each with its ``point``.
        seed: seeds context-template sampling.
        forward_batch_size: sequences per forward when reading keys and representations.
        cached: ``cached(key, compute)`` returns a tensor derived from the unedited model and its
            statistics (e.g. AlphaEdit's projector), from the run's disk cache when present. The
            run scopes keys by model and statistics, so ``key`` only names the artifact.
        w0: W₀ of the edited layers (CPU, float32), taken by ``remember_pretrained`` before the
            first edit; PRUNE's restraint and the readout view measure edits against it.
    """

    model: nn.Module
    tok: Tokenizer
    spec: ModelSpec
    covariance: CovarianceProvider
    transforms: list[UpdateTransform] = field(default_factory=list)
    seed: int = 0
    forward_batch_size: int = 64
    cached: ArtifactCache = _no_cache
    w0: dict[int, torch.Tensor] = field(default_factory=dict)
    weights: EditedWeights = field(init=False)

    def __post_init__(self) -> None:
        self.weights = EditedWeights(self.model, self.spec)

    @property
    def stats(self) -> CovarianceProvider:
        """The old name of ``covariance`` (a plug-in editor written before the rename); goes in the
        next release."""
        warnings.warn("EditContext.stats is renamed EditContext.covariance", FutureWarning, stacklevel=2)
        return self.covariance

    def context_templates(self, length_params: Sequence[Sequence[int]], *, flat: bool) -> ContextTemplates:
        """Seeded context templates sampled from this (unedited) model; see ``templates.py``."""
        return generate_context_templates(self.model, self.tok, length_params, seed=self.seed, flat=flat)

    def remember_pretrained(self, layers: Sequence[int]) -> None:
        """Snapshot W₀ of ``layers`` (once per layer; later calls keep the first snapshot).

        The first read of the edited layers, so it refuses layers offloaded by a device map.
        """
        check_editable(self.model, self.spec, layers)
        for layer in layers:
            if layer not in self.w0:
                self.w0[layer] = self.weights.read(layer).cpu()

    def pretrained(self, layer: int) -> torch.Tensor:
        """W₀ of ``layer`` (CPU, float32; callers move it to where they compute)."""
        if layer not in self.w0:
            raise KeyError(f"W₀ of layer {layer} was not snapshotted before editing (remember_pretrained)")
        return self.w0[layer]


def commit_step(
    ctx: EditContext, deltas: dict[int, torch.Tensor], transforms: Sequence[UpdateTransform]
) -> list[LayerUpdate]:
    """Apply the ``step`` transforms to each layer's ΔW (reference = live W before it) and add it.

    Every layer's final ΔW is checked before any is added, so a non-finite update leaves the
    model exactly as it was.
    """
    updates = []
    for layer, delta in deltas.items():
        name = ctx.spec.weight_name(layer)
        delta = apply_transforms(transforms, "step", name, layer, ctx.weights.read(layer), delta)
        check_finite(delta, name)
        updates.append(LayerUpdate(layer=layer, name=name, delta=delta))
    for u in updates:
        ctx.weights.add(u.layer, u.delta)
        kill_point("batch.commit")  # tests: killed with part of a batch in the weights
    return updates


def commit_accumulated(
    ctx: EditContext, deltas: dict[int, torch.Tensor], transforms: Sequence[UpdateTransform]
) -> list[LayerUpdate]:
    """W ← W₀ + T(W + ΔW − W₀): the ``step`` transforms act on the whole accumulated edit.

    PRUNE with feedback: later edits are computed on the restrained model.
    """
    updates, new_weights = [], {}
    for layer, delta in deltas.items():
        live = ctx.weights.read(layer)
        name = ctx.spec.weight_name(layer)
        new = accumulated_view(
            transforms, "step", name, layer, ctx.pretrained(layer).to(live.device), live + delta
        )
        check_finite(new, name)
        new_weights[layer] = new
        updates.append(LayerUpdate(layer=layer, name=name, delta=new - live))
    for layer, new in new_weights.items():
        ctx.weights.write(layer, new)
    return updates
