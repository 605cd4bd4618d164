"""Theorem 1's terms (sphere/method/bound.py) against plain loops and autograd."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sphere.method.bound import bound_reference, check_bound, he_constant


def _unit(W: torch.Tensor) -> torch.Tensor:
    return W.double() / W.double().norm(dim=1, keepdim=True)


def _he(X: torch.Tensor) -> torch.Tensor:
    m = X.shape[0]
    return sum((X[i] - X[j]).norm() ** -1 for i, j in itertools.permutations(range(m), 2))


def test_constant_matches_the_formula_and_autograd():
    W0 = torch.randn(9, 6, generator=torch.Generator().manual_seed(0))
    X = _unit(W0)
    m = X.shape[0]
    K_loop = 4 * math.sqrt(
        sum(sum(float((X[k] - X[j]).norm()) ** -3 for j in range(m) if j != k) ** 2 for k in range(m))
    )
    Xg = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_he(Xg), Xg)
    K, grad_norm, tangent = he_constant(W0)
    assert pytest.approx(K_loop, rel=1e-12) == K
    assert grad_norm == pytest.approx(float(grad.norm()), rel=1e-10)
    assert grad_norm <= K  # the inequality the theorem's proof rests on
    assert he_constant(W0, block_size=2) == pytest.approx((K, grad_norm, tangent), rel=1e-12)
    # the gradient on the sphere = autograd through the row normalisation (whose Jacobian at unit
    # rows is the tangent projector)
    Xn = X.clone().requires_grad_(True)
    (g_s,) = torch.autograd.grad(_he(Xn / Xn.norm(dim=1, keepdim=True)), Xn)
    assert tangent == pytest.approx(float(g_s.norm()), rel=1e-10) and tangent < grad_norm


def test_energy_is_the_theorems_inverse_distance_sum():
    """K is built from ‖·‖⁻³, the gradient of Σ‖ŵ_i − ŵ_j‖⁻¹, so ΔHE must be that energy's change."""
    g = torch.Generator().manual_seed(6)
    W0, W = (
        torch.randn(9, 6, generator=g, dtype=torch.float64),
        torch.randn(9, 6, generator=g, dtype=torch.float64),
    )
    c = check_bound(W0, W)
    assert c.he0 == pytest.approx(float(_he(_unit(W0))), rel=1e-12)
    assert c.he == pytest.approx(float(_he(_unit(W))), rel=1e-12)


def test_small_updates_satisfy_the_bound_and_large_ones_are_reported_honestly():
    g = torch.Generator().manual_seed(1)
    W0 = _unit(torch.randn(16, 10, generator=g)).float()  # unit neurons: ΔŴ ≈ ΔW to first order
    for scale in (1e-4, 1e-3, 1e-2):
        c = check_bound(W0, W0 + scale * torch.randn(16, 10, generator=g))
        assert c.holds and c.holds_unit
        assert c.bound > 0 and c.slack >= 1
        # ΔŴ is ΔW less its radial part (1/10 of a random update's energy here, to first order)
        assert 0.7 * c.dW_sq < c.dW_unit_sq < 1.01 * c.dW_sq
        # the slack splits exactly into row norms × the constant's looseness × 1/alignment²
        split = (c.dW_sq / c.dW_unit_sq) * (c.K / c.grad_norm) ** 2 / c.alignment**2
        assert split == pytest.approx(c.slack, rel=1e-9) and 0 < c.alignment <= 1.01
        # the sphere's gradient gives a sharper bound that still holds for small moves
        assert c.bound < c.tangent_bound <= c.dW_unit_sq
    # the untouched matrix: no HE change, a bound of 0 that any |ΔV| meets
    same = check_bound(W0, W0.clone())
    assert same.d_he == 0 and same.bound == 0 and same.holds and same.slack == math.inf
    d = same.as_dict()
    assert {"K", "bound", "holds", "holds_unit", "slack", "d_he"} <= d.keys()


def test_rescaled_neurons_change_the_update_but_not_the_energy():
    """Only directions enter HE: doubling every row is a large ΔW with ΔHE = 0 (the theorem's
    bound stays 0), and ΔŴ = 0."""
    W0 = torch.randn(7, 5, generator=torch.Generator().manual_seed(2))
    c = check_bound(W0, 2 * W0)
    assert c.d_he == pytest.approx(0, abs=1e-9 * c.he0)
    assert c.dW_sq == pytest.approx(float((W0.double() ** 2).sum()))
    assert c.dW_unit_sq == pytest.approx(0, abs=1e-20)


def test_shape_mismatch_is_one_clear_error():
    with pytest.raises(ValueError, match="one shape"):
        check_bound(torch.zeros(3, 4), torch.zeros(4, 3))


def test_script_evaluates_every_kept_point_of_a_run(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    from sphere.run.saved import save_kept

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("kept_weights", root / "scripts" / "kept_weights.py")
    assert spec is not None and spec.loader is not None
    kept_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kept_weights)

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("editor: {name: memit}\n")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "summary.json").write_text(
        json.dumps({"editor": "memit", "sphere": {"enabled": False}, "seed": 0})
    )
    g = torch.Generator().manual_seed(3)
    W0 = {4: torch.randn(8, 6, generator=g), 5: torch.randn(8, 6, generator=g)}
    names = {4: "l4", 5: "l5"}
    save_kept(run, 0, W0, names)
    for n in (10, 20):
        save_kept(run, n, {k: w + 1e-3 * n * torch.randn(8, 6, generator=g) for k, w in W0.items()}, names)
    out = tmp_path / "bound.json"
    assert kept_weights.main([str(tmp_path), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["n_edits"], r["layer"]) for r in rows] == [(10, 4), (10, 5), (20, 4), (20, 5)]
    assert rows[1]["K"] == pytest.approx(he_constant(W0[5])[0])
    assert all(0 <= r["span_share"] <= 1 and 0 < r["random_share"] <= 1 for r in rows)
    assert "holds for 4 of 4" in capsys.readouterr().out


def test_a_shared_reference_gives_the_same_check():
    """kept_weights.py computes W₀'s terms once per layer; every point's check must be unchanged."""
    g = torch.Generator().manual_seed(7)
    W0 = torch.randn(12, 8, generator=g, dtype=torch.float64)
    ref = bound_reference(W0)
    for scale in (1e-3, 1e-1):
        W = W0 + scale * torch.randn(12, 8, generator=g, dtype=torch.float64)
        assert check_bound(W0, W, reference=ref) == check_bound(W0, W)  # the same numbers, bit for bit
