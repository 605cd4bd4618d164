"""Shared fixtures and helpers: tiny random models built in-process from the configs'
architectures with the bundled real tokenizers, composed run settings, the save/restore of a
shared model's weights, and the test tiers.

Tiers: ``tests/unit`` (seconds each: math, parsers, configs, registries) and
``tests/integration`` (tiny-model edits, CLI runs) both run under ``make test``; ``slow``-marked
tests (minutes) under ``make test-slow``. Files under tests/integration are marked
``integration`` here, so ``pytest -m "not integration"`` is the unit tier alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def tiny(arch: str, *, layers: int = 4, hidden: int = 64, ff: int = 128, seed: int = 0, init: float = 0.06):
    """(model, tok) of a small random model; the same builder the ``tiny-*`` configs use."""
    from sphere.models import load_model
    from sphere.models.config import ModelConfig

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


ROOT = Path(__file__).resolve().parent.parent
DISTINCT8 = str(ROOT / "tests" / "assets" / "counterfact_distinct8.json")  # see tests/assets/README.md


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@contextlib.contextmanager
def restored(model: torch.nn.Module) -> Iterator[None]:
    """Undo every weight change made inside the block (tiny models are shared across tests)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(before[n])


def settings(*overrides: str, tmp: Path):
    """Validated settings of ``sphere-edit <overrides>`` with W&B off and a private cache."""
    from sphere.run.config import validate
    from sphere.run.schema import compose_config

    return validate(compose_config(["logger=none", f"run.cache_dir={tmp / 'cache'}", *overrides]))


@pytest.fixture(scope="session")
def config_tiny_llama():
    """The tiny-llama of configs/model/tiny-llama.yaml (6 layers, d_model 256, d_ff 512)."""
    from sphere.models import load_model

    return load_model(settings("model=tiny-llama", tmp=Path("/tmp")).model)
