"""The paper's Theorem 1, evaluated on real weights: does |ΔV| ≥ (ΔHE/K)² hold, and how tight is it?

The theorem (SPHERE, "Lower Bound on Output Perturbation"): with orthonormal inputs and a small
perturbation, the output change ΔV of an edited matrix is bounded below by the squared HE change,

    |ΔV| ≥ (ΔHE / K)²,   K = 4 · ( Σ_k ( Σ_{j≠k} ‖w_k − w_j‖^{-3} )² )^{1/2},

with w_k the pre-edit neurons (rows). Why it holds, in the form checked here: HE = Σ_{i≠j} ‖ŵ_i − ŵ_j‖⁻¹
(the distance to the power −1, no ε: in the runs' HE convention Σ(‖ŵ_i − ŵ_j‖² + ε)^(−s), s = ½ and
ε = 0, since the theorem's ‖·‖⁻³ is the gradient of ‖·‖⁻¹) over the unit neurons ŵ has gradient ∂HE/∂ŵ_k = −2 Σ_{j≠k} d_kj ‖d_kj‖^{-3},
d_kj = ŵ_k − ŵ_j; its norm is at most 2 Σ_j ‖d_kj‖^{-2} ≤ 4 Σ_j ‖d_kj‖^{-3} (unit vectors: ‖d‖ ≤ 2), so
‖∇HE‖_F ≤ K, and to first order |ΔHE| ≤ ‖∇HE‖_F ‖ΔŴ‖_F ≤ K ‖ΔŴ‖_F. With orthonormal inputs (a basis
of the key space) the output change is ‖ΔW K₀‖²_F = ‖ΔW‖²_F. So the theorem's ΔV is read as ‖ΔW‖²_F,
and the step it rests on is checked twice: with the raw update ΔW (what the theorem names) and with
the change of the unit neurons ΔŴ (what HE sees; equal to ΔW only when the neurons have unit norm).

Everything is exact float64 arithmetic on the saved weights, blockwise over rows (O(block · m)
memory), so it runs at LLaMA3-8B's 4096 × 14336 as well as on SmolLM2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from sphere.method.energy import gram_blocks, hyperspherical_energy, unit_rows


@dataclass(frozen=True)
class BoundCheck:
    """Theorem 1's terms for one matrix pair (W₀ → W)."""

    he0: float  # HE(W₀) = Σ_{i≠j} ‖ŵ_i − ŵ_j‖⁻¹, unnormalised (the theorem's energy and scale)
    he: float  # HE(W)
    K: float  # the theorem's constant from W₀
    grad_norm: float  # ‖∇HE(Ŵ₀)‖_F, the tightest constant of the first-order argument (≤ K)
    grad_tangent_norm: float  # ‖∇_S HE(Ŵ₀)‖_F, its part tangent to the sphere: what unit neurons feel
    dW_sq: float  # ‖W − W₀‖²_F: |ΔV| under orthonormal inputs
    dW_unit_sq: float  # ‖Ŵ − Ŵ₀‖²_F: the change of the unit neurons

    @property
    def d_he(self) -> float:
        return self.he - self.he0

    @property
    def bound(self) -> float:
        """(ΔHE / K)², the theorem's lower bound on |ΔV|."""
        return (self.d_he / self.K) ** 2

    @property
    def holds(self) -> bool:
        """|ΔV| = ‖ΔW‖²_F ≥ (ΔHE/K)²: the theorem as stated."""
        return self.dW_sq >= self.bound

    @property
    def holds_unit(self) -> bool:
        """‖ΔŴ‖²_F ≥ (ΔHE/K)²: the first-order step on the hypersphere itself."""
        return self.dW_unit_sq >= self.bound

    @property
    def slack(self) -> float:
        """|ΔV| / bound: how many times larger the output change is than the bound (∞ if ΔHE = 0)."""
        return self.dW_sq / self.bound if self.bound > 0 else float("inf")

    @property
    def tangent_bound(self) -> float:
        """(ΔHE / ‖∇_S HE‖)²: the same first-order argument with the gradient on the sphere. A unit
        neuron can only move tangentially to first order, so the radial part of ∇HE (most of it for
        spread neurons: row k is ≈ −2 s_k ŵ_k) does not act, and this bound on ‖ΔŴ‖² is sharper."""
        return (self.d_he / self.grad_tangent_norm) ** 2 if self.grad_tangent_norm > 0 else float("inf")

    @property
    def alignment(self) -> float:
        """|ΔHE| / (‖∇HE‖_F ‖ΔŴ‖_F): to first order the |cosine| between the unit neurons' change and
        HE's gradient. It splits the slack exactly as slack = (‖ΔW‖²/‖ΔŴ‖²)·(K/‖∇HE‖)²/alignment²:
        row norms, the theorem's constant, and how far the update is from the direction HE is most
        sensitive to (a random direction of an m × c matrix has about 1/√(mc))."""
        denom = self.grad_norm * self.dW_unit_sq**0.5
        return abs(self.d_he) / denom if denom > 0 else 0.0

    def as_dict(self) -> dict[str, float | bool]:
        out: dict[str, float | bool] = asdict(self)
        out.update(
            d_he=self.d_he,
            bound=self.bound,
            holds=self.holds,
            holds_unit=self.holds_unit,
            slack=self.slack,
            alignment=self.alignment,
            tangent_bound=self.tangent_bound,
        )
        return out


