"""Typed schemas for the Hydra config groups, validated once at start-up.

Hydra composes plain YAML; ``validate`` merges each group onto its dataclass (OmegaConf structured
configs reject unknown keys and wrong types) and runs the dataclasses' value checks, so a bad
value fails before any model is loaded, with a one-line message naming the key and the fix.
The editor group is validated against the chosen editor's own ``HParams`` dataclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from editors.core.model_spec import num_layers
from editors.core.weights import weight_param
from sphere.data.config import DatasetConfig
from sphere.errors import ConfigError, check_choice, warn_renamed
from sphere.evaluation.config import EvalConfig
from sphere.method.placement import SphereConfig, resolve_placement
from sphere.models.config import ModelConfig
from sphere.run.identity import RENAMED_KEYS, resume_mode


@dataclass
class LoggerConfig:
    """W&B (``mode`` auto: online with credentials, else offline) and the local files (always)."""

    wandb: bool = True
    mode: str = "auto"
    project: str = "sphere"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    # Also upload the edited layers at the end as a W&B artifact of type ``patch`` (sphere/export.py's
    # safetensors patch, written to <run dir>/patch.safetensors): MBs to GBs per run, hence off.
    log_patch: bool = False

    def __post_init__(self) -> None:
        check_choice("logger.mode", self.mode, ("auto", "online", "offline", "disabled"))


@dataclass
class RunConfig:
    """Top-level run settings."""

    seed: int = 0
    # auto | true | false: continue a run of the same configuration found in the run directory,
    # refuse one of another configuration, start over (sphere/run/identity.py has the policy).
    resume: str = "auto"
    checkpoint_every: int = 10
    checkpoint_minutes: float = 20.0
    forward_batch_size: int = 64
    cache_dir: str = ".cache/sphere"
    plots: bool = True
    on_nonfinite: str = "stop"
    keep_at: list[int] = field(default_factory=list)
    # Print the memory and disk this configuration needs, and whether it fits, then exit without
    # loading weights (sphere/run/plan.py); a real run checks the same plan at start-up unless
    # plan_check is false.
    plan: bool = False
    plan_check: bool = True
    # Load the model and run the editor's setup on it (the de-quantized GGUF and the layer statistics
    # land in cache_dir), then exit without editing or writing a run directory: on a login node with
    # internet before an offline GPU job, or in `make setup` so the demo starts warm.
    prepare: bool = False
    # A key of summary.json (e.g. score, efficacy) whose value the Hydra task returns: what a search
    # sweeper (hydra/sweeper=optuna) optimises. null: the task returns nothing.
    objective: str | None = None

    def __post_init__(self) -> None:
        self.resume = resume_mode(self.resume)  # true/false of older configs keep their meaning
        if any(n < 1 for n in self.keep_at):
            raise ValueError(f"run.keep_at={self.keep_at} must hold numbers of edits >= 1")
        check_choice("run.on_nonfinite", self.on_nonfinite, ("stop", "skip"))
        if self.checkpoint_every < 0:
            raise ValueError(
                f"run.checkpoint_every={self.checkpoint_every} must be >= 0 (0: only at the end)"
            )
        if self.checkpoint_minutes < 0:
            raise ValueError(
                f"run.checkpoint_minutes={self.checkpoint_minutes} must be >= 0 (0: by batch count only)"
            )


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
    """``node`` merged onto ``cls`` and built (running its checks); errors name ``key``."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), node if node is not None else {})
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad value in {key}: {msg}") from None
    except (ValueError, TypeError) as e:
        msg = str(e)
        # Editors name their own fields ("layers=[...] must ..."); the config calls them editor.layers.
        raise ConfigError(msg if msg.startswith(f"{key}.") or key != "editor" else f"editor.{msg}") from None


