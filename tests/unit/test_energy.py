"""Hyperspherical energy: the blockwise Gram computation equals the double loop over rows."""

from __future__ import annotations

import pytest
import torch

from sphere.method.energy import hyperspherical_energy, hyperspherical_energy_naive


def _rand(m: int, c: int, seed: int) -> torch.Tensor:
    return torch.randn(m, c, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("block_size", [1, 3, 7, 16, 1024])
def test_blockwise_equals_naive(block_size: int) -> None:
    W = _rand(16, 9, seed=block_size)
    naive = hyperspherical_energy_naive(W, power=1.0, eps=1e-4)
    assert hyperspherical_energy(W, block_size=block_size) == pytest.approx(naive, rel=1e-10)


def test_single_row_and_duplicate_rows() -> None:
    assert hyperspherical_energy(_rand(1, 5, 0)) == 0.0
    assert hyperspherical_energy_naive(_rand(1, 5, 0)) == 0.0
    assert hyperspherical_energy(_rand(1, 5, 0), normalized=True) == 0.0
    # two identical rows: distance 0, both ordered pairs give ε^(−s); clamping keeps it finite
    W = torch.ones(2, 4)
    assert hyperspherical_energy(W, eps=1e-4) == pytest.approx(2 / 1e-4)
    # a zero row is x̂ = 0: distance 1 to a unit row
    Z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert hyperspherical_energy(Z, eps=0.0) == pytest.approx(hyperspherical_energy_naive(Z, eps=0.0)) == 2.0


def test_invariant_to_row_scaling() -> None:
    W = _rand(11, 6, seed=1).double()  # float64 so the scaled rows keep their directions to 1e-16
    scales = torch.rand(11, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 10 + 0.1
    assert hyperspherical_energy(W * scales, block_size=4) == pytest.approx(
        hyperspherical_energy(W), rel=1e-10
    )


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
def test_power_parameter(power: float) -> None:
    W = _rand(9, 5, seed=3)
    assert hyperspherical_energy(W, power=power, eps=1e-3, block_size=4) == pytest.approx(
        hyperspherical_energy_naive(W, power=power, eps=1e-3), rel=1e-10
    )
    # orthonormal rows: every pair at squared distance 2 → m(m−1)(2+ε)^(−s)
    eye = torch.eye(4)
    assert hyperspherical_energy(eye, power=power, eps=0.0) == pytest.approx(12 * 2.0 ** (-power))
    assert hyperspherical_energy(eye, power=power, eps=0.0, normalized=True) == pytest.approx(2.0 ** (-power))


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="block_size"):
        hyperspherical_energy(_rand(3, 3, 0), block_size=0)
    with pytest.raises(ValueError, match="eps"):
        hyperspherical_energy(_rand(3, 3, 0), eps=-1.0)


def test_cosine_spread_is_the_sd_of_all_pairwise_cosines() -> None:
    import itertools

    from sphere.method.energy import cosine_spread

    W = torch.randn(13, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    X = W.double() / W.double().norm(dim=1, keepdim=True)
    cos = torch.tensor(
        [float(X[i] @ X[j]) for i, j in itertools.permutations(range(13), 2)], dtype=torch.float64
    )
    assert cosine_spread(W) == pytest.approx(float(cos.std(unbiased=False)), rel=1e-10)
    assert cosine_spread(W, block_size=4) == pytest.approx(cosine_spread(W), rel=1e-12)
    assert cosine_spread(3 * W) == pytest.approx(cosine_spread(W), rel=1e-12)  # directions only


def test_gram_blocks_cover_the_gram_matrix_once() -> None:
    from sphere.method.energy import gram_blocks

    X = torch.randn(7, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    blocks = list(gram_blocks(X, 3))
    assert [b[0] for b in blocks] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    # allclose, not equal: a row block's product and the full product may take different BLAS
    # kernels, whose float64 sums differ in the last bits (seen on one CI machine).
    assert torch.allclose(torch.cat([G for _, G, _ in blocks]), X @ X.T, rtol=1e-12, atol=1e-14)
    diag = torch.cat([G[pairs] for _, G, pairs in blocks])
    assert torch.allclose(diag, torch.diagonal(X @ X.T), rtol=1e-12, atol=1e-14)
