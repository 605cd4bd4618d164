"""PRUNE's restraint and RECT's mask as update transforms (same call shape as ``SphereProjection``).

Each transform is a plain object with a ``point`` ("layer" | "step" | "readout") saying where the
editor or runner applies it, and ``__call__(name, layer, reference, delta) -> delta'``. An ordered
list composes: ``[RectMask(), SphereProjection(...)]`` is "RECT then SPHERE" (spec §3.2).
``apply_transforms`` lives in ``editors.core.weights`` (editors call it and must not import
``sphere``); it is re-exported here so users of the transforms find it next to them.
"""

from __future__ import annotations

import math

import torch

from editors.core.weights import TransformPoint, UpdateTransform, apply_transforms
from sphere.projection import full_precision

_POINTS = ("layer", "step", "readout")


def _check_point(point: str, owner: str) -> None:
    if point not in _POINTS:
        raise ValueError(f"{owner}.point must be one of {', '.join(_POINTS)}, got {point!r}")


class RectMask:
    """RECT (spec §2.4): keep only the entries of ΔW with the largest relative change, zero the rest.

    ρ = |ΔW / (W_ref + eps)| elementwise — eps is added to W, not to |W|, as in the reference
    (AlphaEdit/SPHERE ``memit_rect_main``), so a weight equal to −eps gives ρ = inf (kept). τ is the
    k-th smallest ρ (1-based, ``torch.kthvalue``) with k = floor((1 − keep_fraction) · numel) and
    the mask is ρ ≥ τ: numel − k + 1 entries (one more than an exact top ``keep_fraction``, τ itself
    is kept) plus any ties at τ, exactly as the reference. Kept entries are not rescaled.
    ``reference`` is the live weight before this batch's update.
    """

    def __init__(self, keep_fraction: float = 0.4, eps: float = 1e-8, point: TransformPoint = "step") -> None:
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"rect keep_fraction must be in (0, 1] (paper: 0.4), got {keep_fraction!r}")
        _check_point(point, "rect")
        self.keep_fraction = float(keep_fraction)
        self.eps = eps
        self.point: TransformPoint = point

    def __repr__(self) -> str:
        return f"RectMask(keep_fraction={self.keep_fraction}, eps={self.eps}, point={self.point!r})"

    def __call__(self, name: str, layer: int, reference: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if reference.shape != delta.shape:
            raise ValueError(
                f"{name}: reference {tuple(reference.shape)} and update {tuple(delta.shape)} differ"
            )
        k = int((1.0 - self.keep_fraction) * delta.numel())  # floor, as the reference's int(0.6 * numel)
        if k == 0:
            return delta
        with torch.no_grad():
            work = torch.promote_types(delta.dtype, torch.float32)
            rho = (delta.to(work) / (reference.to(device=delta.device, dtype=work) + self.eps)).abs()
            tau = torch.kthvalue(rho.flatten(), k).values
            return delta * (rho >= tau)


class PruneRestraint:
    """PRUNE (spec §2.3): log-shrink the singular values of the accumulated edit that exceed σ_max(W₀).

    Given Δ = W − W₀ and reference W₀: s₀ = σ_max(W₀), Δ = U diag(σ) Vᵀ, σ'_j = ln σ_j − ln s₀ + s₀
    where σ_j > s₀ (strict), else σ_j; returns U diag(σ') Vᵀ. As in the SPHERE reference this is a
    "readout" transform: applied to the weights that are evaluated and saved, never fed back.

    s₀ is computed once per parameter name (W₀ is fixed; the reference recomputes a full SVD of W₀
    every batch). When no σ_j exceeds s₀ the update is returned as is, where the reference returns
    its own SVD reconstruction — equal up to rounding.
    """

    def __init__(self, point: TransformPoint = "readout") -> None:
        _check_point(point, "prune")
        self.point: TransformPoint = point
        self._s0: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"PruneRestraint(point={self.point!r})"

    def max_singular_value(self, name: str, reference: torch.Tensor) -> float:
        """σ_max(W₀) for ``name``, cached: the caller must pass the same W₀ for a name every time."""
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
        work = torch.promote_types(delta.dtype, torch.float32)
        with full_precision(), torch.no_grad():
            u, sigma, vh = torch.linalg.svd(delta.to(work), full_matrices=False)
            big = sigma > s0
            if not bool(big.any()):
                return delta
            sigma = torch.where(big, torch.log(sigma) - math.log(s0) + s0, sigma)
            return ((u * sigma) @ vh).to(delta.dtype)


__all__ = ["PruneRestraint", "RectMask", "TransformPoint", "UpdateTransform", "apply_transforms"]
