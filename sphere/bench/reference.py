"""Reference-style implementations of each stage, kept for the benchmark only (spec §7.2).

Each does what the reference code does, with our building blocks where the math is shared, so a
ratio measures the approach (c×c eigendecomposition, one statistics pass per layer, one request at a
time with full forwards, record-by-record evaluation), not incidental differences.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from editors.core.covariance import CovarianceOptions, collect_second_moments
from editors.core.model_spec import ModelSpec
from editors.core.requests import EditRequest
from editors.core.solvers import full_precision
from editors.core.values import ValueOptions, compute_target_values
from sphere.evaluation.counterfact import evaluate_counterfact
from sphere.method.projection import principal_directions


def sphere_projection(W: torch.Tensor, delta: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """SPHERE as the reference computes it: eigh of the c×c covariance of the normalised rows, then
    the explicit c×c projector I − αUUᵀ multiplied into ΔW."""
    d = principal_directions(W, beta=beta, method="naive", compute_dtype=torch.float32)
    with full_precision():
        P = torch.eye(W.shape[1], device=W.device) - alpha * (d.U @ d.U.T)
        return delta @ P


def nullspace_projector_svd(C: torch.Tensor, threshold: float) -> torch.Tensor:
    """AlphaEdit's null-space projector as the reference builds it: a full SVD of C on the CPU."""
    with full_precision():
        U, S, _ = torch.linalg.svd(C.float().cpu(), full_matrices=False)
        small = U[:, threshold > S]
        return (small @ small.T).to(C.device)


def hyperspherical_energy_full(W: torch.Tensor, power: float = 1.0, eps: float = 1e-4) -> float:
    """HE from the whole m×m matrix of pairwise distances at once (float64), the direct way."""
    X = W.double()
    X = X / X.norm(dim=1, keepdim=True).clamp_min(1e-30)
    d2 = (2.0 - 2.0 * (X @ X.T)).clamp_min(0.0)
    e = (d2 + eps) ** (-power)
    return float(e.sum() - e.diagonal().sum())


def covariance_per_layer(
    model: nn.Module, tok, spec: ModelSpec, layers: Sequence[int], texts: list[str], opts: CovarianceOptions
) -> dict[int, tuple[torch.Tensor, int]]:
    """One pass over the corpus per layer (the reference's layer_stats, which stops after the layer)."""
    out = {}
    for layer in layers:
        out.update(collect_second_moments(model, tok, spec, [layer], texts, opts))
    return out


def target_values_one_by_one(
    model: nn.Module,
    tok,
    spec: ModelSpec,
    requests: Sequence[EditRequest],
    module: str,
    templates: Sequence[str],
    opts: ValueOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """z one request at a time, each step a forward through the whole model (the reference's loop)."""
    from dataclasses import replace

    full = replace(opts, reuse_lower_layers=False)
    zs, h0s = zip(*(compute_target_values(model, tok, spec, [r], module, templates, full) for r in requests))
    return torch.cat(zs), torch.cat(h0s)


def evaluate_record_by_record(model, tok, records, batch_size: int = 32) -> list[dict]:
    """CounterFact metrics one record at a time (the reference's compute_rewrite_quality_counterfact)."""
    return [row for r in records for row in evaluate_counterfact(model, tok, [r], batch_size=batch_size)]
