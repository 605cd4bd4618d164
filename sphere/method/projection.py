"""SPHERE: principal hyperspherical directions of a weight matrix and the soft projection of updates.

Spec: docs/reference-spec.md §3.1. For W (m × c, nn.Linear layout, rows = neurons) with unit rows
x̂_i = x_i / (‖x_i‖ + 1e-8), C = X̂ᵀX̂ / m; U holds the eigenvectors of C's top-r eigenvalues and an
update is projected as ΔW' = ΔW (I − α U Uᵀ) = ΔW − α (ΔW U) Uᵀ. The c × c projector is never built.

Why a Gram path: for LLaMA3-8B's down_proj (m = 4096 < c = 14336) the reference runs an eigh of a
14336² matrix per layer per batch. The non-zero spectrum of C equals that of G = X̂X̂ᵀ / m (m × m),
and G v = λ v gives C's eigenvector u = X̂ᵀ v / √(mλ), so the same U comes from a 4096² eigh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from editors.core.solvers import full_precision
from sphere.errors import check_choice

Method = Literal["auto", "gram", "naive"]
Reference = Literal["current", "pretrained"]
Point = Literal["layer", "step", "readout"]
METHODS = ("auto", "gram", "naive")
REFERENCES = ("current", "pretrained")
POINTS = ("layer", "step", "readout")

# Below this many weight entries the eigendecomposition runs in float64: it costs milliseconds there
# (tiny CPU models, tests) and makes the gram and naive paths agree to ~1e-12. Above it (LLaMA/Qwen
# shapes, 4-6e7 entries) float32 is what the reference uses and float64 eigh would dominate the edit.
FLOAT64_MAX_NUMEL = 1 << 22
# Normalisation constant of the reference (added to the row norm, not clamped).
ROW_EPS = 1e-8


@dataclass(frozen=True)
class PrincipalDirections:
    """The top-r eigenvectors of C = X̂ᵀX̂/m and what they hold.

    Attributes:
        U: c × r, orthonormal columns, float32, on the weight's device.
        r: number of directions kept.
        eigenvalues: the r largest eigenvalues of C, descending (compute dtype, for logging).
        energy: fraction of trace(C) the r directions hold (> β when r was chosen by β).
    """

    U: torch.Tensor
    r: int
    eigenvalues: torch.Tensor
    energy: float


def check_alpha(alpha: float) -> None:
    """α ∈ [0, 1]: the one check of sphere.alpha (config, transform and function alike)."""
    if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0.0 <= alpha <= 1.0):
        raise ValueError(
            f"sphere.alpha={alpha!r} is outside [0, 1]; use 0 (no projection) up to 1 "
            "(remove the principal directions entirely)"
        )


def check_beta_or_rank(beta: float | None, rank: int | None) -> None:
    """Exactly one of β ∈ (0, 1) (r by cumulative energy) and a rank r ≥ 1."""
    if (beta is None) == (rank is None):
        raise ValueError(f"give exactly one of sphere.beta and sphere.rank, got beta={beta!r}, rank={rank!r}")
    if beta is not None and not (isinstance(beta, int | float) and 0.0 < beta < 1.0):
        raise ValueError(f"sphere.beta={beta!r} must be in (0, 1) (cumulative energy), or set sphere.rank")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise ValueError(
            f"sphere.rank={rank!r} must be a positive integer (or null to choose r by sphere.beta)"
        )


def rank_for_energy(eigenvalues_desc: torch.Tensor, beta: float, cap: int) -> int:
    """r = 1 + #{k : cumsum(λ)_k / Σλ ≤ β}, capped at ``cap`` (the reference's "+1" rule, §3.1 step 4).

    The "+1" makes the kept energy just exceed β. Appending zero eigenvalues (c×c vs m×m spectrum)
    leaves the count unchanged because their cumulative ratio is 1 > β.
    """
    ratios = torch.cumsum(eigenvalues_desc, 0) / eigenvalues_desc.sum()
    return min(1 + int((ratios <= beta).sum().item()), cap)


def _normalised_rows(W: torch.Tensor, eps: float, dtype: torch.dtype) -> torch.Tensor:
    X = W.detach().to(dtype)
    return X / (torch.linalg.vector_norm(X, dim=1, keepdim=True) + eps)


def principal_directions(
    W: torch.Tensor,
    *,
    beta: float | None = None,
    rank: int | None = None,
    method: Method = "auto",
    eps: float = ROW_EPS,
    compute_dtype: torch.dtype | None = None,
) -> PrincipalDirections:
    """Principal hyperspherical directions of W's rows, r chosen by cumulative energy β or given.

    Args:
        W: m × c weight (rows = neurons), any float dtype, any device.
        beta: cumulative-energy ratio in (0, 1); r by the "+1" rule.
        rank: r directly, 1 ≤ rank ≤ min(m, c).
        method: "naive" = eigh of C (c × c, the reference path); "gram" = eigh of G = X̂X̂ᵀ/m (m × m);
            "auto" = gram when m < c. The gram path can only produce eigenvectors of positive
            eigenvalues; if r exceeds their count it falls back to naive (same result as asking for it).
        eps: added to the row norms before dividing (reference: 1e-8).
        compute_dtype: dtype of the eigendecomposition; default float64 when m·c ≤ FLOAT64_MAX_NUMEL
            else float32.

    Raises:
        ValueError: bad beta/rank (message names sphere.beta / sphere.rank), non-finite W, non-2-D W.
    """
    check_beta_or_rank(beta, rank)
    if W.ndim != 2:
        raise ValueError(f"principal_directions expects a 2-D weight, got shape {tuple(W.shape)}")
    m, c = W.shape
    if rank is not None and rank > min(m, c):
        raise ValueError(f"sphere.rank must be in [1, {min(m, c)}] for a {m}×{c} weight, got {rank}")
    check_choice("sphere.method", method, METHODS)
    if not torch.isfinite(W).all():
        raise ValueError(
            f"weight of shape {tuple(W.shape)} has non-finite entries; cannot compute SPHERE directions"
        )
    if compute_dtype is None:
        compute_dtype = torch.float64 if m * c <= FLOAT64_MAX_NUMEL else torch.float32
    if method == "auto":
        method = "gram" if m < c else "naive"

    with full_precision(), torch.no_grad():
        X = _normalised_rows(W, eps, compute_dtype)
        if method == "gram":
            found = _gram_directions(X, beta, rank)
            if found is not None:
                return found
        return _naive_directions(X, beta, rank)


def _select_r(lam_desc: torch.Tensor, beta: float | None, rank: int | None, cap: int) -> int:
    return rank if rank is not None else rank_for_energy(lam_desc, beta, cap)  # type: ignore[arg-type]


def _naive_directions(X: torch.Tensor, beta: float | None, rank: int | None) -> PrincipalDirections:
    m, c = X.shape
    lam, vecs = torch.linalg.eigh(X.T @ X / m)  # ascending
    lam, vecs = lam.flip(0), vecs.flip(1)
    r = _select_r(lam, beta, rank, cap=c)
    return PrincipalDirections(
        U=vecs[:, :r].float().contiguous(),
        r=r,
        eigenvalues=lam[:r].clone(),
        energy=float(lam[:r].sum() / lam.sum()),
    )


def _gram_directions(X: torch.Tensor, beta: float | None, rank: int | None) -> PrincipalDirections | None:
    """The gram path, or None when r exceeds the numerically positive eigenvalues (caller falls back)."""
    m, c = X.shape
    lam, V = torch.linalg.eigh(X @ X.T / m)
    lam, V = lam.flip(0), V.flip(1)
    # C's spectrum is G's plus c − m zeros: the same r, and the same trace in exact arithmetic.
    r = _select_r(lam, beta, rank, cap=min(m, c))
    # u = X̂ᵀv/√(mλ) amplifies v's error by 1/√λ; below this the eigenvalue is numerically zero.
    tol = float(lam[0]) * max(m, c) * torch.finfo(lam.dtype).eps
    if r > int((lam > tol).sum()):
        return None
    U = X.T @ V[:, :r]
    U.div_(torch.sqrt(m * lam[:r]))  # in place: U is c × r, up to the size of W
    return PrincipalDirections(
        U=U.float().contiguous(), r=r, eigenvalues=lam[:r].clone(), energy=float(lam[:r].sum() / lam.sum())
    )


def project_update(delta: torch.Tensor, U: torch.Tensor, alpha: float) -> torch.Tensor:
    """ΔW' = ΔW − α (ΔW U) Uᵀ = ΔW (I − α U Uᵀ), without forming the c × c projector.

    Computed in float32 (float64 if ΔW is float64) and returned in ΔW's dtype.
    """
    check_alpha(alpha)
    if delta.ndim != 2 or U.ndim != 2 or delta.shape[1] != U.shape[0]:
        raise ValueError(
            f"update of shape {tuple(delta.shape)} does not match directions of shape {tuple(U.shape)}"
        )
    if alpha == 0:
        return delta
    work = torch.promote_types(delta.dtype, torch.float32)
    with full_precision(), torch.no_grad():
        d = delta.to(work)
        Uw = U.to(device=d.device, dtype=work)
        # d − (α dU)Uᵀ, the difference written over the product: one m × c temporary instead of
        # two (235 MB each at LLaMA3-8B's down_proj), the same operations.
        p = (alpha * (d @ Uw)) @ Uw.T
        return torch.sub(d, p, out=p).to(delta.dtype)


def span_share(delta: torch.Tensor, U: torch.Tensor) -> float:
    """‖ΔW U‖²_F / ‖ΔW‖²_F: the share of an update's energy in span U, the part SPHERE shrinks.

    An update indifferent to the principal directions has about r/c of its energy there (a random
    direction's share); SPHERE at α leaves (1 − α)² of this share, so the share says how much a
    projection can change an editor's update at all. 0 for a zero update.
    """
    with full_precision(), torch.no_grad():
        d = delta.detach().double()
        total = float(d.pow(2).sum())
        return float((d @ U.to(device=d.device, dtype=torch.float64)).pow(2).sum()) / total if total else 0.0


class SphereProjection:
    """SPHERE as an update transform: ``transform(name, layer, reference, delta) -> delta'``.

    ``reference="current"`` recomputes U from the weights the caller passes (live W before this
    update: ROME/MEMIT/RECT/AlphaEdit in the reference). ``reference="pretrained"`` keeps the first
    weights seen per parameter name (W₀) and computes U once: W₀ never changes, so recomputing it every
    batch, as the reference does for PRUNE, is wasted work.

    ``last_stats`` collects one dict per call that projected something (name, layer, r, energy,
    delta_norm, projected_norm); the runner reads it with ``pop_stats()`` for logging.
    """

    def __init__(
        self,
        alpha: float,
        *,
        beta: float | None = None,
        rank: int | None = None,
        reference: Reference = "current",
        point: Point = "step",
        layers: Sequence[int] | None = None,
        method: Method = "auto",
        eps: float = ROW_EPS,
    ) -> None:
        check_alpha(alpha)
        check_beta_or_rank(beta, rank)
        check_choice("sphere.reference", reference, REFERENCES)
        check_choice("sphere.point", point, POINTS)
        check_choice("sphere.method", method, METHODS)
        self.alpha = float(alpha)
        self.beta = beta
        self.rank = rank
        self.reference = reference
        self.point: Point = point
        self.layers = None if layers is None else frozenset(int(i) for i in layers)
        self.method: Method = method
        self.eps = eps
        self.last_stats: list[dict[str, float | int | str]] = []
        self._snapshots: dict[str, torch.Tensor] = {}
        self._directions: dict[str, PrincipalDirections] = {}

    def __repr__(self) -> str:
        sel = f"beta={self.beta}" if self.beta is not None else f"rank={self.rank}"
        return (
            f"SphereProjection(alpha={self.alpha}, {sel}, reference={self.reference!r}, "
            f"point={self.point!r}, layers={None if self.layers is None else sorted(self.layers)}, method={self.method!r})"
        )

    def directions(self, name: str, reference: torch.Tensor) -> PrincipalDirections:
        """U for ``name``: from ``reference`` (current mode) or from the cached W₀ (pretrained mode)."""
        if self.reference == "current":
            return principal_directions(
                reference, beta=self.beta, rank=self.rank, method=self.method, eps=self.eps
            )
        if name not in self._directions:
            # Keep the snapshot on the CPU: it is only needed again for state_dict / a resumed run.
            w0 = self._snapshots.setdefault(name, reference.detach().to("cpu", copy=True))
            self._directions[name] = principal_directions(
                w0.to(reference.device), beta=self.beta, rank=self.rank, method=self.method, eps=self.eps
            )
        return self._directions[name]

    def __call__(self, name: str, layer: int, reference: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if self.layers is not None and layer not in self.layers:
            return delta
        if reference.shape != delta.shape:
            raise ValueError(
                f"{name}: reference {tuple(reference.shape)} and update {tuple(delta.shape)} differ"
            )
        d = self.directions(name, reference)
        out = project_update(delta, d.U, self.alpha)
        self.last_stats.append(
            {
                "name": name,
                "layer": layer,
                "r": d.r,
                "energy": d.energy,
                "delta_norm": float(torch.linalg.vector_norm(delta.float())),
                "projected_norm": float(torch.linalg.vector_norm(out.float())),
            }
        )
        return out

    def pop_stats(self) -> list[dict[str, float | int | str]]:
        """Return and clear the stats collected since the last call (keeps memory bounded over a run)."""
        stats, self.last_stats = self.last_stats, []
        return stats

    def pop_metrics(self) -> dict[str, float]:
        """r per layer of the projections since the last call, as columns of the run's metrics rows."""
        return {f"sphere_r/layer_{st['layer']}": float(st["r"]) for st in self.pop_stats()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The W₀ snapshots by parameter name (empty in current mode); U is recomputed from them."""
        return {name: w.clone() for name, w in self._snapshots.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore W₀ snapshots; their U is recomputed (deterministically) on first use."""
        self._snapshots = {name: w.detach().to("cpu", copy=True) for name, w in state.items()}
        self._directions = {}


__all__ = [
    "FLOAT64_MAX_NUMEL",
    "check_alpha",
    "check_beta_or_rank",
    "PrincipalDirections",
    "SphereProjection",
    "full_precision",
    "principal_directions",
    "project_update",
    "rank_for_energy",
]
