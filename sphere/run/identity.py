"""Whose run a run directory holds, and what ``run.resume`` does about it.

A SLURM job requeued after its time limit runs the same command again, in the same directory. It
must continue from its checkpoint, not start over (which truncated metrics.jsonl, rewrote W₀ and
edited from 0 again, silently); and a command that computes something else must never continue, or
overwrite, a run that is not its own. So ``run.resume`` is a policy, decided here once at start-up:

* ``auto`` (default): continue if the directory holds a checkpoint of the same configuration; a
  finished run (``summary.json``) of the same configuration is not run again; results (metrics,
  a checkpoint, a summary, kept weights) of a different configuration are refused (ConfigError
  naming the directory, the first differing keys and the fix); nothing there, or only the
  config.yaml of a start that failed before writing any result: a new run.
* ``true``: as ``auto``, but a directory that holds no run at all is an error (a mistyped
  ``hydra.run.dir`` would otherwise start a new run silently). In a sweep a job that never started
  starts: continuing a sweep means continuing the jobs that did.
* ``false``: start over there: the previous run's outputs are deleted (``clear_outputs``) before
  the new config.yaml is written.

A run of the same configuration stopped before its first checkpoint has nothing to continue from;
it starts again from the beginning (``auto`` and ``true``), which is what it would have done.

*Extending* a run (``auto`` and ``true``): a command that differs from the directory's run only in a
larger ``dataset.limit`` (null: all records), and with it ``eval.subset`` and ``run.keep_at``
(``EXTENDABLE``), continues that run, finished or not, from its checkpoint to the new length
instead of being refused: a 3,000-edit study that has not failed goes on to 10,000 without editing
the first 3,000 again. Whether the longer stream really begins with the edited records, and the
evaluation subset is the same on them, is checked once the records are loaded
(``sphere.run.extend``).

"Same configuration" is the resolved config.yaml, equal except the ``OPERATIONAL`` keys: those
that change how a run executes (caches, checkpoint frequency, logging, where the model sits, batch
sizes of forward passes) but not the numbers it writes, so a requeued job may lower a batch size
after running out of memory, or move to another node. The report's notion (``_OPERATIONAL`` in
sphere/report/collect.py, which groups seeds) is wider on purpose: it also ignores ``run.seed``,
``run.keep_at`` and ``eval.every``, but for a resume those matter: the seed picks the edit stream,
the schedule decides which rows metrics.jsonl holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sphere.errors import ConfigError

RESUME_MODES = ("auto", "true", "false")

# Keys (exact, or a prefix when ending in ".") that a resumed run may change.
OPERATIONAL = (
    "run.resume",
    "run.checkpoint_every",
    "run.checkpoint_minutes",
    "run.plots",
    "run.cache_dir",
    "run.plan",
    "run.plan_check",
    "run.prepare",
    "run.objective",
    "run.forward_batch_size",
    "logger.",
    "hydra.",
    "model.device",
    "model.device_map",
    "model.cache_dequantized",
    "model.covariance.batch_size",
    "eval.batch_size",
    "eval.he.block_size",
    "eval.generation.batch_size",
    "eval.general.batch_size",
)

# Keys an *extension* may change (module docstring): the stream's length, and the two settings that
# are stated relative to it (the evaluation subset's size, the edit counts whose weights are kept).
EXTENDABLE = ("dataset.limit", "eval.subset", "run.keep_at")

# What a run writes into its directory (besides config.yaml, which a new run rewrites, and W&B's
# own wandb/ folder, which keeps the old run's offline history under its own id): deleted when a
# run starts over, summary.json first so that a half-cleared directory is never a finished run.
RUN_OUTPUTS = (
    "summary.json",
    "checkpoint",
    "metrics.jsonl",
    "summary.txt",
    "outcomes.jsonl",
    "metrics_vs_edits.png",
    "he_vs_edits.png",
    "patch.safetensors",
    "kept",
    "reeval",
    "extended",
)

# What makes a directory hold a run worth protecting: results. A config.yaml alone (a start that
# failed, a run killed while collecting statistics) has nothing to lose and is simply replaced.
RESULTS = ("summary.json", "checkpoint/checkpoint.safetensors", "metrics.jsonl", "kept")

Action = Literal["new", "resume", "finished", "extend"]


def resume_mode(value: Any) -> str:
    """``run.resume`` as one of ``auto``, ``true``, ``false``; the booleans of older configs (and
    YAML's ``True``/``False`` as strings) keep their meaning."""
    text = str(value).strip().lower()
    if text not in RESUME_MODES:
        raise ValueError(f"run.resume={value!r} is not allowed; choose one of {', '.join(RESUME_MODES)}")
    return text


# Config keys renamed since older runs wrote their config.yaml, old dotted key → new. An older run
# directory still resumes, reports and re-evaluates as today's configuration (``upgrade_config``),
# and ``sphere.run.config.validate`` still reads an old key set on the command line or in a config
# file, with a warning, for one release.
RENAMED_KEYS = {"model.stats": "model.covariance"}


def upgrade_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` (a config.yaml's mapping) with every renamed key (``RENAMED_KEYS``)
    under its new name: a mapping is merged into the new key's (its values winning), anything else
    replaces it; an empty or null old key is dropped."""
    import copy

    out = copy.deepcopy(dict(config))
    for old, new in RENAMED_KEYS.items():
        old_parent, new_parent = _node(out, old.rpartition(".")[0]), _node(out, new.rpartition(".")[0])
        old_leaf, new_leaf = old.rpartition(".")[2], new.rpartition(".")[2]
        if old_parent is None or old_leaf not in old_parent:
            continue
        value = old_parent.pop(old_leaf)
        if value is None or value == {} or new_parent is None:
            continue
        current = new_parent.get(new_leaf)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            value = {**current, **value}
        new_parent[new_leaf] = value
    return out


def _node(config: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The mapping at ``dotted`` in ``config`` ("" is ``config`` itself), or None."""
    node: Any = config
    for part in dotted.split(".") if dotted else []:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def operational(key: str) -> bool:
    return any(
        key.startswith(p) if p.endswith(".") else key == p or key.startswith(p + ".") for p in OPERATIONAL
    )


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay values."""
    if not isinstance(d, Mapping):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every non-operational key that differs, in key order; a key
    missing on one side is ``<absent>`` there (a schema that gained a key is another code). Renamed
    keys are compared under their new names (``upgrade_config``)."""
    a, b = flatten(upgrade_config(old)), flatten(upgrade_config(new))
    absent = "<absent>"
    return [
        (k, a.get(k, absent), b.get(k, absent))
        for k in sorted(set(a) | set(b))
        if not operational(k) and a.get(k, absent) != b.get(k, absent)
    ]


@dataclass(frozen=True)
class Decision:
    """What to do in a run directory: ``new`` (``clear`` its previous outputs first when True),
    ``resume`` from its checkpoint, ``extend`` it from its checkpoint to a longer stream (``why``
    says from which length), or nothing (``finished`` earlier)."""

    action: Action
    clear: bool = False
    why: str = ""


def decide(
    out_dir: Path,
    config: Mapping[str, Any],
    mode: str,
    *,
    in_sweep: bool = False,
    dir_key: str = "hydra.run.dir",
) -> Decision:
    """Apply the ``run.resume`` policy (module docstring) to ``out_dir`` for the resolved ``config``.

    Raises:
        ConfigError: the directory holds a run of another configuration (``auto``, ``true``), or
            no run at all (``true``, outside a sweep).
    """
    import yaml

    mode = resume_mode(mode)
    configured = (out_dir / "config.yaml").exists()
    results = [name for name in RESULTS if (out_dir / name).exists()]
    leftovers = any((out_dir / name).exists() for name in RUN_OUTPUTS)
    if mode == "false":
        return Decision("new", clear=leftovers, why="run.resume=false")
    fix = f"choose another {dir_key}, or add run.resume=false to start over there (its outputs are deleted)"
    if not configured:
        if results:
            raise ConfigError(
                f"{out_dir} holds run outputs but no config.yaml, so whose they are is unknown; {fix}"
            )
        if mode == "true" and not in_sweep:
            raise ConfigError(
                f"run.resume=true but {out_dir} holds no run to continue (no config.yaml); check "
                f"{dir_key}, or drop run.resume=true to start a new run there"
            )
        return Decision("new")
    if not results:  # it stopped before writing anything (a failed start, killed in statistics)
        return Decision("new", clear=leftovers, why="its run wrote no results: nothing to continue or keep")
    try:
        old = yaml.safe_load((out_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{out_dir}/config.yaml cannot be read ({type(e).__name__}); {fix}") from None
    diff = config_diff(old, config)
    if diff and extends(diff):
        if "checkpoint/checkpoint.safetensors" not in results:
            raise ConfigError(
                f"{out_dir} holds a shorter run of this configuration ({_limits(diff)}) but no "
                f"checkpoint to extend it from; {fix}"
            )
        return Decision("extend", why=_limits(diff))
    if diff:
        shown = ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise ConfigError(f"{out_dir} holds a run of another configuration ({shown}{more}); {fix}")
    if "summary.json" in results:
        return Decision("finished")
    if "checkpoint/checkpoint.safetensors" in results:
        return Decision("resume")
    return Decision(
        "new", clear=leftovers, why="stopped before its first checkpoint: nothing to continue from"
    )


def extends(diff: list[tuple[str, Any, Any]]) -> bool:
    """Whether ``diff`` (``config_diff``) makes the new configuration a longer stream of the same run:
    only ``EXTENDABLE`` keys differ, and ``dataset.limit`` grows (null, all records, is the longest)."""
    keys = {k for k, _, _ in diff}
    if "dataset.limit" not in keys or not keys <= set(EXTENDABLE):
        return False
    old, new = next((a, b) for k, a, b in diff if k == "dataset.limit")
    if not isinstance(old, int) or isinstance(old, bool):
        return False  # null (all records) or absent: nothing is longer
    return new is None or (isinstance(new, int) and not isinstance(new, bool) and new > old)


def _limits(diff: list[tuple[str, Any, Any]]) -> str:
    old, new = next((a, b) for k, a, b in diff if k == "dataset.limit")
    return f"dataset.limit: {old} -> {new}"


def clear_outputs(out_dir: Path) -> None:
    """Delete the previous run's outputs (``RUN_OUTPUTS``) from ``out_dir``, and nothing else: the
    directory may be shared (``hydra.run.dir=.``), so only names a run writes are touched."""
    for name in RUN_OUTPUTS:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) and value != "<absent>" else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
