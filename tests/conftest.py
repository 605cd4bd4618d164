"""Shared fixtures: tiny random models built in-process from the configs' architectures, with the
bundled real tokenizers, and a covariance provider computed on the bundled corpus."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def tiny(arch: str, *, layers: int = 4, hidden: int = 64, ff: int = 128, seed: int = 0, init: float = 0.06):
    """(model, tok) of a small random model; the same builder the ``tiny-*`` configs use."""
    from sphere.config import ModelConfig
    from sphere.models import load_model

    tiny_cfg = dict(
        seed=seed,
        num_hidden_layers=layers,
        max_position_embeddings=256,
        initializer_range=init,
    )
    if arch == "gpt2":
        tiny_cfg.update(n_embd=hidden, n_inner=ff, n_head=4, n_layer=layers, n_positions=256)
        tiny_cfg.pop("num_hidden_layers")
        tiny_cfg.pop("max_position_embeddings")
    else:
        tiny_cfg.update(
            hidden_size=hidden,
            intermediate_size=ff,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
    cfg = ModelConfig(name=f"tiny-{arch}", source="tiny", arch=arch, tiny=tiny_cfg, device="cpu")
    return load_model(cfg)


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny("llama")


@pytest.fixture(scope="session")
def tiny_qwen2():
    return tiny("qwen2")


def random_psd(d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, 2 * d, generator=g, dtype=dtype)
    return a @ a.T / (2 * d)
