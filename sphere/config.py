"""Typed schemas for the Hydra config groups, validated once at start-up.

Hydra composes plain YAML; ``validate`` merges each group onto its dataclass (OmegaConf structured
configs reject unknown keys and wrong types) and runs the dataclasses' value checks, so a bad
value fails before any model is loaded, with a one-line message naming the key and the fix.
The editor group is validated against the chosen editor's own ``HParams`` dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what is allowed."""


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


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
            raise ConfigError(f"model.stats.n_samples={self.n_samples} must be >= 1")
        _choice("model.stats.dtype", self.dtype, ("float32", "float64"))


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
        _choice("model.source", self.source, ("hf", "gguf", "tiny"))
        _choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16", "auto"))
        if self.source == "tiny" and not self.arch:
            raise ConfigError("model.arch must be set for model.source=tiny (llama, qwen2, gpt2, gemma3)")
        if self.source == "gguf" and not self.gguf_file:
            raise ConfigError("model.gguf_file must name the .gguf file for model.source=gguf")
        if self.source == "hf" and not self.path:
            raise ConfigError("model.path must be a Hugging Face id or a local directory for model.source=hf")


@dataclass
class SphereConfig:
    """SPHERE: project ΔW away from the top principal directions of W, ΔW ← ΔW(I − αUUᵀ).

    ``beta`` picks r by cumulative energy (the paper's default); ``rank`` sets r directly and wins
    when given. ``reference``/``point`` ``auto`` follow the reference code for the chosen editor.
    """

    enabled: bool = False
    alpha: float = 0.8
    beta: float | None = 0.5
    rank: int | None = None
    reference: str = "auto"
    point: str = "auto"
    layers: list[int] | None = None
    method: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"sphere.alpha={self.alpha} is outside [0, 1]; use 0 (no projection) up to 1 "
                "(remove the principal directions entirely)"
            )
        if self.rank is None and (self.beta is None or not 0.0 < self.beta < 1.0):
            raise ConfigError(
                f"sphere.beta={self.beta} must be in (0, 1) (cumulative energy), or set sphere.rank"
            )
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"sphere.rank={self.rank} must be >= 1 (or null to choose r by sphere.beta)")
        _choice("sphere.reference", self.reference, ("auto", "current", "pretrained"))
        _choice("sphere.point", self.point, ("auto", "layer", "step", "readout"))
        _choice("sphere.method", self.method, ("auto", "gram", "naive"))


@dataclass
class DatasetConfig:
    """Edit stream: records from ``path`` (a bundled name or a file), ``limit`` records in batches."""

    kind: str = "counterfact"
    path: str = "counterfact-sample"
    limit: int | None = 10
    batch_size: int = 5
    shuffle: bool = False
    skip_malformed: bool = False
    zsre_target: str = "answers"

    def __post_init__(self) -> None:
        _choice("dataset.kind", self.kind, ("counterfact", "zsre"))
        _choice("dataset.zsre_target", self.zsre_target, ("answers", "alt"))
        if self.batch_size < 1:
            raise ConfigError(f"dataset.batch_size={self.batch_size} must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"dataset.limit={self.limit} must be >= 1 or null (all records)")


@dataclass
class HEConfig:
    """Hyperspherical energy Σ_{i≠j} (‖x̂_i − x̂_j‖² + eps)^(−power) of each edited matrix."""

    power: float = 1.0
    eps: float = 1e-4
    block_size: int = 1024
    normalized: bool = True


@dataclass
class EvalConfig:
    """When and how edit quality is measured.

    ``protocol``: ``edited_so_far`` evaluates every record edited so far at each evaluation point
    (the paper's checkpoint evaluation; the final numbers cover all edits on the final model);
    ``last_batch`` evaluates each batch right after editing it and reports the mean of those
    immediate results (much higher numbers under forgetting: never compare the two).
    """

    protocol: str = "edited_so_far"
    every: int = 0
    pre: bool = True
    batch_size: int = 32
    he: HEConfig = field(default_factory=HEConfig)

    def __post_init__(self) -> None:
        _choice("eval.protocol", self.protocol, ("edited_so_far", "last_batch"))
        if self.every < 0:
            raise ConfigError(f"eval.every={self.every} must be >= 0 (0: evaluate only at the end)")


@dataclass
class LoggerConfig:
    """W&B (``mode`` auto: online with credentials, else offline) and the local files (always)."""

    wandb: bool = True
    mode: str = "auto"
    project: str = "sphere"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _choice("logger.mode", self.mode, ("auto", "online", "offline", "disabled"))


@dataclass
class RunConfig:
    """Top-level run settings."""

    seed: int = 0
    resume: bool = False
    checkpoint_every: int = 1
    forward_batch_size: int = 64
    cache_dir: str = ".cache/sphere"
    plots: bool = True


@dataclass
class Settings:
    """The validated configuration of one run; ``editor`` is the editor's own HParams object."""

    model: ModelConfig
    editor_name: str
    editor: Any
    sphere: SphereConfig
    dataset: DatasetConfig
    eval: EvalConfig
    logger: LoggerConfig
    run: RunConfig


def _structured(cls: type, node: Any, key: str):
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), node if node is not None else {})
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad value in {key}: {msg}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def validate(cfg: DictConfig) -> Settings:
    """Check the whole composed config and return typed settings (raises ConfigError)."""
    from editors import get_editor

    editor_node = OmegaConf.to_container(cfg.editor, resolve=True)
    assert isinstance(editor_node, dict)
    editor_name = editor_node.pop("name", None)
    if editor_name is None:
        raise ConfigError("editor.name is missing; pick an editor with editor=<name>")
    try:
        editor_cls = get_editor(editor_name)
    except KeyError as e:
        raise ConfigError(str(e)) from None
    return Settings(
        model=_structured(ModelConfig, cfg.model, "model"),
        editor_name=editor_name,
        editor=_structured(editor_cls.HParams, editor_node, "editor"),
        sphere=_structured(SphereConfig, cfg.sphere, "sphere"),
        dataset=_structured(DatasetConfig, cfg.dataset, "dataset"),
        eval=_structured(EvalConfig, cfg.eval, "eval"),
        logger=_structured(LoggerConfig, cfg.logger, "logger"),
        run=_structured(RunConfig, cfg.run, "run"),
    )
