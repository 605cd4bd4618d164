"""PRUNE (Ma et al., 2025): restrain the large singular values of the accumulated edit (spec §2.3).

The accumulated edit Δ = W − W₀ is decomposed, Δ = U diag(σ) Vᵀ, and every σ_j above σ_max(W₀) is
shrunk to ln σ_j − ln σ_max(W₀) + σ_max(W₀). Two semantics:

* ``feedback: false`` (the reference, default): editing runs plain MEMIT; the restraint (then
  SPHERE with W₀ as reference) is applied to the weights that are evaluated and saved — a
  ``readout`` transform — and never fed back into later edits.
* ``feedback: true``: after every batch the live weights become W₀ + T(W − W₀), so later edits are
  computed on the restrained model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from editors.core.solvers import full_precision
from editors.core.weights import (
    LayerUpdate,
    TransformPoint,
    UpdateTransform,
    apply_transforms,
    read_weight,
    write_weight,
)
from editors.memit import MEMIT, MEMITHParams
from editors.registry import register_editor


class PruneRestraint:
    """σ_j ← ln σ_j − ln s₀ + s₀ for the singular values of Δ above s₀ = σ_max(W₀) (strict >).

    ``reference`` must be W₀; s₀ is computed once per parameter name (the reference recomputes a
    full SVD of W₀ every batch). When no σ_j exceeds s₀, Δ is returned as is (the reference returns
    its SVD reconstruction, equal up to rounding).
    """

    def __init__(self, point: TransformPoint = "readout") -> None:
        self.point = point
        self._s0: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"PruneRestraint(point={self.point!r})"

    def max_singular_value(self, name: str, reference: torch.Tensor) -> float:
        if name not in self._s0:
            with full_precision(), torch.no_grad():
                work = torch.promote_types(reference.dtype, torch.float32)
                s0 = float(torch.linalg.matrix_norm(reference.to(work), ord=2))
            if not s0 > 0:
                raise ValueError(f"{name}: PRUNE needs a non-zero W₀ (σ_max(W₀) = {s0})")
            self._s0[name] = s0
        return self._s0[name]

    def __call__(self, name: str, layer: int, reference: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if reference.shape != delta.shape:
            raise ValueError(
                f"{name}: reference {tuple(reference.shape)} and update {tuple(delta.shape)} differ"
            )
        s0 = self.max_singular_value(name, reference)
        with full_precision(), torch.no_grad():
            work = torch.promote_types(delta.dtype, torch.float32)  # float64 stays float64
            u, sigma, vh = torch.linalg.svd(delta.to(work), full_matrices=False)
            big = sigma > s0
            if not bool(big.any()):
                return delta
            sigma = torch.where(big, torch.log(sigma) - math.log(s0) + s0, sigma)
            return ((u * sigma) @ vh).to(delta.dtype)


@dataclass
class PRUNEHParams(MEMITHParams):
    """MEMIT's knobs plus where the restraint acts (see module docstring)."""

    feedback: bool = False


@register_editor("prune")
class PRUNE(MEMIT):
    """MEMIT with PRUNE's restraint on the accumulated edit; SPHERE projects it with U from W₀."""

    HParams = PRUNEHParams

    @classmethod
    def sphere_defaults(cls, hp) -> tuple[str, str]:
        return ("step" if hp.feedback else "readout"), "pretrained"

    def own_transforms(self) -> list[UpdateTransform]:
        return [PruneRestraint(point="step" if self.hp.feedback else "readout")]

    def setup(self) -> None:
        super().setup()
        if not hasattr(self, "w0"):
            self.w0 = {
                layer: read_weight(self.ctx.model, self.ctx.spec, layer).cpu() for layer in self.layers
            }

    def commit(self, deltas: dict[int, torch.Tensor]) -> list[LayerUpdate]:
        if not self.hp.feedback:
            return super().commit(deltas)
        # Feedback: W ← W₀ + T(W + ΔW − W₀), with every step transform acting on the accumulated edit.
        model, spec = self.ctx.model, self.ctx.spec
        updates = []
        for layer, delta in deltas.items():
            live = read_weight(model, spec, layer)
            w0 = self.w0[layer].to(live.device)
            name = spec.weight_name(layer)
            acc = apply_transforms(self.transforms, "step", name, layer, w0, live + delta - w0)
            write_weight(model, spec, layer, w0 + acc)
            updates.append(LayerUpdate(layer=layer, name=name, delta=w0 + acc - live))
        return updates

    def state_dict(self) -> dict:
        return {**super().state_dict(), **{f"w0.{k}": v for k, v in getattr(self, "w0", {}).items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        w0 = {int(k[3:]): v for k, v in state.items() if k.startswith("w0.")}
        if w0:
            self.w0 = w0
