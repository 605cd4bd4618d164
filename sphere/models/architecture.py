"""A model's architecture without its weights: the transformers config the loader would use, and the
model built from it on the ``meta`` device (every shape and the exact parameter count, no memory).

Where the config comes from, by ``model.source``:

* ``hf``: ``AutoConfig.from_pretrained(model.path)`` (a local directory or the Hugging Face cache,
  or the Hub when it is reachable); when that fails (offline, gated repository), the architecture
  hyperparameters bundled in ``sphere/models/arch/<name>.json`` for the configured models
  (LLaMA3-8B, Qwen2.5-7B), so a plan works on a machine that has never seen the model. For those
  (and whenever ``HF_HUB_OFFLINE`` is set) the Hub is never asked: the bundled file is the same
  architecture, and an unreachable Hub would cost ~25 s of retries.
* ``gguf``: the GGUF header (transformers reads the config from its metadata without
  de-quantizing anything). Parsing a header walks the whole tokenizer vocabulary (seconds), so the
  result is cached as JSON under ``run.cache_dir`` by file path, size and modification time.
* ``tiny``: the tiny config itself (``model.tiny``), with the bundled tokenizer's vocabulary size.

Used by ``sphere/run/plan.py``; nothing here reads or allocates weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sphere.errors import ConfigError
from sphere.files import atomic_write_text
from sphere.models.config import ModelConfig

log = logging.getLogger(__name__)

ARCH_DIR = Path(__file__).resolve().parent / "arch"
_PRIVATE = "_sphere_"  # keys of a bundled file that are ours, not the config's


@dataclass(frozen=True)
class Architecture:
    """A transformers config and where it came from.

    Attributes:
        config: the ``PretrainedConfig`` the loader would build the model from.
        source: one line for the plan, e.g. "Hugging Face cache" or "bundled sphere/models/arch/...".
        stored_dtype: the dtype the weights are stored in (config's ``torch_dtype``; None if unsaid),
            for the size of the files a download fetches and for ``model.dtype=auto``.
        file_bytes: the size of the model file already on disk (GGUF), else None.
    """

    config: Any
    source: str
    stored_dtype: str | None = None
    file_bytes: int | None = None


def load_architecture(cfg: ModelConfig, cache_dir: str | Path | None = None) -> Architecture:
    """The config ``load_model(cfg)`` would build its model from (see the module docstring).

    Raises:
        ConfigError: no config can be found (hf: neither reachable nor bundled).
    """
    if cfg.source == "tiny":
        return _tiny(cfg)
    if cfg.source == "gguf":
        return _gguf(cfg, cache_dir)
    return _hf(cfg)


def meta_model(arch: Architecture, *, trust_remote_code: bool = False) -> torch.nn.Module:
    """The model class of ``arch`` instantiated on the ``meta`` device: shapes, no storage."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(arch.config, trust_remote_code=trust_remote_code)


def bundled_architecture(cfg: ModelConfig) -> Path | None:
    """The bundled JSON for ``cfg``: named like the model config (``llama3-8b``) or listing its
    ``model.path`` among its Hub ids; None if there is none."""
    by_name = ARCH_DIR / f"{cfg.name}.json"
    if by_name.is_file():
        return by_name
    for f in sorted(ARCH_DIR.glob("*.json")):
        if cfg.path in json.loads(f.read_text()).get(f"{_PRIVATE}hub_ids", []):
            return f
    return None


def config_from_dict(values: dict[str, Any]) -> tuple[Any, str | None]:
    """(config, stored dtype) from a config.json-like dict (our private keys dropped)."""
    from transformers import AutoConfig

    values = {k: v for k, v in values.items() if not k.startswith(_PRIVATE)}
    stored = values.pop("torch_dtype", None) or values.pop("dtype", None)
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values), _dtype_name(stored)


def _dtype_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).removeprefix("torch.")


def _stored_dtype(config: Any) -> str | None:
    d = config.to_dict()
    return _dtype_name(d.get("dtype") or d.get("torch_dtype"))


def _hf(cfg: ModelConfig) -> Architecture:
    from transformers import AutoConfig

    bundled = bundled_architecture(cfg)
    # Without the Hub where it cannot help: the bundled config is this model's (or the Hub is
    # off), and asking an unreachable Hub costs ~25 s of retries for nothing.
    local_only = bundled is not None and _hub_not_needed(cfg, bundled)
    try:
        config = AutoConfig.from_pretrained(
            str(cfg.path),
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            local_files_only=local_only,
        )
    except Exception as e:  # noqa: BLE001 - offline, gated, missing: all mean "use the bundled one"
        if bundled is None:
            raise ConfigError(
                f"model.path={cfg.path!r}: its config cannot be read ({type(e).__name__}) and no "
                f"architecture is bundled for {cfg.name!r} in {ARCH_DIR}; download the model (or its "
                "config.json) first"
            ) from None
        config, stored = config_from_dict(json.loads(bundled.read_text()))
        hub = "the Hub is not asked for it" if local_only else f"the Hub is not reachable: {type(e).__name__}"
        why = f"{cfg.path}'s config.json is not cached and {hub}"
        return Architecture(config, f"bundled sphere/models/arch/{bundled.name} ({why})", stored)
    where = "local directory" if Path(str(cfg.path)).is_dir() else "Hugging Face cache or Hub"
    return Architecture(config, f"{cfg.path} ({where})", _stored_dtype(config))


def _hub_not_needed(cfg: ModelConfig, bundled: Path) -> bool:
    """Whether ``bundled`` answers for ``cfg`` without asking the Hub: the Hub is off
    (``HF_HUB_OFFLINE``), or ``model.path`` is one of the ids the file was written from (a
    revision pin does not change an architecture). The Hugging Face cache is still read first."""
    from huggingface_hub import is_offline_mode

    return is_offline_mode() or cfg.path in json.loads(bundled.read_text()).get(f"{_PRIVATE}hub_ids", [])


def _tiny(cfg: ModelConfig) -> Architecture:
    from sphere.models.loading import tiny_config, tiny_tokenizer_name
    from sphere.models.tokenizers import load_bundled_tokenizer

    name = tiny_tokenizer_name(cfg)
    config = tiny_config(cfg, len(load_bundled_tokenizer(name)))
    return Architecture(config, f"model.tiny with the bundled {name} tokenizer's vocabulary", "float32")


def _gguf(cfg: ModelConfig, cache_dir: str | Path | None) -> Architecture:
    from transformers import AutoConfig

    from sphere.models.loading import find_gguf

    path = find_gguf(cfg)
    st = path.stat()
    cached = None
    if cache_dir is not None:
        key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        cached = Path(cache_dir) / "gguf_configs" / f"{key}.json"
        if cached.is_file():
            try:
                config, _ = config_from_dict(json.loads(cached.read_text()))
                return Architecture(config, f"GGUF header of {path} (cached)", None, st.st_size)
            except (ValueError, KeyError) as e:
                log.warning("ignoring the unreadable cached GGUF config %s (%s)", cached, e)
    config = AutoConfig.from_pretrained(
        str(path.parent), gguf_file=path.name, trust_remote_code=cfg.trust_remote_code
    )
    if cached is not None:
        atomic_write_text(cached, json.dumps(config.to_dict(), default=str))
    return Architecture(config, f"GGUF header of {path}", None, st.st_size)
