"""RECT (Gu et al., 2024): MEMIT whose per-batch update keeps only the entries with the largest
relative change |ΔW / W| (spec §2.4).

Algorithm, per batch: MEMIT's ΔW (``spread_residual`` with ``MemitSolve``); then ``RectMask`` zeroes
all but the top 40 % of entries by ρ = |ΔW / (W + eps)|; then SPHERE, if on, projects the sparse
update (which makes it dense again, as in the reference); then the update is added.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from editors.core.context import EditContext
from editors.core.footprint import TRANSFORM, Footprint, PlanItem, ShapeInfo
from editors.core.hparams import knob
from editors.core.solvers import full_precision
from editors.core.spread import SPREAD_PLACEMENT, SpreadEditor, spread_footprint
from editors.core.weights import TransformPoint
from editors.memit import MEMITHParams, memit_solve
from editors.registry import register_editor


def check_keep_fraction(keep_fraction: float) -> None:
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction={keep_fraction!r} must be in (0, 1] (paper: 0.4)")


class RectMask:
    """Top-``keep_fraction`` entries of ΔW by relative change ρ = |ΔW / (W + eps)|.

    eps is added to W, not to |W|, as in the reference (``memit_rect_main``). τ is the k-th smallest
    ρ (``torch.kthvalue``, 1-based) with k = floor((1 − keep)·numel) and the mask is ρ ≥ τ, so
    numel − k + 1 entries are kept (τ itself too) plus ties, exactly as the reference. Kept entries
    are not rescaled. ``reference`` is the live weight before this batch's update.
    """

    def __init__(self, keep_fraction: float = 0.4, eps: float = 1e-8, point: TransformPoint = "step") -> None:
        check_keep_fraction(keep_fraction)
        self.keep_fraction, self.eps, self.point = float(keep_fraction), eps, point

    def __repr__(self) -> str:
        return f"RectMask(keep_fraction={self.keep_fraction}, point={self.point!r})"

    @staticmethod
    def footprint(shape: ShapeInfo) -> Footprint:
        """|ΔW/W|, its sorted copy for kthvalue, the product: ≈ 4 m×c float32, one matrix at a time."""
        mc = shape.d_model * shape.d_ff
        how = f"4 × {shape.matrix} × 4 B"
        return Footprint([PlanItem("RECT mask workspace", "device", 4 * mc * 4, how, (TRANSFORM,))])

    def __call__(self, name: str, layer: int, reference: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if reference.shape != delta.shape:
            raise ValueError(
                f"{name}: reference {tuple(reference.shape)} and update {tuple(delta.shape)} differ"
            )
        k = int((1.0 - self.keep_fraction) * delta.numel())  # floor, as the reference's int(0.6 * numel)
        if k == 0:
            return delta
        with torch.no_grad(), full_precision():
            work = torch.promote_types(delta.dtype, torch.float32)
            rho = (delta.to(work) / (reference.to(device=delta.device, dtype=work) + self.eps)).abs()
            tau = torch.kthvalue(rho.flatten(), k).values
            return delta * (rho >= tau)


@dataclass
class RECTHParams(MEMITHParams):
    """MEMIT's knobs plus the share of entries RECT keeps."""

    keep_fraction: float = knob(0.4, "share of ΔW's entries kept, by relative change (paper: top 40 %)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_keep_fraction(self.keep_fraction)


def rect_mask(hp: RECTHParams) -> RectMask:
    return RectMask(hp.keep_fraction, point="step")


def rect_footprint(shape: ShapeInfo, hp: RECTHParams) -> Footprint:
    return spread_footprint(shape, hp, memit_solve(hp), [rect_mask(hp)])


@register_editor(
    "rect", hparams=RECTHParams, placement=SPREAD_PLACEMENT, display_name="RECT", footprint=rect_footprint
)
def rect(hp: RECTHParams, ctx: EditContext) -> SpreadEditor:
    """MEMIT with each update sparsified by relative change before SPHERE (Gu et al., 2024)."""
    return SpreadEditor(hp, ctx, memit_solve(hp), own_transforms=[rect_mask(hp)])
