"""The de-quantized GGUF copy: written atomically, read back bit-identical, keyed by the file."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import tiny

from sphere.models import dequantized


def test_saved_copy_loads_back_identical(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = tiny("llama", layers=2, hidden=32, ff=64)
    dest = tmp_path / "models" / "m.float32.abc"
    dequantized.save(model, tok, dest)
    assert dequantized.is_complete(dest)
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    again = AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(dest)("Paris is").input_ids == tok("Paris is").input_ids


def test_key_follows_the_file_and_dtype(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    first = dequantized.cache_path(tmp_path, gguf, "float32")
    assert first == dequantized.cache_path(tmp_path, gguf, "float32")
    assert first != dequantized.cache_path(tmp_path, gguf, "bfloat16")
    st = gguf.stat()
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a re-assembled file
    assert first != dequantized.cache_path(tmp_path, gguf, "float32")


def test_an_interrupted_copy_is_not_used(tmp_path):
    half = tmp_path / "models" / "m.float32.abc"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")
    assert not dequantized.is_complete(half)


@pytest.mark.slow
def test_smollm2_copy_equals_the_gguf_load(tmp_path):
    """The real GGUF: the second load reads the cached copy and gets the same weights and tokens."""
    from sphere.models import load_model
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    cfg = validate(compose_config(["logger=none", "model=smollm2-135m", "model.device=cpu"])).model
    first, tok1 = load_model(cfg, tmp_path)
    (kept,) = (tmp_path / "models").iterdir()
    assert dequantized.is_complete(kept)
    second, tok2 = load_model(cfg, tmp_path)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    text = "The mother tongue of Danielle Darrieux is"
    assert tok1(text).input_ids == tok2(text).input_ids and tok2.padding_side == "right"
