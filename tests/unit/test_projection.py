"""SPHERE projection: the gram path equals the reference c×c path, the β→r rule, and P⊥'s algebra."""

from __future__ import annotations

import pytest
import torch

from sphere.method.projection import (
    SphereProjection,
    principal_directions,
    project_update,
    rank_for_energy,
    span_share,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _low_energy_matrix(m: int, c: int, seed: int) -> torch.Tensor:
    """Random rows with a decaying column scale, so C has a spread spectrum (not all ≈ 1/c)."""
    g = _gen(seed)
    scale = torch.linspace(1.0, 0.05, c) ** 2
    return torch.randn(m, c, generator=g) * scale + 0.3 * torch.randn(1, c, generator=g)


def _basis_rows(norms: list[float] | None = None) -> torch.Tensor:
    """10 rows: 4×e1, 3×e2, 2×e3, 1×e4 in R^6 → C = diag(.4, .3, .2, .1, 0, 0) whatever the row norms."""
    idx = [0] * 4 + [1] * 3 + [2] * 2 + [3]
    W = torch.zeros(10, 6, dtype=torch.float64)
    norms = norms or [1.0] * 10
    for row, (col, n) in enumerate(zip(idx, norms)):
        W[row, col] = n
    return W


@pytest.mark.parametrize("method", ["gram", "naive", "auto"])
def test_directions_are_orthonormal(method: str) -> None:
    W = _low_energy_matrix(24, 60, seed=0)
    d = principal_directions(W, beta=0.5, method=method)
    assert d.U.dtype == torch.float32 and d.U.shape == (60, d.r)
    torch.testing.assert_close(d.U.T @ d.U, torch.eye(d.r), atol=1e-5, rtol=0)
    assert torch.all(d.eigenvalues[:-1] >= d.eigenvalues[1:])
    assert 0.5 < d.energy <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gram_path_matches_naive(seed: int, dtype: torch.dtype) -> None:
    m, c = 20 + 7 * seed, 50 + 11 * seed
    W = _low_energy_matrix(m, c, seed)
    delta = torch.randn(m, c, generator=_gen(100 + seed))
    atol = 1e-10 if dtype == torch.float64 else 1e-4
    for beta in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97]:
        g = principal_directions(W, beta=beta, method="gram", compute_dtype=dtype)
        n = principal_directions(W, beta=beta, method="naive", compute_dtype=dtype)
        assert g.r == n.r, beta
        assert g.energy == pytest.approx(n.energy, abs=1e-5)
        # Eigenvectors are defined up to sign: compare the projectors and the projected updates.
        torch.testing.assert_close(g.U @ g.U.T, n.U @ n.U.T, atol=max(atol, 1e-6), rtol=0)
        torch.testing.assert_close(
            project_update(delta, g.U, 0.8), project_update(delta, n.U, 0.8), atol=max(atol, 1e-5), rtol=0
        )


def test_beta_rule_on_known_spectrum_includes_the_plus_one() -> None:
    W = _basis_rows(norms=[0.5, 2.0, 3.0, 1.0, 7.0, 0.1, 1.0, 4.0, 2.5, 9.0])  # row norms must not matter
    # cumulative energies .4 .7 .9 1.0: r = 1 + #{cumsum ≤ β}
    for beta, r in [(0.39, 1), (0.41, 2), (0.69, 2), (0.71, 3), (0.89, 3), (0.95, 4)]:
        for method in ("naive", "gram"):
            d = principal_directions(W, beta=beta, method=method)
            assert d.r == r, (beta, method)
            assert d.energy == pytest.approx([0.4, 0.7, 0.9, 1.0][r - 1])
            torch.testing.assert_close(
                d.eigenvalues.double(), torch.tensor([0.4, 0.3, 0.2, 0.1][:r], dtype=torch.float64)
            )
            # the kept directions are the first r basis vectors
            torch.testing.assert_close(
                (d.U @ d.U.T).double(),
                torch.diag(torch.tensor([1.0] * r + [0.0] * (6 - r))).double(),
                atol=1e-6,
                rtol=0,
            )


def test_rank_for_energy_caps() -> None:
    assert rank_for_energy(torch.tensor([0.5, 0.5]), 0.99, cap=2) == 2
    assert rank_for_energy(torch.tensor([0.25, 0.25, 0.25, 0.25]), 0.5, cap=2) == 2


def test_rank_given_directly_and_gram_fallback_beyond_positive_spectrum() -> None:
    W = _basis_rows()
    d = principal_directions(W, rank=3, method="gram")
    assert d.r == 3 and d.energy == pytest.approx(0.9)
    # rank 5 > 4 positive eigenvalues: gram cannot produce the 5th vector, falls back to naive
    d5 = principal_directions(W, rank=5, method="gram")
    assert d5.r == 5
    torch.testing.assert_close(d5.U.T @ d5.U, torch.eye(5), atol=1e-6, rtol=0)
    span = d5.U @ d5.U.T
    for k in range(4):
        e = torch.zeros(6)
        e[k] = 1.0
        torch.testing.assert_close(span @ e, e, atol=1e-6, rtol=0)


