"""Real tokenizers shipped with the repo (``data/tokenizers``), for tiny test models and offline use.

The files are gzip-compressed to keep the checkout small; they are unpacked once into a cache
directory named by the content hash, so concurrent runs never see a half-written file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from sphere.paths import bundled_data_dir

BUNDLED_DIR = bundled_data_dir() / "tokenizers"
BUNDLED = ("llama3", "qwen2", "gpt2")


def cache_root() -> Path:
    """Where unpacked assets live: ``$SPHERE_CACHE`` or ``~/.cache/sphere``."""
    return Path(os.environ.get("SPHERE_CACHE", Path.home() / ".cache" / "sphere"))


def bundled_tokenizer_dir(name: str) -> Path:
    """Unpack bundled tokenizer ``name`` (llama3, qwen2, gpt2) and return a directory HF can load."""
    src = BUNDLED_DIR / name
    if name not in BUNDLED or not src.is_dir():
        raise ValueError(f"unknown bundled tokenizer {name!r}; choose one of {', '.join(BUNDLED)}")
    digest = hashlib.sha256()
    for f in sorted(src.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    dst = cache_root() / "tokenizers" / f"{name}-{digest.hexdigest()[:12]}"
    if (dst / "tokenizer.json").exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{name}-"))
    for f in src.iterdir():
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as fin, open(tmp / f.stem, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copy(f, tmp / f.name)
    try:
        tmp.rename(dst)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def load_bundled_tokenizer(name: str):
    """An ``AutoTokenizer`` for a bundled tokenizer, right-padded, with a pad token set."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_tokenizer_dir(name))
    return prepare_tokenizer(tok)


def prepare_tokenizer(tok):
    """Set what every editor relies on: right padding and a pad token (eos, as the reference does)."""
    tok.padding_side = "right"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
