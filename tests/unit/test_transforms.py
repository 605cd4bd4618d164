"""RECT's relative-change mask and PRUNE's log restraint against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from editors.core.weights import apply_transforms
from editors.prune import PruneRestraint
from editors.rect import RectMask
from sphere.method.projection import SphereProjection


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(7, 13), (10, 10), (3, 41)])
def test_rect_keeps_top_40_percent_by_relative_change(shape: tuple[int, int]) -> None:
    W = torch.randn(*shape, generator=_gen(0)) + 3.0  # away from 0: ρ is well defined
    delta = torch.randn(*shape, generator=_gen(1))
    out = RectMask(keep_fraction=0.4)("w", 0, W, delta)
    numel = delta.numel()
    kept = out != 0
    # τ is the k-th smallest ρ (k = floor(0.6·numel), 1-based) and ρ ≥ τ keeps τ itself: the
    # reference keeps numel − k + 1 entries, one more than an exact top-40%.
    assert int(kept.sum()) == numel - math.floor(0.6 * numel) + 1
    assert torch.equal(out[kept], delta[kept])  # kept entries unchanged, not rescaled
    rho = (delta / (W + 1e-8)).abs()
    assert rho[kept].min() > rho[~kept].max()


def test_rect_keep_all_when_k_is_zero() -> None:
    W, delta = torch.ones(2, 2), torch.randn(2, 2, generator=_gen(2))
    assert RectMask(keep_fraction=0.9)("w", 0, W, delta) is delta  # floor(0.1 · 4) = 0
    with pytest.raises(ValueError, match="keep_fraction"):
        RectMask(keep_fraction=0.0)


def _with_singular_values(sigma: list[float], m: int, c: int, seed: int) -> torch.Tensor:
    g = _gen(seed)
    U, _ = torch.linalg.qr(torch.randn(m, len(sigma), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(c, len(sigma), generator=g, dtype=torch.float64))
    return (U * torch.tensor(sigma, dtype=torch.float64)) @ V.T


def test_prune_log_restrains_only_singular_values_above_s0() -> None:
    m, c = 12, 20
    W0 = _with_singular_values([5.0, 2.0, 1.0], m, c, seed=3)  # s0 = 5
    sigma = [40.0, 9.0, 5.5, 4.0, 0.5]
    delta = _with_singular_values(sigma, m, c, seed=4)
    s0 = 5.0
    expected_sigma = [math.log(s) - math.log(s0) + s0 if s > s0 else s for s in sigma]
    out = PruneRestraint()("w", 0, W0, delta)
    got = torch.linalg.svdvals(out)[: len(sigma)]
    torch.testing.assert_close(got, torch.tensor(expected_sigma, dtype=torch.float64), atol=1e-9, rtol=0)
    # same singular vectors: Δ' = Δ with only the top three directions rescaled
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    expected = (U[:, :5] * torch.tensor(expected_sigma, dtype=torch.float64)) @ Vh[:5]
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)


def test_prune_leaves_small_edits_alone_and_caches_s0() -> None:
    W0 = _with_singular_values([5.0, 1.0], 6, 9, seed=5)
    delta = _with_singular_values([4.9, 0.1], 6, 9, seed=6)
    prune = PruneRestraint()
    assert prune("w", 0, W0, delta) is delta
    # s0 is computed once per name: a later (different) reference is not re-read
    prune("w", 0, 100 * W0, delta)
    assert prune.max_singular_value("w", W0) == pytest.approx(5.0)


def test_apply_transforms_runs_only_the_matching_point_in_order() -> None:
    W = torch.randn(6, 10, generator=_gen(7)) + 2.0
    delta = torch.randn(6, 10, generator=_gen(8))
    rect, sphere = RectMask(point="step"), SphereProjection(0.8, rank=2, point="step")
    prune = PruneRestraint(point="readout")
    out = apply_transforms([rect, sphere, prune], "step", "w", 0, W, delta)
    torch.testing.assert_close(out, sphere("w", 0, W, rect("w", 0, W, delta)))
    assert apply_transforms([rect, sphere], "layer", "w", 0, W, delta) is delta
