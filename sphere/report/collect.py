"""Find run directories written by ``sphere-edit`` and load them into pandas frames.

A run directory is any directory holding ``config.yaml`` and ``metrics.jsonl`` (a sweep directory
holds one per job, at any depth). The report never talks to W&B: what is on disk is what it shows.

Two frames come out: ``runs`` (one row per run: identity columns, final metrics, HE change, the
unedited model's metrics under ``pre/<metric>``) and ``curves`` (long: one row per run, number of
edits and metric, from ``metrics.jsonl``). A *setting* is a run's identity without its seed: the
unit over which seeds are averaged.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sphere.evaluation.he import HE_SIGNED, LAYER_PREFIX, he_summaries
from sphere.run.identity import upgrade_config
from sphere.run.rundir import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    read_metrics,
)

log = logging.getLogger(__name__)

# What makes two runs comparable. batch_size is part of it: sequential editing with batches of 1
# and of 100 are different experiments even at the same number of edits.
SETTING_COLS = [
    "model",
    "dataset",
    "protocol",
    "n_edits",
    "batch_size",
    "editor",
    "sphere",
    "alpha",
    "beta",
    "rank",
    "reference",
]
IDENTITY_COLS = [*SETTING_COLS, "seed"]
# The columns a table groups its rows under (one bold "best" per column within each block).
BLOCK_COLS = ["model", "dataset", "protocol", "n_edits", "batch_size"]


def editor_display_name(editor: str) -> str:
    """How tables and figures name an editor: its registry entry's display name ("AlphaEdit"),
    or the name as written in the run when no editor of that name is registered (an old run of a
    plug-in that is not installed here)."""
    from editors import get_editor

    try:
        return get_editor(editor).display_name
    except (KeyError, ValueError):
        return editor


# Config keys that change how a run was executed but not what it measures; a setting whose runs
# differ in anything else (a learning rate, a layer list) is flagged, since its seeds are not
# repetitions of one experiment.
_OPERATIONAL = (
    "run.",
    "logger.",
    "hydra.",
    "model.device",
    "model.covariance.batch_size",
    "eval.every",
    "eval.batch_size",
    "eval.he.block_size",
    "eval.generation.batch_size",
    "eval.general.batch_size",
    "eval.general.every",
)
# Summary keys that are identity or bookkeeping, not metrics.
_NOT_METRICS = {"n_edits", "seed", "n_records"}


@dataclass
class Run:
    """One run directory as read from disk; ``summary`` is None while the run is unfinished."""

    path: Path
    run_id: str
    config: dict[str, Any]
    summary: dict[str, Any] | None
    rows: list[dict[str, Any]]
    bad_lines: int = 0

    @property
    def finished(self) -> bool:
        return self.summary is not None


@dataclass
class Collection:
    """Everything the report is built from, plus what was skipped and why."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    loaded: list[Run] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class NoRunsError(FileNotFoundError):
    """No run directory under the given paths (a one-line CLI error)."""


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every directory under ``paths`` (recursively, the paths themselves included) holding
    ``config.yaml`` and ``metrics.jsonl``; sorted, without duplicates, relative to the working
    directory when below it (tables and JSON that are committed then name no machine's paths)."""
    found: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise NoRunsError(f"{root} does not exist")
        candidates = [root / METRICS_FILE, *root.rglob(METRICS_FILE)]
        for m in candidates:
            if m.is_file() and (m.parent / CONFIG_FILE).is_file():
                found.add(m.parent.resolve())
    cwd = Path.cwd().resolve()
    return sorted(p.relative_to(cwd) if p.is_relative_to(cwd) else p for p in found)


def _run_id(path: Path, roots: list[Path]) -> str:
    """The run's path relative to the input it was found under (short, unique in one report)."""
    for root in roots:
        try:
            rel = path.resolve().relative_to(Path(root).resolve())
        except ValueError:
            continue
        return str(Path(Path(root).resolve().name) / rel) if str(rel) != "." else Path(root).resolve().name
    return str(path)


def load_run(path: Path, run_id: str) -> Run:
    """Read one run directory. Raises ValueError naming the file if config.yaml or summary.json is
    damaged (the caller skips that run with a warning); metrics.jsonl is read leniently."""
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path / CONFIG_FILE} is damaged ({type(e).__name__})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path / CONFIG_FILE} is not a mapping")
    config = upgrade_config(config)  # an older run's renamed keys (model.stats) under today's names
    summary = None
    if (path / SUMMARY_FILE).exists():
        try:
            summary = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path / SUMMARY_FILE} is damaged ({type(e).__name__}: {e})") from None
        if not isinstance(summary, dict):
            raise ValueError(f"{path / SUMMARY_FILE} is not a JSON object")
    rows, bad = read_metrics(path / METRICS_FILE)
    return Run(path=path, run_id=run_id, config=config, summary=summary, rows=rows, bad_lines=bad)


