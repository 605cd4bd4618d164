"""Hyperspherical energy (HE) of a weight matrix's neurons (its rows).

HE(W) = Σ_{i≠j} (‖x̂_i − x̂_j‖² + ε)^(−s), x̂_i = x_i/‖x_i‖, with ‖x̂_i − x̂_j‖² = 2 − 2 cos θ_ij.
The paper calls the power α; here it is ``power`` so it never collides with the projection's α.

Why blocks of the Gram matrix: LLaMA3-8B's down_proj has m = 4096 rows of length 14336; a Python
double loop is 1.7·10⁷ dot products, the full m × m matrix is fine there but not for wider layers
(GPT-2 XL's c_proj has m = 6400; stacked layers more). Row blocks of X̂X̂ᵀ give the exact sum with
O(block_size · m) memory, one matmul per block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from editors.core.solvers import full_precision


def _check(power: float, eps: float, block_size: int = 1) -> None:
    if not math.isfinite(power):
        raise ValueError(f"he.power must be a finite number, got {power!r}")
    if not eps >= 0:
        raise ValueError(f"he.eps must be >= 0, got {eps!r}")
    if block_size < 1:
        raise ValueError(f"he.block_size must be >= 1, got {block_size!r}")


def unit_rows(W: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """W's rows scaled to unit length in ``dtype``, in one new m × c tensor (``F.normalize``'s
    numbers without its temporaries); an all-zero row stays zero."""
    X = W.detach().to(dtype, copy=True)
    return X.div_(X.norm(2, dim=1, keepdim=True).clamp_min(1e-12))


def gram_blocks(
    X: torch.Tensor, block_size: int
) -> Iterator[tuple[slice, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
    """Row blocks of X Xᵀ: (rows, G, self_pairs) with G = X[rows] @ Xᵀ (a new block_size × m tensor,
    free to modify) and ``G[self_pairs]`` its entries (i, i). Every pairwise sum over W's neurons
    (HE, the cosines' spread, Theorem 1's constant) walks these blocks, so each holds only
    O(block_size · m) memory and leaves the self-pairs out the same way."""
    m = X.shape[0]
    for start in range(0, m, block_size):
        stop = min(start + block_size, m)
        i = torch.arange(stop - start, device=X.device)
        yield slice(start, stop), X[start:stop] @ X.T, (i, i + start)


def cosine_spread(W: torch.Tensor, block_size: int = 1024) -> float:
    """Standard deviation of the cosines between all pairs of W's rows (exact, float64, blockwise).

    The one-number summary of the angular distribution (the paper's Figure of neuron angles): evenly
    spread neurons have cosines near 0; edits that pull neurons together widen the distribution.
    """
    X = unit_rows(W)
    m = X.shape[0]
    total, total_sq = 0.0, 0.0
    for _, G, self_pairs in gram_blocks(X, block_size):
        G[self_pairs] = 0.0  # leave out each row's cosine with itself
        total += float(G.sum())
        total_sq += float(G.pow(2).sum())
    n = m * (m - 1)
    mean = total / n
    return (max(total_sq / n - mean * mean, 0.0)) ** 0.5


def hyperspherical_energy(
    W: torch.Tensor,
    *,
    power: float = 1.0,
    eps: float = 1e-4,
    block_size: int = 1024,
    normalized: bool = False,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Exact HE of W's rows, on W's device, from row blocks of the Gram matrix.

    Args:
        W: m × c weight (rows = neurons), any float dtype.
        power: the exponent s (paper: α), s = 1 by default.
        eps: ε added to the squared distance so coinciding neurons give a finite energy.
        block_size: rows per Gram block; memory is block_size × m entries of ``dtype``.
        normalized: divide by the number of ordered pairs m(m − 1), so layers of different widths
            (and models) compare on one scale; 0 when m < 2.
        dtype: dtype of the normalised rows and Gram blocks; float64 by default because 2 − 2cos
            cancels for near-parallel neurons and the pair sum has up to 10⁸ terms. The sum is always
            accumulated in float64.

    Distances are ‖x̂_i‖² + ‖x̂_j‖² − 2 x̂_i·x̂_j, which is 2 − 2 cos θ_ij for unit rows and stays the
    true distance for an all-zero row (kept as x̂ = 0: distance 1 to every unit row, not NaN).
    """
    _check(power, eps, block_size)
    if W.ndim != 2:
        raise ValueError(f"hyperspherical_energy expects a 2-D weight, got shape {tuple(W.shape)}")
    m = W.shape[0]
    if m < 2:
        return 0.0
    with full_precision(), torch.no_grad():
        # One m × c copy of W, normalised in place, and X*X a block at a time: the same numbers as
        # ``F.normalize(W.to(dtype))`` and ``(X * X).sum(1)`` without their two further m × c
        # temporaries (float64 at LLaMA3-8B's 4096 × 14336: 470 MB each).
        X = unit_rows(W, dtype)
        sq = torch.cat([(x * x).sum(dim=1) for x in X.split(block_size)])
        total = torch.zeros((), dtype=torch.float64, device=W.device)
        for rows, G, self_pairs in gram_blocks(X, block_size):
            d2 = (
                (sq[rows, None] + sq[None, :]).sub_(G.mul_(2.0)).clamp_min_(0.0)
            )  # (‖x̂_i‖² + ‖x̂_j‖²) − 2 x̂_i·x̂_j
            terms = d2.add_(eps).pow_(-power)
            terms[self_pairs] = 0.0  # i == j is not a pair
            total += terms.sum(dtype=torch.float64)
        he = float(total)
    return he / (m * (m - 1)) if normalized else he


def hyperspherical_energy_naive(W: torch.Tensor, power: float = 1.0, eps: float = 1e-4) -> float:
    """HE by an explicit double loop over rows in float64: slow, obviously correct, for tests only."""
    _check(power, eps)
    X = W.detach().to(torch.float64).cpu()
    m = X.shape[0]
    unit = []
    for i in range(m):
        n = float(torch.linalg.vector_norm(X[i]))
        unit.append(X[i] / n if n > 0 else X[i] * 0.0)
    he = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                dist2 = float(((unit[i] - unit[j]) ** 2).sum())
                he += (dist2 + eps) ** (-power)
    return he


__all__ = [
    "cosine_spread",
    "gram_blocks",
    "hyperspherical_energy",
    "hyperspherical_energy_naive",
    "unit_rows",
]
