"""Closed-form solves of the locate-then-edit family, in the (d_model × d_ff) layout.

K holds keys as rows (n × d_ff), R residuals as rows (n × d_model), C = E[k kᵀ] (d_ff × d_ff).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def full_precision() -> Iterator[None]:
    """Disable TF32 (and reduced-precision float32 matmuls) for the enclosed edit math.

    TF32 keeps ~10 mantissa bits: enough to move eigenvectors of near-degenerate eigenvalues, to
    change which r SPHERE's β rule picks, and to spoil a d_ff × d_ff solve. The flags are
    process-global, so the previous values are restored on exit, also when the body raises.
    """
    saved = (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]


def memit_delta(
    K: torch.Tensor,
    R: torch.Tensor,
    C: torch.Tensor,
    lam: float,
    dtype=torch.float64,
    C_past: torch.Tensor | None = None,
    past_weight: float = 0.0,
) -> torch.Tensor:
    """ΔW = Rᵀ K (λC + KᵀK)⁻¹: the minimiser of ‖ΔW Kᵀ − Rᵀ‖² + λ tr(ΔW C ΔWᵀ) (MEMIT, spec §2.2).

    With ``C_past`` = Σ k kᵀ over earlier edits' keys and weight μ = ``past_weight``, the matrix is
    λC + μC_past + KᵀK: the minimiser gains the term μ‖ΔW K_pastᵀ‖², so earlier edits' outputs
    are held where they are (not in the reference; ``MEMITHParams.past_edit_weight``).

    The same arithmetic as ``(R.T @ torch.linalg.solve(lam * C + K.T @ K, K.T).T).float()`` (the
    reference's), in one d_ff × d_ff matrix instead of four: A is built in place (λC, then KᵀK added
    a block of rows at a time) and LU-factored in place, and freed before ΔW is formed, a block of
    rows at a time, straight into float32. The straightforward expression holds C's copy, λC, KᵀK
    and A at once, ``solve`` copies A again, and ΔW exists in the solver dtype next to A: at
    LLaMA3-8B's d_ff = 14336 in float64 that is 6.6 GB of workspace per layer, against 1.6 GB here.
    """
    with full_precision():
        k, r = K.to(dtype), R.to(dtype)
        a = _regularised_gram(C, k, lam, C_past if past_weight else None, past_weight)
        x = _lu_solve_in_place(a, k.T)  # (d_ff × n) = A⁻¹Kᵀ
        del a
        xt = x.T
        delta = torch.empty(r.shape[1], k.shape[1], dtype=torch.float32, device=k.device)
        for i in range(0, r.shape[1], GRAM_BLOCK_ROWS):
            delta[i : i + GRAM_BLOCK_ROWS] = r.T[i : i + GRAM_BLOCK_ROWS] @ xt
        return delta


# Rows of a d_ff-wide product formed at a time: KᵀK while it is added to λC, and ΔW
# (256 × 14336 float64 = 29 MB).
GRAM_BLOCK_ROWS = 256


def _regularised_gram(
    C: torch.Tensor, k: torch.Tensor, lam: float, C_past: torch.Tensor | None = None, past_weight: float = 0.0
) -> torch.Tensor:
    """A = λC + kᵀk (+ μ C_past) in ``k``'s dtype and device, as one new matrix (column-major, ready
    to be LU-factored in place); equal to ``lam * C + k.T @ k (+ past_weight * C_past)`` computed in
    that dtype. C_past (which may live in host memory) comes over a block of rows at a time, so no
    second d_ff × d_ff matrix is made on the device."""
    d = C.shape[0]
    a = torch.empty(d, d, dtype=k.dtype, device=k.device).mT  # LAPACK's column-major layout
    a.copy_(C)
    a.mul_(lam)
    for i in range(0, d, GRAM_BLOCK_ROWS):
        j = min(d, i + GRAM_BLOCK_ROWS)
        a[i:j].add_(k[:, i:j].T @ k)
        if C_past is not None:
            a[i:j].add_(C_past[i:j].to(device=a.device, dtype=a.dtype), alpha=past_weight)
    return a


def _lu_solve_in_place(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A⁻¹B by LU with partial pivoting, as ``torch.linalg.solve`` computes it, overwriting ``a``
    (column-major) with its factors instead of factoring a copy. Raises ``torch.linalg.LinAlgError``
    for an exactly singular A, as ``solve`` does."""
    pivots = torch.empty(a.shape[0], dtype=torch.int32, device=a.device)
    info = torch.empty((), dtype=torch.int32, device=a.device)
    lu, pivots, info = torch.linalg.lu_factor_ex(a, out=(a, pivots, info))
    if int(info) > 0:
        raise torch.linalg.LinAlgError(
            "torch.linalg.solve: The solver failed because the input matrix is singular."
        )
    return torch.linalg.lu_solve(lu, pivots, b)


NULLSPACE_RULES = ("absolute", "trace")


def nullspace_mask(evals: torch.Tensor, threshold: float, rule: str = "absolute") -> torch.Tensor:
    """Which eigen-directions of C (eigenvalues ``evals``, ascending as ``eigh`` gives them) are "null".

    ``absolute`` (the reference): eigenvalue < ``threshold``. Its meaning depends on the scale of the
    model's keys: 0.02 suits LLaMA3-8B, but keeps 60–80 % of SmolLM2-135M's key directions.
    ``trace``: the smallest eigen-directions that together hold at most ``threshold`` of tr(C). Since
    tr(PC) = E‖Pk‖², preserved keys then keep at most that fraction of their energy inside the edit
    subspace, whatever the model's scale.
    """
    mags = evals.abs()
    if rule == "absolute":
        return mags < threshold
    if rule == "trace":
        order = torch.argsort(mags)
        share = torch.cumsum(mags[order], 0) / mags.sum().clamp_min(torch.finfo(mags.dtype).tiny)
        mask = torch.zeros_like(mags, dtype=torch.bool)
        mask[order[share <= threshold]] = True
        return mask
    raise ValueError(f"nullspace_rule={rule!r} is not one of {NULLSPACE_RULES}")


def nullspace_projector(C: torch.Tensor, threshold: float, rule: str = "absolute") -> torch.Tensor:
    """P = Û Ûᵀ over the eigenvectors of C selected by ``nullspace_mask`` (AlphaEdit, spec §2.5).

    C is symmetric PSD, so its singular values are its eigenvalues and a symmetric ``eigh`` (on the
    GPU if C is there) replaces the reference's CPU SVD.
    """
    with full_precision():
        evals, evecs = torch.linalg.eigh(C.float())
        u = evecs[:, nullspace_mask(evals, threshold, rule)]
        return u @ u.T


def alphaedit_delta(
    K: torch.Tensor, R: torch.Tensor, P: torch.Tensor, K_past: torch.Tensor, l2: float
) -> torch.Tensor:
    """ΔW = Xᵀ with (P(KᵀK + C_past) + L2·I) X = P Kᵀ R (AlphaEdit, spec §2.5), in float32.

    X = P(KᵀR − (KᵀK + C_past)X)/L2 lies in range(P), so ΔW k₀ ≈ 0 for preserved keys k₀.
    ``K_past`` is the accumulated Σ k kᵀ of earlier edits (d_ff × d_ff).
    """
    with full_precision():
        k, r = K.float(), R.float()
        p = P.to(device=k.device, dtype=torch.float32)
        m = p @ (k.T @ k + K_past.to(device=k.device, dtype=torch.float32))
        m.diagonal().add_(l2)
        x = torch.linalg.solve(m, p @ (k.T @ r))
        return x.T
