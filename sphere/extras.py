"""Optional dependencies (pip extras of ``sphere-edit``) and the one-line error when a feature
needs one that is not installed.

``gguf``: GGUF checkpoints (``model.source=gguf``: the default SmolLM2-135M, Gemma-3-270M);
``slurm``: the submitit launchers of sweeps (``hydra/launcher=slurm`` or ``local_gpus``);
``optuna``: searching hyperparameters with Hydra's Optuna sweeper (``hydra/sweeper=optuna``, the
``search_*`` presets); ``all``: all three. ``make setup`` installs them all.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from sphere import paths
from sphere.errors import ConfigError

# extra -> the module it provides
EXTRAS = {
    "gguf": "gguf",
    "slurm": "hydra_plugins.hydra_submitit_launcher",
    "optuna": "hydra_plugins.hydra_optuna_sweeper",
}
# our launcher configs (configs/hydra/launcher/) that build on hydra-submitit-launcher's
SUBMITIT_LAUNCHERS = ("slurm", "local_gpus", "submitit_slurm", "submitit_local")


class MissingExtraError(ConfigError):
    """A feature whose optional dependency is not installed; the message names the pip extra."""


def installed(extra: str) -> bool:
    """Whether the module behind ``extra`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(EXTRAS[extra]) is not None
    except ModuleNotFoundError:  # a missing parent package (hydra_plugins)
        return False


def require(extra: str, feature: str) -> None:
    """Raise ``MissingExtraError`` naming ``feature`` and the extra that provides it."""
    if not installed(extra):
        raise MissingExtraError(
            f"{feature} needs the optional dependency {EXTRAS[extra].split('.')[-1]!r}: "
            f"pip install 'sphere-edit[{extra}]'"
        )


def check_launcher(overrides: Sequence[str]) -> None:
    """Refuse a submitit launcher chosen on the command line when the ``slurm`` extra is missing
    (Hydra would otherwise fail with "Could not find 'hydra/launcher/submitit_slurm'")."""
    for arg in overrides:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra/launcher" and value in SUBMITIT_LAUNCHERS:
            require("slurm", f"hydra/launcher={value}")


def check_sweeper(overrides: Sequence[str], config_dir: str | Path | None = None) -> None:
    """Refuse the Optuna sweeper when the ``optuna`` extra is missing: chosen on the command line
    (``hydra/sweeper=optuna``) or by a preset (``+experiment=X`` whose file overrides
    ``hydra/sweeper`` with ``optuna``). Hydra would otherwise fail with "Could not find
    'hydra/sweeper/optuna'"."""
    if installed("optuna"):
        return
    if config_dir is None:
        config_dir = paths.config_dir()  # what Hydra composes from (sphere.run.compose.CONFIG_DIR)
    for arg in overrides:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra/sweeper" and value == "optuna":
            require("optuna", "hydra/sweeper=optuna")
        if key == "experiment" and value:
            preset = Path(config_dir) / "experiment" / f"{value}.yaml"
            try:
                text = preset.read_text(encoding="utf-8")
            except OSError:
                continue  # an unknown preset is Hydra's error to word
            if any(
                line.split("#")[0].replace(" ", "").endswith("/hydra/sweeper:optuna")
                for line in text.splitlines()
            ):
                require("optuna", f"+experiment={value} (Hydra's Optuna sweeper)")
