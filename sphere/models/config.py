"""The ``model`` config group: which model, how to load it, its edited layers and key statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sphere.method.projection import check_choice


@dataclass
class StatsConfig:
    """Key statistics C = E[k kᵀ]: corpus ('bundled', 'wikipedia', a text/jsonl path, or 'hf:name[:config]')."""

    corpus: str = "bundled"
    n_samples: int = 1000
    max_length: int = 256
    batch_size: int = 8
    dtype: str = "float32"
    precomputed: str | None = None

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"model.stats.n_samples={self.n_samples} must be >= 1")
        check_choice("model.stats.dtype", self.dtype, ("float32", "float64"))


@dataclass
class LayersConfig:
    """Edited layers: ``multi`` for MEMIT-family editors, ``single`` for ROME."""

    multi: list[int] = field(default_factory=lambda: [4, 5, 6, 7, 8])
    single: list[int] = field(default_factory=lambda: [5])


@dataclass
class ModelConfig:
    """Which model to load and how. ``source``: hf (hub id or local dir), gguf, tiny (random, from a config)."""

    name: str = "smollm2-135m"
    source: str = "gguf"
    path: str | None = None
    revision: str | None = None
    gguf_file: str | None = None
    gguf_package: str | None = None
    tokenizer: str | None = None
    arch: str | None = None
    tiny: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False
    layers: LayersConfig = field(default_factory=LayersConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)

    def __post_init__(self) -> None:
        check_choice("model.source", self.source, ("hf", "gguf", "tiny"))
        check_choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16", "auto"))
        if self.source == "tiny" and not self.arch:
            raise ValueError("model.arch must be set for model.source=tiny (llama, qwen2, gpt2, gemma3)")
        if self.source == "gguf" and not self.gguf_file:
            raise ValueError("model.gguf_file must name the .gguf file for model.source=gguf")
        if self.source == "hf" and not self.path:
            raise ValueError("model.path must be a Hugging Face id or a local directory for model.source=hf")
