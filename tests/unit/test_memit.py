"""MEMIT: the closed form solves its regularised least squares; the editor restores the model
between layers and writes exactly the committed update; key statistics are cached correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_psd, restored

from editors.alphaedit import AlphaEditHParams
from editors.core.covariance import CovarianceOptions, weights_digest
from editors.core.model_spec import spec_for
from editors.core.requests import EditRequest
from editors.core.solvers import memit_delta
from editors.core.weights import read_weight
from editors.memit import MEMITHParams, MemitSolve, memit
from sphere.data.corpus import corpus_texts
from sphere.models.config import CovarianceConfig
from sphere.run.covariance import CovarianceCache, build_context


def test_memit_delta_solves_regularised_least_squares():
    g = torch.Generator().manual_seed(0)
    d_ff, d_model, n, lam = 24, 10, 5, 3.0
    K = torch.randn(n, d_ff, generator=g, dtype=torch.float64)
    R = torch.randn(n, d_model, generator=g, dtype=torch.float64)
    C = random_psd(d_ff, seed=1)
    delta = memit_delta(K, R, C, lam).double()
    # Stacked least squares: min ‖Δ [Kᵀ, √λ L]‖ − [Rᵀ, 0]‖² with C = L Lᵀ.
    L = torch.linalg.cholesky(C)
    A = torch.cat([K.T, lam**0.5 * L], dim=1)  # (d_ff, n + d_ff)
    B = torch.cat([R.T, torch.zeros(d_model, d_ff, dtype=torch.float64)], dim=1)
    expected = torch.linalg.lstsq(A.T, B.T).solution.T
    torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)
    # And the normal equations hold: Δ(KᵀK + λC) = RᵀK.
    torch.testing.assert_close(delta @ (K.T @ K + lam * C), R.T @ K, rtol=1e-4, atol=1e-5)


def test_memit_delta_with_lambda_zero_interpolates():
    g = torch.Generator().manual_seed(1)
    K = torch.randn(3, 16, generator=g, dtype=torch.float64)
    R = torch.randn(3, 8, generator=g, dtype=torch.float64)
    delta = memit_delta(K, R, torch.eye(16, dtype=torch.float64), 1e-9).double()
    torch.testing.assert_close(delta @ K.T, R.T, rtol=1e-5, atol=1e-5)  # (W+Δ)k_i hits its target


def test_memit_delta_past_term_solves_the_stacked_least_squares():
    """μC_past adds the rows √μ K_pastᵀ with target 0: earlier edits' outputs are held in place."""
    g = torch.Generator().manual_seed(2)
    d_ff, d_model, n, n_past, lam, mu = 24, 10, 4, 6, 2.0, 0.7
    K = torch.randn(n, d_ff, generator=g, dtype=torch.float64)
    R = torch.randn(n, d_model, generator=g, dtype=torch.float64)
    K_past = torch.randn(n_past, d_ff, generator=g, dtype=torch.float64)
    C = random_psd(d_ff, seed=3)
    delta = memit_delta(K, R, C, lam, C_past=K_past.T @ K_past, past_weight=mu).double()
    L = torch.linalg.cholesky(C)
    A = torch.cat([K.T, lam**0.5 * L, mu**0.5 * K_past.T], dim=1)
    B = torch.cat([R.T, torch.zeros(d_model, d_ff + n_past, dtype=torch.float64)], dim=1)
    expected = torch.linalg.lstsq(A.T, B.T).solution.T
    torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)
    # μ = 0 (or no C_past) is the reference's solve, bit for bit.
    torch.testing.assert_close(
        memit_delta(K, R, C, lam, C_past=K_past.T @ K_past, past_weight=0.0),
        memit_delta(K, R, C, lam),
        rtol=0,
        atol=0,
    )


def test_memit_solve_remembers_keys_and_holds_earlier_edits():
    g = torch.Generator().manual_seed(4)
    d_ff, d_model = 32, 12
    K1, K2 = (torch.randn(5, d_ff, generator=g) for _ in range(2))
    R2 = torch.randn(5, d_model, generator=g)
    C = random_psd(d_ff, seed=5).float()

    def second_update(mu: float) -> tuple[torch.Tensor, MemitSolve]:
        solve = MemitSolve(lam=1.0, dtype=torch.float64, past_weight=mu)
        solve.cov = {3: C}
        if solve.wants_edited_keys:
            solve.past.ensure(3, like=C)
            solve.remember({3: K1})
        return solve(3, K2, R2), solve

    free, ref_solve = second_update(0.0)
    held, solve = second_update(1e4)
    assert not ref_solve.wants_edited_keys and ref_solve.state_dict() == {}
    # The reference moves the first batch's outputs; a heavy past term keeps them (almost) in place.
    assert (held @ K1.T).norm() < 1e-2 * (free @ K1.T).norm()
    torch.testing.assert_close(held @ K2.T, R2.T, rtol=0.05, atol=0.05)  # while the batch still lands
    # The remembered sum survives a restart.
    fresh = MemitSolve(lam=1.0, dtype=torch.float64, past_weight=1e4)
    fresh.load_state_dict(solve.state_dict())
    torch.testing.assert_close(fresh.past[3], K1.T @ K1)


