"""Composing the config Hydra runs: the config directory (``CONFIG_DIR``), the config groups'
dataclasses registered with Hydra's ConfigStore (``register_schemas``), and ``compose_config``,
the config ``sphere-edit <overrides>`` would run. With the schemas registered the YAML files hold
only what differs from the defaults, and every key exists (and is type-checked) when Hydra composes;
``sphere.run.config.validate`` then checks the values.

Each YAML file of a group starts with ``defaults: [base_<group>, _self_]``; an editor's file with
``base_<editor>`` (the editor's hyperparameter dataclass plus its ``name``), so a new editor file
gets its schema from its registration alone.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import field, fields, make_dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from editors import available_editors, get_editor
from sphere.data.config import DatasetConfig
from sphere.evaluation.config import EvalConfig
from sphere.method.placement import SphereConfig
from sphere.models.config import CovarianceConfig, ModelConfig
from sphere.paths import config_dir
from sphere.run.config import LoggerConfig, RunConfig

CONFIG_DIR = str(config_dir())  # configs/ of a checkout or sphere/_configs of a wheel (sphere/paths.py)


def editor_schema(name: str) -> type:
    """The editor's hyperparameter dataclass plus the ``name`` key its YAML file carries."""
    hp = get_editor(name).hparams
    return make_dataclass(f"{hp.__name__}Config", [("name", str, field(default=name))], bases=(hp,))


def model_schema() -> type:
    """``ModelConfig`` plus ``stats``, ``model.covariance``'s old name (``RENAMED_KEYS``): the same
    keys, each null unless set. Hydra then accepts (and type-checks) ``model.stats.n_samples=1000``
    and a model file's ``stats:`` block, and ``validate`` moves what they set to ``model.covariance``
    with a warning. Read until the next release."""
    hints = typing.get_type_hints(CovarianceConfig)
    legacy = make_dataclass(
        "LegacyStatsConfig",
        [(f.name, hints[f.name] | None, field(default=None)) for f in fields(CovarianceConfig)],
    )
    return make_dataclass(
        "ModelConfigSchema", [("stats", legacy, field(default_factory=legacy))], bases=(ModelConfig,)
    )


def register_schemas() -> None:
    """Store every group's schema (idempotent; call before Hydra composes)."""
    from omegaconf import OmegaConf

    from sphere.run.sweep import job_dirname

    OmegaConf.register_new_resolver(
        "job_dirname", lambda overrides: job_dirname(list(overrides)), replace=True
    )
    cs = ConfigStore.instance()
    for group, node in (
        ("model", model_schema()),
        ("sphere", SphereConfig),
        ("dataset", DatasetConfig),
        ("eval", EvalConfig),
        ("logger", LoggerConfig),
        ("run", RunConfig),
    ):
        cs.store(group=group, name=f"base_{group}", node=node)
    for name in available_editors():
        cs.store(group="editor", name=f"base_{name}", node=editor_schema(name))


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "edit", return_hydra_config: bool = False
) -> DictConfig:
    """The composed config ``sphere-edit <overrides>`` would run (for tests, notebooks, --describe);
    ``return_hydra_config`` keeps the ``hydra`` node (sweeper params, launcher, sweep dir)."""
    from hydra import compose, initialize_config_dir

    register_schemas()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
