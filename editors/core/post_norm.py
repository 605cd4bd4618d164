"""Residual targets through a post-MLP norm (Gemma 2/3's ``post_feedforward_layernorm``).

The MEMIT family writes a residual share r (a change of the residual stream) into ΔW k, i.e. into
the output x of the edited matrix. That holds when x is added to the residual as it is. Gemma 2/3
add y = norm(x) instead, an RMSNorm: y = γ ⊙ x / rms(x). There a change Δx = r lands scaled by
~‖y‖/‖x‖ (×40–160 on Gemma-3-270M, docs/tuning.md), and the edit overwrites what the MLP said.

RMSNorm is scale-invariant, so the outputs x can produce are the ellipsoid {γ ⊙ u : rms(u) = 1}.
The target t = y + r is mapped to the nearest of them: u = γ ⊙ t / (γ² + μ) with μ, the constraint's
Lagrange multiplier, found by bisection (μ = 0, u = t/γ, exactly when t is reachable). A far target
(r on the residual stream's scale, as the MEMIT family's shares are) is not just aimed at: the
output moves as far towards it as the norm allows, which weights the coordinates by γ², and later
layers of the spread see what is left, since each recomputes the residual. Any x' = c·u has that
output; c is the least-change choice, the projection of x on u, so Δx = x' − x is as small as the
norm allows. This is the residual the solve uses.

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


def nearest_on_ellipsoid(
    gamma: torch.Tensor, t: torch.Tensor, x: torch.Tensor, iters: int = 100
) -> torch.Tensor:
    """u (n × d) with rms(u) = 1 minimising ‖γ ⊙ u − t‖ per row (float64 bisection on μ).

    Coordinates with γ = 0 (Gemma-3-270M has them) do not reach the output, but share the rms:
    they take whatever length the others leave, split evenly among them with x's signs there.
    """
    g2, gt, d = gamma.double() ** 2, gamma.double() * t.double(), t.shape[-1]
    live = g2 > 0  # a zero gain zeroes its output coordinate: u is 0 there, the rest carries rms 1

    def u_of(mu: torch.Tensor) -> torch.Tensor:
        den = g2 + mu[:, None]
        return torch.where(live, gt / torch.where(live, den, 1.0), 0.0)

    def excess(mu: torch.Tensor) -> torch.Tensor:  # ‖u(μ)‖² − d, decreasing in μ > −min γ²
        return u_of(mu).pow(2).sum(-1) - d

    zero = torch.zeros(len(t), dtype=torch.float64)
    slack = -excess(zero)  # ≥ 0: t/γ is inside the sphere
    if not live.all():  # the dead coordinates absorb any slack: inside targets are reached exactly
        fill = torch.where(live, 0.0, x.double().sign().where(x != 0, 1.0))
        reached = u_of(zero) + fill * (slack.clamp_min(0) / fill.pow(2).sum(-1))[:, None].sqrt()
        if (slack >= 0).all():
            return reached
    floor = -float(g2[live].min()) * (1 - 1e-9)  # the pole nearest to 0
    outside = slack <= 0
    lo = torch.where(outside, 0.0, floor).to(torch.float64)
    hi = torch.where(outside, gt.norm(dim=-1) / d**0.5, 0.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = excess(mid) > 0  # u still too long: μ must grow
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    u = u_of((lo + hi) / 2)
    return u if live.all() else torch.where((slack >= 0)[:, None], reached, u)


@torch.no_grad()
def through_post_norm(norm: nn.Module, x: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """Δx (n × d, float32) with norm(x + Δx) the reachable output nearest to norm(x) + resid
    (equal to it where reachable).

    ``x``: the edited matrix's output at each request's fact token (n × d); ``resid``: the residual
    share meant for the residual stream (n × d).
    """
    p = next(norm.parameters(), x)
    x64 = x.double()
    y = norm(x.to(device=p.device, dtype=p.dtype)).to(x64)
    gamma, t = norm_gain(norm, x.shape[-1], x64), y + resid.to(x64)
    u = nearest_on_ellipsoid(gamma, t, x64)
    along = (u * x64).sum(-1) / u.pow(2).sum(-1)
    c = torch.where(along > 0, along, x64.norm(dim=-1) / u.norm(dim=-1))  # a flip: keep ‖x‖
    if log.isEnabledFor(logging.DEBUG):  # 0 where the target is reachable
        miss = (t - gamma * u).norm(dim=-1) / resid.to(x64).norm(dim=-1)
        log.debug("post-MLP norm: unreached share of each residual %s", miss.tolist())
    return (c[:, None] * u - x64).float()