def test_past_edit_weight_is_checked():
    with pytest.raises(ValueError, match="past_edit_weight=-1"):
        MEMITHParams(past_edit_weight=-1)
    with pytest.raises(ValueError, match="AlphaEdit always solves with its past keys"):
        AlphaEditHParams(past_edit_weight=1.0)


def _ctx(model, tok, tmp_path, transforms=()):
    stats = CovarianceConfig(corpus="bundled", n_samples=40, max_length=32, batch_size=20)
    return build_context(
        model, tok, spec_for(model), "tiny", covariance_cfg=stats, cache_dir=tmp_path, transforms=transforms
    )


def test_memit_editor_updates_only_edited_layers(tiny_llama, tmp_path):
    model, tok = tiny_llama
    spec = spec_for(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hp = MEMITHParams(layers=[1, 2], v_num_grad_steps=3, mom2_update_weight=1.0, clamp_norm_factor=4)
    editor = memit(hp, _ctx(model, tok, tmp_path))
    reqs = [EditRequest(0, "The mother tongue of {} is", "Danielle Darrieux", "English")]
    with restored(model):
        updates = editor.apply(reqs)
        assert [u.layer for u in updates] == [1, 2]
        for n, p in model.named_parameters():
            edited = any(n == spec.weight_name(u.layer) for u in updates)
            changed = not torch.equal(p, before[n])
            assert changed == edited, n
        for u in updates:
            torch.testing.assert_close(
                read_weight(model, spec, u.layer), before[spec.weight_name(u.layer)] + u.delta
            )


def test_covariance_cache_reuses_disk_and_loads_reference_npz(tiny_llama, tmp_path):
    model, tok = tiny_llama
    spec = spec_for(model)
    opts = CovarianceOptions(corpus="bundled", n_samples=20, max_length=32, batch_size=10)
    digest = weights_digest(model, spec, range(4))
    calls = []

    def texts():
        calls.append(1)
        return corpus_texts("bundled")

    first = CovarianceCache(tmp_path).get(model, tok, spec, [1, 2], opts, "tiny", texts, digest)
    again = CovarianceCache(tmp_path).get(model, tok, spec, [1, 2], opts, "tiny", texts, digest)
    assert len(calls) == 1  # one pass for both layers, then read from disk
    for layer in (1, 2):
        torch.testing.assert_close(first[layer], again[layer])
        c = first[layer]
        assert c.shape == (128, 128) and torch.allclose(c, c.T)
        assert torch.linalg.eigvalsh(c.double()).min() > -1e-6  # PSD
    # A different sample count is a different cache entry.
    CovarianceCache(tmp_path).get(
        model, tok, spec, [1], CovarianceOptions("bundled", 10, 32, 10), "tiny", texts, digest
    )
    assert len(calls) == 2
    # Reference-format statistics (running sum + count, "mom2." prefix) load as sum / count.
    ref = tmp_path / "ref"
    ref.mkdir()
    total = np.eye(128, dtype=np.float32) * 6.0
    np.savez(
        ref / f"{spec.weight_module_name(1)}_float32_mom2_20.npz", **{"mom2.mom2": total, "mom2.count": 3}
    )
    loaded = CovarianceCache(None, precomputed=str(ref)).get(
        model, tok, spec, [1], opts, "tiny", texts, digest
    )
    torch.testing.assert_close(loaded[1], torch.eye(128) * 2.0)


def test_nullspace_trace_rule_bounds_the_preserved_key_energy():
    """trace rule: the smallest eigen-directions holding ≤ f of tr(C), so tr(PC) ≤ f·tr(C); absolute:
    the reference's eigenvalue cut."""
    from editors.core.solvers import nullspace_mask, nullspace_projector

    evals = torch.tensor([1.0, 2.0, 3.0, 94.0])
    assert nullspace_mask(evals, 0.03, "trace").tolist() == [True, True, False, False]
    assert nullspace_mask(evals, 2.5, "absolute").tolist() == [True, True, False, False]
    C = random_psd(40, seed=3, dtype=torch.float32)
    for f in (0.01, 0.1, 0.5):
        P = nullspace_projector(C, f, "trace").double()
        share = float(torch.trace(P @ C.double()) / torch.trace(C.double()))
        assert 0 < share <= f + 1e-6
        assert torch.allclose(P @ P, P, atol=1e-5)  # an orthogonal projector
    # A larger fraction never shrinks the null space.
    dims = [int(torch.trace(nullspace_projector(C, f, "trace")).round()) for f in (0.01, 0.1, 0.5)]
    assert dims == sorted(dims) and dims[0] < dims[-1]


def test_nullspace_rule_is_checked():
    import pytest

    from editors.alphaedit import AlphaEditHParams

    with pytest.raises(ValueError, match="nullspace_rule"):
        AlphaEditHParams(nullspace_rule="relative")
    with pytest.raises(ValueError, match="fraction of tr"):
        AlphaEditHParams(nullspace_rule="trace", nullspace_threshold=2.0)
