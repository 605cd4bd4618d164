"""Gemma 2/3 normalise the MLP output before the residual add (ModelSpec.post_mlp_norm): the spec
names that module, and a tiny Gemma-3 shows why it matters to every editor here — scaling the edited
matrix W by any factor leaves the block's output unchanged, so "ΔW k is added to the residual" (the
editors' model of an edit) does not describe what an update does."""

from __future__ import annotations

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

from editors.core.model_spec import get_module, spec_for


def _tiny_gemma3() -> Gemma3ForCausalLM:
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=32, sliding_window=8,
        initializer_range=0.5,  # outputs far above the norm's ε, as in a trained model
    )  # fmt: skip
    return Gemma3ForCausalLM(cfg).eval()


def test_gemma3_names_its_post_mlp_norm_and_llama_has_none():
    model = _tiny_gemma3()
    spec = spec_for(model)
    assert spec.post_mlp_norm is not None
    for layer in range(2):
        assert isinstance(get_module(model, spec.post_mlp_norm.format(layer)), torch.nn.Module)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))  # fmt: skip
    assert spec_for(llama).post_mlp_norm is None


def test_through_the_norm_a_scaled_mlp_output_changes_nothing():
    model = _tiny_gemma3()
    spec = spec_for(model)
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids).logits
        W = get_module(model, spec.weight_module_name(0)).weight
        W.mul_(10.0)  # ΔW = 9 W: a large update along W's own rows
        after = model(ids).logits
    assert torch.allclose(before, after, atol=1e-4), "the post-MLP norm removes any rescaling of the output"


def test_through_post_norm_reaches_a_reachable_target_and_aims_at_any_other():
    from editors.core.post_norm import norm_gain, through_post_norm

    model = _tiny_gemma3()
    norm = get_module(model, spec_for(model).post_mlp_norm.format(0))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=g))  # a trained-like gain, signs included
        norm.weight[5] = -1.0  # and a zero gain (1 + w = 0), as Gemma-3-270M's layers 3 and 4 have
        torch.testing.assert_close(
            norm_gain(norm, 16, torch.zeros(1)), 1.0 + norm.weight, rtol=1e-5, atol=1e-6
        )
        x = 0.5 * torch.randn(3, 16, generator=g)  # rms(x)² ≫ the norm's ε, as in a trained model
        y = norm(x)
        r = norm(x + 0.3 * torch.randn(3, 16, generator=g)) - y  # reachable by construction
        dx = through_post_norm(norm, x, r)
        torch.testing.assert_close(norm(x + dx), y + r, rtol=1e-4, atol=1e-4)
        assert (dx.norm(dim=-1) < x.norm(dim=-1)).all()  # Δx on x's scale, not on the residual's
        assert not torch.allclose(norm(x + r), y + r, atol=1e-2)  # writing r itself misses it
        # An unreachable target (a residual-stream-sized r): the output is the nearest reachable
        # one, closer to y + r than any output of a nearby x, and closer than aiming at y + r.
        big = 50.0 * torch.randn(3, 16, generator=g)
        x_out = x + through_post_norm(norm, x, big)
        miss = (norm(x_out) - (y + big)).norm(dim=-1)
        gain = 1.0 + norm.weight
        aimed = norm(torch.where(gain != 0, (y + big) / gain.where(gain != 0, 1.0), 0.0))  # along y + r
        assert (miss < (aimed - (y + big)).norm(dim=-1) - 1e-3).all()
        for _ in range(50):
            nearby = norm(x_out + 1e-2 * x_out.norm(dim=-1, keepdim=True) * torch.randn(3, 16, generator=g))
            assert ((nearby - (y + big)).norm(dim=-1) >= miss - 1e-4).all()


def test_memit_family_spread_reaches_z_through_gemma3_norm(tmp_path, monkeypatch):
    """One edited layer and an interpolating solve: the block output at the fact token becomes z
    exactly with the map, and misses z without it (the old ΔW k-into-the-residual model)."""
    import dataclasses

    from helpers import tiny

    import editors.core.spread as spread
    from editors.core.keys import subject_outputs
    from editors.core.requests import EditRequest
    from editors.core.templates import ContextTemplates
    from editors.core.values import ValueOptions
    from editors.core.weights import read_weight, write_weight
    from sphere.models.config import CovarianceConfig
    from sphere.run.covariance import build_context

    model, tok = tiny("gemma3", layers=2, hidden=32, ff=64, init=0.5)
    spec = spec_for(model)
    reqs = [
        EditRequest(0, "The mother tongue of {} is", "Danielle Darrieux", "English"),
        EditRequest(1, "{} plays the", "Ray Charles", "guitar"),
    ]
    block, mlp_out = spec.block_name(1), spec.weight_module_name(1)
    h, x = (subject_outputs(model, tok, m, reqs) for m in (block, mlp_out))
    norm = get_module(model, spec.post_mlp_norm.format(1))
    with torch.no_grad():
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
        x_t = x + 0.1 * x.pow(2).mean(-1, keepdim=True).sqrt() * noise  # a 10 % change of x
        z = h + norm(x_t) - norm(x)
    monkeypatch.setattr(spread, "compute_target_values", lambda *a, **k: (z, h))

    def interpolate(layer, keys, resid):  # min-norm ΔW with ΔW k_i = r_i exactly
        k = keys.double()
        return (resid.double().T @ torch.linalg.solve(k @ k.T, k)).float()

    interpolate.wants_edited_keys = False  # type: ignore[attr-defined]
    values = ValueOptions(1, 0.1, 0.0, 4.0, 0.0)
    templates = ContextTemplates((("{}",),))
    W0 = read_weight(model, spec, 1).clone()
    reached = {}
    for mapped in (True, False):
        ctx = build_context(model, tok, spec if mapped else dataclasses.replace(spec, post_mlp_norm=None), "tiny",
                            covariance_cfg=CovarianceConfig(corpus="bundled", n_samples=4, max_length=16, batch_size=4),
                            cache_dir=tmp_path)  # fmt: skip
        delta = spread.spread_residual(
            ctx, reqs, templates, layers=[1], values=values, solve=interpolate, transforms=()
        )[1]
        write_weight(model, spec, 1, W0 + delta)
        reached[mapped] = subject_outputs(model, tok, block, reqs)
        write_weight(model, spec, 1, W0)
    err = lambda a: float((a - z).norm() / (z - h).norm())  # noqa: E731
    assert err(reached[True]) < 1e-3, err(reached[True])
    assert err(reached[False]) > 0.5, err(reached[False])