def test_alpha_zero_is_identity_and_alpha_one_removes_span() -> None:
    W = _low_energy_matrix(16, 40, seed=3)
    delta = torch.randn(16, 40, generator=_gen(7))
    U = principal_directions(W, beta=0.5).U
    assert torch.equal(project_update(delta, U, 0.0), delta)
    out = project_update(delta, U, 1.0)
    assert torch.linalg.vector_norm(out @ U) < 1e-5
    complement = delta - (delta @ U) @ U.T
    torch.testing.assert_close(out, complement, atol=1e-6, rtol=0)
    # soft projection scales the in-span component by (1 − α)
    half = project_update(delta, U, 0.5)
    torch.testing.assert_close(half @ U, 0.5 * (delta @ U), atol=1e-5, rtol=0)


def test_span_share_of_updates_in_outside_and_projected() -> None:
    W = _low_energy_matrix(16, 40, seed=3)
    U = principal_directions(W, beta=0.5).U.double()
    delta = torch.randn(16, 40, generator=_gen(8), dtype=torch.float64)
    inside, outside = (delta @ U) @ U.T, delta - (delta @ U) @ U.T
    assert span_share(inside, U) == pytest.approx(1.0, abs=1e-6)
    assert span_share(outside, U) == pytest.approx(0.0, abs=1e-6)
    assert span_share(torch.zeros(16, 40), U) == 0.0
    # SPHERE at α scales the in-span energy by (1 − α)²; the rest is untouched
    share, alpha = span_share(delta, U), 0.8
    e_in, e_out = share, 1 - share
    expected = (1 - alpha) ** 2 * e_in / ((1 - alpha) ** 2 * e_in + e_out)
    assert span_share(project_update(delta, U, alpha), U) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"alpha": 1.5, "beta": 0.5}, "sphere.alpha"),
        ({"alpha": -0.1, "beta": 0.5}, "sphere.alpha"),
        ({"alpha": 0.5, "beta": 1.0}, "sphere.beta"),
        ({"alpha": 0.5, "beta": 0.0}, "sphere.beta"),
        ({"alpha": 0.5, "rank": 0}, "sphere.rank"),
        ({"alpha": 0.5}, "sphere.rank"),
        ({"alpha": 0.5, "beta": 0.5, "rank": 2}, "sphere.beta"),
        ({"alpha": 0.5, "beta": 0.5, "reference": "init"}, "sphere.reference"),
        ({"alpha": 0.5, "beta": 0.5, "point": "end"}, "sphere.point"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        SphereProjection(**kwargs)


def test_bad_rank_and_alpha_at_call_time() -> None:
    W = torch.randn(5, 8, generator=_gen(0))
    with pytest.raises(ValueError, match=r"sphere\.rank.*\[1, 5\].*6"):
        principal_directions(W, rank=6)
    with pytest.raises(ValueError, match=r"sphere\.beta"):
        principal_directions(W, beta=1.2)
    with pytest.raises(ValueError, match=r"sphere\.alpha.*\[0, 1\]"):
        project_update(W, torch.eye(8)[:, :2], 2.0)


def test_current_reference_recomputes_and_pretrained_keeps_first() -> None:
    W0 = _low_energy_matrix(12, 30, seed=4)
    W1 = torch.randn(12, 30, generator=_gen(9))
    delta = torch.randn(12, 30, generator=_gen(10))
    U0 = principal_directions(W0, beta=0.5).U
    U1 = principal_directions(W1, beta=0.5).U

    cur = SphereProjection(0.8, beta=0.5, reference="current")
    torch.testing.assert_close(cur("w", 0, W0, delta), project_update(delta, U0, 0.8))
    torch.testing.assert_close(cur("w", 0, W1, delta), project_update(delta, U1, 0.8))

    pre = SphereProjection(0.8, beta=0.5, reference="pretrained")
    first = pre("w", 0, W0, delta)
    again = pre("w", 0, W1, delta)  # a changed reference is ignored: U comes from the first W₀
    torch.testing.assert_close(again, first)
    assert len(pre.last_stats) == 2 and pre.last_stats[0]["r"] == pre.last_stats[1]["r"]
    assert set(pre.last_stats[0]) >= {"name", "layer", "r", "energy", "delta_norm", "projected_norm"}
    assert len(pre.pop_stats()) == 2 and pre.last_stats == []

    # a resumed run restores W₀ and gives the same projection whatever reference it is shown
    resumed = SphereProjection(0.8, beta=0.5, reference="pretrained")
    resumed.load_state_dict(pre.state_dict())
    torch.testing.assert_close(resumed("w", 0, W1, delta), first)


def test_layer_filter_skips_other_layers() -> None:
    W = _low_energy_matrix(8, 20, seed=5)
    delta = torch.randn(8, 20, generator=_gen(11))
    t = SphereProjection(1.0, rank=2, layers=[4, 5])
    assert t("layer3", 3, W, delta) is delta
    assert t.last_stats == []
    assert not torch.allclose(t("layer4", 4, W, delta), delta)


def test_bf16_weights_and_float64_updates_keep_their_dtype() -> None:
    W = _low_energy_matrix(8, 20, seed=6).to(torch.bfloat16)
    delta = torch.randn(8, 20, generator=_gen(12), dtype=torch.float64)
    out = SphereProjection(0.5, beta=0.5)("w", 0, W, delta)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
