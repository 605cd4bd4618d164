"""Re-evaluate a saved run at any saved number of edits, with any metric set, without editing again.

The run is rebuilt from its own ``config.yaml`` (same model, same seed, so the same record stream),
with ``key=value`` overrides applied to it (typically ``eval.*``). Each point's weights come from
:mod:`sphere.run.saved` (``load_point``); the records measured are those edited by then, as in the
reference's ``evaluate_each_epoch.py`` (the first k records), and ``n_edits = 0`` measures the
unedited model on all records. Results go to ``<run>/reeval/<tag>.json``, rewritten atomically after each point;
with the generation evaluator the file also holds the generated texts of each point (``texts``), so a
fluency number can be read against what the model wrote (n-gram entropy is high for fluent text and
for gibberish alike).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sphere.errors import ConfigError
from sphere.files import atomic_write_json
from sphere.run.identity import upgrade_config
from sphere.run.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    REEVAL_DIR,
    SUMMARY_FILE,
    load_point,
    read_metrics,
    resolve_points,
    split_per_layer,
    write_summary_text,
)
from sphere.run.sweep import overrides_name

log = logging.getLogger(__name__)


def run_config_with(run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The run's resolved config with ``key=value`` overrides merged in (unknown keys refused); keys
    renamed since the run was written are under their new names (``sphere.run.identity.upgrade_config``)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass a run directory written by sphere-edit")
    stored = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(stored, dict)
    # An older run's renamed keys (model.stats) under today's names.
    cfg = OmegaConf.create(upgrade_config({str(k): v for k, v in stored.items()}))
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f"override not applicable to this run: {str(e).splitlines()[0]}") from None


def tag_for(overrides: Sequence[str]) -> str:
    """The file name (without ``.json``) of the re-evaluation with these overrides: sorted, as
    ``key-value`` items joined by ``_`` in [A-Za-z0-9._-] only, as sweep job directories are named
    (``sphere.run.sweep.overrides_name``): ``eval.evaluators=[he]`` → ``eval.evaluators-he``; no
    overrides → ``default``. Files of older versions (``eval.evaluators=_he_.json``, with ``=`` and
    ``,``) are left as they are; nothing reads a re-evaluation back by its name."""
    return overrides_name(overrides)[:120]


def rebuild(run_dir: Path, overrides: Sequence[str] = ()):
    """(runner, records) of the saved run, ready to load weights into and measure."""
    from sphere.models import load_model, model_id
    from sphere.run.build import edit_stream
    from sphere.run.config import validate
    from sphere.run.runner import SequentialRun

    s = validate(run_config_with(run_dir, overrides))
    s.eval.protocol = "edited_so_far"  # re-evaluation measures the model, not a log of past batches
    records = edit_stream(s)
    model, tok = load_model(s.model, s.run.cache_dir)
    return SequentialRun(s, model, tok, model_id(s.model), records, Path(run_dir)), records


def merge_into_run(run_dir: Path, result: dict[str, Any]) -> None:
    """Add re-evaluated metrics to the run's own files, as if the run had measured them: the
    ``metrics.jsonl`` row of each point's number of edits (the last row with that ``n_edits``: the
    pre row, a scheduled evaluation, the final row) and ``summary.json`` (pre and final). Metrics
    the run already has are overwritten with the re-evaluated values (deterministic evaluators give
    the same numbers). This is the reference's workflow for general ability: measure saved
    checkpoints after editing (spec §5), here without a second set of result files to reconcile."""
    import json

    from sphere.files import atomic_write_text

    rows_path, summary_path = run_dir / METRICS_FILE, run_dir / SUMMARY_FILE
    rows = read_metrics(rows_path)[0]  # a line cut by a kill is dropped when the file is rewritten
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    for point in result["points"]:
        n, metrics = point["n_edits"], {k: v for k, v in point.items() if k != "n_edits"}
        idx = [i for i, r in enumerate(rows) if r["n_edits"] == n]
        if idx:
            rows[idx[-1]].update(metrics)
        if summary is None:
            continue
        plain, _ = split_per_layer(metrics)
        if n == 0:
            summary.setdefault("pre", {}).update(plain)
        if n == summary["n_edits"]:
            summary.update(plain)
    atomic_write_text(rows_path, "".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        notes = {**summary.get("notes", {}), **result["notes"]}
        if notes:
            summary["notes"] = notes
        atomic_write_json(summary_path, summary)
        write_summary_text(run_dir, summary)


def reevaluate(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    at: str = "last",
    pre: bool = False,
    merge: bool = False,
) -> dict[str, Any]:
    """Measure the saved run at the points ``at`` selects (``all``, ``last``, ``5000,15000``);
    ``pre`` also measures the unedited model; ``merge`` adds the results to the run's own
    metrics.jsonl and summary.json (:func:`merge_into_run`). Returns (and writes)
    ``{"overrides", "points", "notes"}``."""
    run_dir = Path(run_dir)
    points = resolve_points(run_dir, at)
    runner, records = rebuild(run_dir, overrides)
    out_path = run_dir / REEVAL_DIR / f"{tag_for(overrides)}.json"
    result: dict[str, Any] = {"overrides": list(overrides), "points": [], "notes": {}, "texts": {}}
    todo = ([0] if pre and 0 not in points else []) + points
    for n in todo:
        for ev in runner.evaluators.values():
            if hasattr(ev, "last_texts"):
                ev.last_texts = {}  # this point's texts only
        if n == 0:
            for layer in runner.layers:  # the unedited weights, whatever the model holds now
                runner.ctx.weights.write(layer, runner.ctx.pretrained(layer))
            metrics = runner.measure("pre", records, 0)
        else:
            view, edited = load_point(runner, records, run_dir, n)
            with view:
                metrics = runner.measure("final", edited, n)
        result["points"].append({"n_edits": n, **metrics})
        texts = {
            str(c): t for ev in runner.evaluators.values() for c, t in getattr(ev, "last_texts", {}).items()
        }
        if texts:
            result["texts"][str(n)] = texts
        result["notes"] = {
            k: v for ev in runner.evaluators.values() for k, v in getattr(ev, "notes", {}).items()
        }
        atomic_write_json(out_path, result)
        log.info("re-evaluated %s at %d edits", run_dir, n)
    if merge:
        merge_into_run(run_dir, result)
    result["path"] = str(out_path)
    return result