def upgrade_renamed_keys(cfg: DictConfig) -> None:
    """Move what an old key (``RENAMED_KEYS``: ``model.stats`` → ``model.covariance``) sets to its
    new name, in place, and drop the old key, so that config.yaml, W&B and the run's identity hold
    the new name only. A key set under its old name (``model.stats.n_samples=1000`` on the command
    line, a ``stats:`` block in a model file) is said once, in one line naming the new key; the
    composed config holds the old keys null (``sphere.run.compose.model_schema``), dropped silently."""
    import difflib

    for old, new in RENAMED_KEYS.items():
        parent_key, _, leaf = old.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            continue
        value = parent.get(leaf)
        with open_dict(parent):
            parent.pop(leaf)
        given = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
        if given is None:
            continue
        if not isinstance(given, dict):
            raise ConfigError(f"{old}={given!r}: {old} is now {new}, a group of keys ({new}.<key>=...)")
        items = {str(k): v for k, v in given.items() if v is not None}  # None: the schema's unset keys
        if not items:
            continue
        target = OmegaConf.select(cfg, new)
        known = [str(k) for k in target] if isinstance(target, DictConfig) else []
        for key, v in items.items():
            if known and key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {new}.{close[0]}?)" if close else ""
                raise ConfigError(f"{old}.{key}: no such key in {new}{hint}; its keys: {', '.join(known)}")
            try:
                with open_dict(cfg):
                    OmegaConf.update(cfg, f"{new}.{key}", v, merge=True)
            except OmegaConfBaseException as e:
                raise ConfigError(f"bad value in {new}.{key}: {str(e).splitlines()[0]}") from None
        shown = ", ".join(f"{new}.{k}={v}" for k, v in items.items())
        warn_renamed(f"{old} is renamed {new}: read as {shown}; {old} goes in the next release")


def validate(cfg: DictConfig) -> Settings:
    """Check the whole composed config and return typed settings (raises ConfigError). Keys set
    under an old name are moved to the new one in ``cfg`` first (``upgrade_renamed_keys``)."""
    from editors import get_editor
    from sphere.evaluation.registry import get_evaluator

    upgrade_renamed_keys(cfg)

    editor_node = OmegaConf.to_container(cfg.editor, resolve=True)
    assert isinstance(editor_node, dict)
    editor_name = editor_node.pop("name", None)
    if editor_name is None:
        raise ConfigError("editor.name is missing; pick an editor with editor=<name>")
    try:
        entry = get_editor(editor_name)
    except KeyError as e:
        raise ConfigError(str(e)) from None
    s = Settings(
        model=_structured(ModelConfig, cfg.model, "model"),
        editor_name=editor_name,
        editor=_structured(entry.hparams, editor_node, "editor"),
        sphere=_structured(SphereConfig, cfg.sphere, "sphere"),
        dataset=_structured(DatasetConfig, cfg.dataset, "dataset"),
        eval=_structured(EvalConfig, cfg.eval, "eval"),
        logger=_structured(LoggerConfig, cfg.logger, "logger"),
        run=_structured(RunConfig, cfg.run, "run"),
    )
    for name in s.eval.evaluators:
        try:
            get_evaluator(name)
        except KeyError as e:
            raise ConfigError(f"eval.evaluators: {e.args[0]}") from None
    if s.sphere.enabled:
        try:
            resolve_placement(s.sphere, entry.placement(s.editor), editor_name)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return s


def check_against_model(s: Settings, model, spec, layers: Sequence[int]) -> None:
    """Settings that only the loaded model can refute, refused before anything is edited."""
    n = num_layers(model)
    if any(not 0 <= layer < n for layer in layers):
        raise ConfigError(
            f"editor.layers={list(layers)} but {s.model.name} has {n} layers (0..{n - 1}); "
            "fix model.layers.multi / model.layers.single or editor.layers"
        )
    if not s.sphere.enabled:
        return
    if s.sphere.layers is not None and not set(s.sphere.layers) <= set(layers):
        raise ConfigError(
            f"sphere.layers={s.sphere.layers} includes layers the editor does not edit ({list(layers)}); "
            "SPHERE would never act there"
        )
    for layer in layers:
        m, c = weight_param(model, spec, layer).shape
        bound = min(m, c)
        if s.sphere.rank is not None and s.sphere.rank > bound:
            raise ConfigError(
                f"sphere.rank={s.sphere.rank} exceeds min(rows, columns) = {bound} of "
                f"{spec.weight_name(layer)} ({m}×{c}); use sphere.rank <= {bound} or sphere.beta"
            )
