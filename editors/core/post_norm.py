"""Residual targets through a post-MLP norm (Gemma 2/3's ``post_feedforward_layernorm``).

The MEMIT family writes a residual share r (a change of the residual stream) into ΔW k, i.e. into
the output x of the edited matrix. That holds when x is added to the residual as it is. Gemma 2/3
add y = norm(x) instead, an RMSNorm: y = γ ⊙ x / rms(x). There a change Δx = r lands scaled by
~‖y‖/‖x‖ (×40–160 on Gemma-3-270M, docs/tuning.md), and the edit overwrites what the MLP said.

RMSNorm is scale-invariant, so the outputs x can produce are {γ ⊙ u : rms(u) = 1}, and the x
whose normed output is y' = y + r is x' = c · y'/γ for any c > 0: exact when rms(y'/γ) = 1 (r is
reachable), and otherwise the reachable output along y'/γ, scaled (later layers of the spread see
what is left, since each recomputes the residual). c is the least-change choice, the projection
of x on y'/γ, so Δx = x' − x is as small as the norm allows. This is the residual the solve uses.

ROME adds its δ to the MLP's output (before the norm) and optimises it through the norm, so its
targets are right as they are; only the MEMIT family's block-output targets need this map.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)
_GAIN_PROBE = 1e3  # rms of the probe: the norm's ε (≤ 1e-5) is then below float32 resolution


@torch.no_grad()
def norm_gain(norm: nn.Module, d: int, like: torch.Tensor) -> torch.Tensor:
    """γ of a scale-invariant norm, read off the module itself: norm(c·1) = γ (any RMSNorm's
    parametrisation: Gemma's 1 + w, LLaMA's w)."""
    p = next(norm.parameters(), like)
    probe = torch.full((1, d), _GAIN_PROBE, dtype=p.dtype, device=p.device)
    return norm(probe)[0].to(like)


@torch.no_grad()
def through_post_norm(norm: nn.Module, x: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """Δx (n × d, float32) with norm(x + Δx) = norm(x) + resid where that output is reachable.

    ``x``: the edited matrix's output at each request's fact token (n × d); ``resid``: the residual
    share meant for the residual stream (n × d).
    """
    p = next(norm.parameters(), x)
    x32 = x.float()
    y = norm(x.to(device=p.device, dtype=p.dtype)).to(x32)
    gamma = norm_gain(norm, x.shape[-1], x32)
    live = gamma.abs() > 1e-6  # a zero gain zeroes that coordinate whatever x is: keep x's there
    unit = x32 / x32.pow(2).mean(-1, keepdim=True).sqrt()
    v = torch.where(live, (y + resid.to(x32)) / torch.where(live, gamma, 1.0), unit)
    along = (v * x32).sum(-1) / v.pow(2).sum(-1)
    c = torch.where(along > 0, along, x32.norm(dim=-1) / v.norm(dim=-1))  # a flip: keep ‖x‖
    if log.isEnabledFor(logging.DEBUG):  # rms(y'/γ): 1 where reachable; the output is y'/rms
        log.debug("post-MLP norm: rms(y'/γ) = %s", v.pow(2).mean(-1).sqrt().tolist())
    return c[:, None] * v - x32