def _get(d: dict[str, Any], dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def _num(x: Any) -> float:
    """A finite-or-NaN float from a JSON value (None, strings and bools become NaN)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return math.nan
    return float(x)


def identity(run: Run) -> dict[str, Any]:
    """The run's identity columns. SPHERE's α/β/r are left empty for a baseline (they do not act),
    and β is left empty when a rank r selects the directions instead (r wins, as in the editor).
    ``n_edits`` is the planned number (dataset.limit) so an unfinished run joins its setting."""
    cfg, s = run.config, run.summary or {}
    sph = s.get("sphere")
    if not isinstance(sph, dict):
        sph = _get(cfg, "sphere", {})
    if not isinstance(sph, dict):
        sph = {}
    on = bool(sph.get("enabled", False))
    rank = sph.get("rank") if on else None
    planned = _get(cfg, "dataset.limit")
    if planned is None:
        planned = s.get("n_edits")
    if planned is None:
        planned = max((int(r["n_edits"]) for r in run.rows), default=0)
    seed = s.get("seed", _get(cfg, "run.seed", 0))
    return {
        "model": str(s.get("model") or _get(cfg, "model.name", "?")),
        "dataset": str(s.get("dataset") or _get(cfg, "dataset.kind", "?")),
        "protocol": str(s.get("protocol") or _get(cfg, "eval.protocol", "?")),
        "n_edits": int(planned),
        "batch_size": int(_get(cfg, "dataset.batch_size", 0) or 0),
        "editor": str(s.get("editor") or _get(cfg, "editor.name", "?")),
        "sphere": on,
        "alpha": float(sph["alpha"]) if on and sph.get("alpha") is not None else None,
        "beta": float(sph["beta"]) if on and not rank and sph.get("beta") is not None else None,
        "rank": int(rank) if rank else None,
        "reference": _reference(sph) if on else None,
        "seed": int(seed) if seed is not None else 0,
    }


def _reference(sph: dict) -> str | None:
    """The weights SPHERE's U came from when they are not the editor's default, else None, so runs
    that only spell the default differently ("auto", or "current" for MEMIT) stay one setting. Runs
    record the resolved value and the default (summary.json sphere.resolved); for runs that predate
    that record an explicit value is taken as given and "auto" as the default."""
    resolved = sph.get("resolved")
    if isinstance(resolved, dict) and resolved.get("reference"):
        resolved_ref = str(resolved["reference"])
        return None if resolved_ref == resolved.get("default_reference") else resolved_ref
    given = sph.get("reference")
    return str(given) if given and given != "auto" else None


def setting_id(ident: dict[str, Any]) -> str:
    """A stable string key of a setting (identity without seed); None and NaN print alike."""
    return "|".join(f"{c}={'-' if ident.get(c) is None else ident[c]}" for c in SETTING_COLS)


def setting_label(ident: dict[str, Any]) -> str:
    """The row label a paper table uses: ``MEMIT`` or ``MEMIT + SPHERE (α=0.8, β=0.5)``."""
    name = editor_display_name(str(ident["editor"]))
    if not ident.get("sphere"):
        return name
    parts = []
    if _present(ident.get("alpha")):
        parts.append(f"α={ident['alpha']:g}")
    if _present(ident.get("rank")):
        parts.append(f"r={int(ident['rank'])}")
    elif _present(ident.get("beta")):
        parts.append(f"β={ident['beta']:g}")
    if _present(ident.get("reference")):  # only when not the editor's default
        parts.append("U from W₀" if ident["reference"] == "pretrained" else "U from the live W")
    return f"{name} + SPHERE ({', '.join(parts)})" if parts else f"{name} + SPHERE"


def block_label(ident: dict[str, Any]) -> str:
    return (
        f"{ident['model']} · {ident['dataset']} · {ident['n_edits']} edits "
        f"(batch {ident['batch_size']}) · {ident['protocol']}"
    )


def _present(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Top-level numeric metrics of a summary (``m`` and ``m_se``), the HE change over layers
    (:func:`he_summaries`: mean magnitude, signed mean, per layer), and ``pre/<m>``."""
    out = {k: _num(v) for k, v in summary.items() if k not in _NOT_METRICS and isinstance(v, int | float)}
    out = {k: v for k, v in out.items() if not isinstance(summary[k], bool)}
    he = summary.get(HE_SIGNED) or {}
    if isinstance(he, dict) and he:
        out.update(he_summaries({str(k): _num(v) for k, v in he.items()}))
    pre = summary.get("pre") or {}
    if isinstance(pre, dict):
        out.update({f"pre/{k}": _num(v) for k, v in pre.items() if isinstance(v, int | float)})
    return out


def _curve_rows(run: Run, ident: dict[str, Any], sid: str) -> list[dict[str, Any]]:
    """Long rows (run, n_edits, metric, value) of metrics.jsonl, plus the derived HE change (%)
    (:func:`he_summaries`); a later row at the same number of edits (the final one) wins."""
    values: dict[tuple[int, str], float] = {}
    for row in run.rows:
        n = int(row["n_edits"])
        for k, v in row.items():
            if k in ("n_edits", "final") or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            values[(n, k)] = float(v)
    he_pre = {}
    for (n, k), v in values.items():
        if n == 0 and k.startswith(LAYER_PREFIX):
            he_pre[k[len(LAYER_PREFIX) :]] = v
    if not he_pre and run.summary and isinstance(run.summary.get("he_pre"), dict):
        he_pre = {str(k): _num(v) for k, v in run.summary["he_pre"].items()}
    changes: dict[int, dict[str, float]] = {}
    for (n, k), v in list(values.items()):
        if k.startswith(LAYER_PREFIX):
            layer = k[len(LAYER_PREFIX) :]
            base = he_pre.get(layer)
            if base:
                changes.setdefault(n, {})[layer] = 100.0 * (v - base) / base
    for n, per_layer in changes.items():
        values.update({(n, k): v for k, v in he_summaries(per_layer).items()})
    head = {"run_id": run.run_id, "setting_id": sid, **ident}
    return [{**head, "n_edits_done": n, "metric": k, "value": v} for (n, k), v in sorted(values.items())]


def provenance_columns(summary: dict[str, Any]) -> dict[str, Any]:
    """The provenance a table shows per run (summary.json ``provenance``, written since Dec 2026):
    commit (12 characters, ``+`` when the tree had changes), package and torch versions, device,
    the model digest and the data file's sha256 (12 characters). Empty for older runs."""
    prov = summary.get("provenance")
    if not isinstance(prov, dict):
        return {}
    code, versions = prov.get("code") or {}, prov.get("versions") or {}
    commit = str(code.get("commit") or "unknown")
    return {
        "commit": (commit[:12] if commit != "unknown" else commit) + ("+" if code.get("dirty") else ""),
        "versions": f"sphere {versions.get('sphere-edit', '?')}, torch {versions.get('torch', '?')}, "
        f"transformers {versions.get('transformers', '?')}",
        "device": str((prov.get("machine") or {}).get("device", "?")),
        "model_digest": str((prov.get("model") or {}).get("digest") or ""),
        "data_sha256": str((prov.get("data") or {}).get("sha256") or "")[:12],
    }


def config_differences(runs: list[Run]) -> list[str]:
    """Config keys (not operational, not the seed) whose values differ among ``runs``."""
    flat = [_flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    diff = []
    for k in keys:
        if k.startswith(_OPERATIONAL) or k in ("dataset.limit",):
            continue
        if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1:
            diff.append(k)
    return diff


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


def collect(paths: list[Path]) -> Collection:
    """Find and load every run under ``paths``; damaged runs are skipped with a warning naming
    them. Raises NoRunsError when nothing loadable is found."""
    dirs = find_run_dirs(paths)
    if not dirs:
        raise NoRunsError(
            f"no run found under {', '.join(map(str, paths))} "
            "(a run directory holds config.yaml and metrics.jsonl)"
        )
    warnings: list[str] = []
    loaded: list[Run] = []
    for d in dirs:
        try:
            run = load_run(d, _run_id(d, paths))
        except (ValueError, OSError) as e:
            warnings.append(f"skipped run {d}: {e}")
            log.warning("skipped run %s: %s", d, e)
            continue
        if run.bad_lines:
            warnings.append(f"{run.run_id}: ignored {run.bad_lines} unparseable line(s) of metrics.jsonl")
        loaded.append(run)
    if not loaded:
        raise NoRunsError(f"no readable run under {', '.join(map(str, paths))}: " + "; ".join(warnings))
    run_rows, curve_rows = [], []
    by_setting: dict[str, list[Run]] = {}
    for run in loaded:
        ident = identity(run)
        sid = setting_id(ident)
        by_setting.setdefault(sid, []).append(run)
        done = run.summary.get("n_edits") if run.summary else None
        if done is None:
            done = max((int(r["n_edits"]) for r in run.rows), default=0)
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "path": str(run.path),
            "setting_id": sid,
            "label": setting_label(ident),
            "block": block_label(ident),
            **ident,
            "finished": run.finished,
            "n_edits_done": int(done),
            "has_checkpoint": (run.path / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file(),
            "notes": dict(run.summary.get("notes") or {}) if run.summary else {},
        }
        if run.summary:
            row.update(final_metrics(run.summary))
            row.update(provenance_columns(run.summary))
        run_rows.append(row)
        curve_rows.extend(_curve_rows(run, ident, sid))
    for group in by_setting.values():
        diff = config_differences(group)
        if diff:
            label = setting_label(identity(group[0]))
            warnings.append(
                f"setting {label} ({block_label(identity(group[0]))}) mixes runs whose configs differ in "
                f"{', '.join(diff[:8])}{' …' if len(diff) > 8 else ''}: its seeds are not repetitions"
            )
    runs = pd.DataFrame(run_rows)
    curves = pd.DataFrame(
        curve_rows, columns=["run_id", "setting_id", *IDENTITY_COLS, "n_edits_done", "metric", "value"]
    )
    return Collection(runs=runs, curves=curves, loaded=loaded, warnings=warnings)
