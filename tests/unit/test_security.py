"""Gates on the source: nothing unpickles untrusted files, remote code runs only when the user
sets it, and tensors are written as safetensors."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

SOURCES = sorted(p for d in ("sphere", "editors", "scripts") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize(
    "pattern,why",
    [
        (r"torch\.load\((?![^)]*weights_only=True)", "torch.load without weights_only=True unpickles code"),
        (r"allow_pickle\s*=\s*True", "numpy pickles can run code"),
        (r"\bpickle\.loads?\(", "pickle can run code"),
        (r"trust_remote_code\s*=\s*True", "remote code only when the user sets model.trust_remote_code"),
        (r"torch\.save\(", "checkpoints and caches are safetensors"),
        (r"(?<![.\w])(eval|exec)\(", "no evaluation of strings"),
    ],
)
def test_no_unsafe_call_in_the_sources(pattern, why):
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in SOURCES
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not hits, f"{why}: {hits}"


def test_trust_remote_code_defaults_off_and_is_passed_through():
    from sphere.models.config import ModelConfig

    assert ModelConfig.__dataclass_fields__["trust_remote_code"].default is False
    text = (ROOT / "sphere" / "models" / "loading.py").read_text()
    assert text.count("trust_remote_code=cfg.trust_remote_code") == 2  # GGUF and HF loads alike