def he_constant(W0: torch.Tensor, block_size: int = 1024) -> tuple[float, float, float]:
    """(K, ‖∇HE(Ŵ₀)‖_F, ‖∇_S HE(Ŵ₀)‖_F) of the unit rows of W₀, exact, one Gram block at a time.

    Row k of the gradient is −2(s_k ŵ_k − Σ_j M_kj ŵ_j), M_kj = ‖ŵ_k − ŵ_j‖^{-3} (0 on the diagonal),
    s_k = Σ_j M_kj; K = 4‖s‖₂. The sphere's gradient removes each row's radial part, g_k − (g_k·ŵ_k)ŵ_k.
    Coinciding neurons (distance 0) make both infinite, as in the theorem.
    """
    X = unit_rows(W0)
    s = torch.empty(X.shape[0], dtype=torch.float64, device=X.device)
    grad_sq = torch.zeros((), dtype=torch.float64, device=X.device)
    tangent_sq = torch.zeros((), dtype=torch.float64, device=X.device)
    for rows, G, self_pairs in gram_blocks(X, block_size):
        M = G.mul_(-2.0).add_(2.0).clamp_min_(0.0).pow_(-1.5)  # ‖ŵ_k − ŵ_j‖² = 2 − 2 cos θ_kj
        M[self_pairs] = 0.0
        s[rows] = M.sum(dim=1)
        g = -2.0 * (s[rows, None] * X[rows] - M @ X)
        grad_sq += (g * g).sum()
        t = g - (g * X[rows]).sum(dim=1, keepdim=True) * X[rows]
        tangent_sq += (t * t).sum()
    return 4.0 * float(s.norm()), float(grad_sq.sqrt()), float(tangent_sq.sqrt())


def theorem_energy(W: torch.Tensor, block_size: int = 1024) -> float:
    """Σ_{i≠j} ‖ŵ_i − ŵ_j‖⁻¹, the theorem's energy: power ½ on the squared distances HE is written
    in, no ε, unnormalised."""
    return hyperspherical_energy(W, power=0.5, eps=0.0, block_size=block_size, normalized=False)


@dataclass(frozen=True)
class BoundReference:
    """The W₀ terms of Theorem 1 (its energy and constants): O(m²c) each, so computed once per
    matrix and shared by every later point of a run (``check_bound(..., reference=...)``)."""

    he0: float
    K: float
    grad_norm: float
    grad_tangent_norm: float


def bound_reference(W0: torch.Tensor, block_size: int = 1024) -> BoundReference:
    """Theorem 1's W₀ terms of one matrix (rows = neurons)."""
    return BoundReference(theorem_energy(W0, block_size), *he_constant(W0, block_size))


def check_bound(
    W0: torch.Tensor,
    W: torch.Tensor,
    block_size: int = 1024,
    reference: BoundReference | None = None,
) -> BoundCheck:
    """Theorem 1's terms for the update W₀ → W of one matrix (rows = neurons, any float dtype).

    ``reference``: ``bound_reference(W0)`` when several W are checked against one W₀.
    """
    if W0.shape != W.shape or W0.ndim != 2:
        raise ValueError(
            f"check_bound needs two 2-D weights of one shape, got {tuple(W0.shape)} and {tuple(W.shape)}"
        )
    ref = reference if reference is not None else bound_reference(W0, block_size)
    dW = W.detach().double() - W0.detach().double()
    dU = unit_rows(W) - unit_rows(W0)
    return BoundCheck(
        he0=ref.he0,
        he=theorem_energy(W, block_size),
        K=ref.K,
        grad_norm=ref.grad_norm,
        grad_tangent_norm=ref.grad_tangent_norm,
        dW_sq=float((dW * dW).sum()),
        dW_unit_sq=float((dU * dU).sum()),
    )
