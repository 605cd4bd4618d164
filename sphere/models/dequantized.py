"""A de-quantized GGUF model kept as safetensors in the run cache, so only the first load pays for
the de-quantization.

transformers de-quantizes a GGUF tensor by tensor in Python (~20–40 s for SmolLM2-135M on 2 CPU
cores, and again in every job of a sweep); reading the same float weights back from safetensors
takes about a second. The copy is keyed by the GGUF's name, size and modification time, the dtype
and the transformers version (its GGUF conversion decides the weights and the config), written
atomically (a temporary directory renamed into place), and used only when complete.
``model.cache_dequantized=false`` turns it off (it costs the model's size on disk: 0.5 GB for
SmolLM2-135M, 1.1 GB for Gemma-3-270M in float32).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import transformers
from safetensors.torch import save_model

log = logging.getLogger(__name__)
COMPLETE = "complete"  # written last: a directory without it is a copy that was interrupted


def cache_path(cache_dir: str | Path, gguf: Path, dtype: str) -> Path:
    st = gguf.stat()
    blob = f"{gguf.name}|{st.st_size}|{st.st_mtime_ns}|{dtype}|transformers {transformers.__version__}"
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return Path(cache_dir) / "models" / f"{gguf.stem}.{dtype}.{key}"


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


def save(model, tok, path: Path) -> None:
    """Write ``model`` and ``tok`` to ``path`` as one atomic step (safetensors weights)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        # save_pretrained refuses a model transformers loaded from a GGUF (it is flagged quantized,
        # although its weights are plain floats): write the config without that flag and the
        # weights with safetensors (tied tensors once), which from_pretrained reads as any model.
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        (tmp / COMPLETE).write_text("ok\n")
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished first: its copy is as good as ours
            if not is_complete(path):
                raise
        log.info("de-quantized weights cached in %s (model.cache_dequantized=false turns this off)", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
