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
