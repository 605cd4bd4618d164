"""Shared fixtures and the test tiers; the helper functions and constants are in tests/helpers.py
(``from helpers import ...``; no test imports from this file).

Tiers: ``tests/unit`` (seconds each: math, parsers, configs, registries) and
``tests/integration`` (tiny-model edits, CLI runs) both run under ``make test``; ``slow``-marked
tests (minutes) under ``make test-slow``. Files under tests/integration are marked
``integration`` here, so ``pytest -m "not integration"`` is the unit tier alone. ``gpu``-marked
tests need a CUDA device: where none is visible they are skipped here (reported as skipped, not
deselected); ``make test-gpu`` (``pytest -m gpu``) runs them alone on a GPU machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from helpers import settings, tiny  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny("llama")


@pytest.fixture(scope="session")
def tiny_qwen2():
    return tiny("qwen2")


def pytest_collection_modifyitems(config, items):
    cuda: bool | None = None  # asked once, and only when a gpu test was collected
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="gpu: needs a CUDA device (none visible)"))


@pytest.fixture(scope="session")
def config_tiny_llama():
    """The tiny-llama of configs/model/tiny-llama.yaml (6 layers, d_model 256, d_ff 512)."""
    from sphere.models import load_model

    return load_model(settings("model=tiny-llama", tmp=Path("/tmp")).model)
