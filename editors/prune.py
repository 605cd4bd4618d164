"""PRUNE (Ma et al., 2025): restrain the large singular values of the accumulated edit (spec §2.3).

The accumulated edit Δ = W − W₀ is decomposed, Δ = U diag(σ) Vᵀ, and every σ_j above σ_max(W₀) is
shrunk to ln σ_j − ln σ_max(W₀) + σ_max(W₀). Editing itself is MEMIT's. Two semantics:

* ``feedback: false`` (the reference, default): the restraint (then SPHERE with W₀ as reference) is
  applied to the weights that are evaluated and saved — a ``readout`` transform — and never fed
  back into later edits.
* ``feedback: true``: after every batch the live weights become W₀ + T(W − W₀)
  (``commit_accumulated``), so later edits are computed on the restrained model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from editors.core.context import EditContext, commit_accumulated, commit_step
from editors.core.footprint import TRANSFORM, Footprint, PlanItem, ShapeInfo
from editors.core.hparams import knob
from editors.core.protocol import Placement
from editors.core.solvers import full_precision
from editors.core.spread import SPREAD_POINTS, SpreadEditor, spread_footprint
from editors.core.weights import TransformPoint
from editors.memit import MEMITHParams, memit_solve
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

    @staticmethod
    def footprint(shape: ShapeInfo) -> Footprint:
        """An SVD of Δ: its copy, U, Vᵀ, the product ≈ 4 m×c + min(m, c)² float32, one matrix at a time."""
        mc, k = shape.d_model * shape.d_ff, min(shape.d_model, shape.d_ff)
        return Footprint(
            [
                PlanItem(
                    "PRUNE restraint (SVD of ΔW)",
                    "device",
                    (4 * mc + k * k) * 4,
                    f"(4 × {shape.matrix} + {k}²) × 4 B",
                    (TRANSFORM,),
                )
            ]
        )

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
    """MEMIT's knobs plus where the restraint acts (see the module docstring)."""

    feedback: bool = knob(False, "write the restrained weights back after every batch (reference: false)")


def restraint_point(hp: PRUNEHParams) -> TransformPoint:
    """Where the restraint acts: on the evaluated weights only, or fed back after every batch."""
    return "step" if hp.feedback else "readout"


def prune_placement(hp: PRUNEHParams) -> Placement:
    """SPHERE goes where the restraint goes, with U from W₀ (the reference's PRUNE + SPHERE)."""
    return Placement(points=SPREAD_POINTS, default_point=restraint_point(hp), default_reference="pretrained")


def prune_footprint(shape: ShapeInfo, hp: PRUNEHParams) -> Footprint:
    return spread_footprint(shape, hp, memit_solve(hp), [PruneRestraint(point=restraint_point(hp))])


@register_editor(
    "prune", hparams=PRUNEHParams, placement=prune_placement, display_name="PRUNE", footprint=prune_footprint
)
def prune(hp: PRUNEHParams, ctx: EditContext) -> SpreadEditor:
    """MEMIT with the singular values of the accumulated edit log-restrained (Ma et al., 2025)."""
    return SpreadEditor(
        hp,
        ctx,
        memit_solve(hp),
        own_transforms=[PruneRestraint(point=restraint_point(hp))],
        commit=commit_accumulated if hp.feedback else commit_step,
    )
