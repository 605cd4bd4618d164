"""The index of a sweep: one line per job with its overrides, run directory, status and headline
metrics, so a person (or ``sphere-report``) sees at a glance what ran, what failed and what is left.

A Hydra callback. Each job writes only its own status file (``<sweep>/.index/<job>.json``), so jobs
running in parallel processes or on SLURM nodes never write the same file; ``index.json`` is rebuilt
from all of them after every change (atomic write; the last writer wins with a complete view of the
status files it read). Re-running the same multirun with ``hydra.sweep.dir=<dir>`` maps every job to
the same directory (``hydra.job.override_dirname``): finished jobs are skipped (``run_experiment``
returns at once when ``summary.json`` of the same configuration exists; ``run.resume``'s policy,
``sphere.run.identity``) and marked so in the index. A ``run.plan=true`` job is marked ``planned``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sphere.files import atomic_write_json, safe_name
from sphere.run.identity import resume_mode

# Overrides that do not change what a job computes (or are paths): left out of its directory name.
NOT_IN_NAME = ("hydra.", "+hydra.", "experiment=", "+experiment=", "run.resume=", "run.cache_dir=", "logger")


def _readable(text: str) -> str:
    """A name part a shell reads as is: letters, digits, '.', '_' and '-' only ('/' → '_', list
    brackets and quotes dropped, any other run of characters, e.g. a list's ',', → '-')."""
    text = re.sub(r"[\[\]{}()'\"]", "", text.replace("/", "_").replace(os.sep, "_"))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def job_dirname(overrides: Sequence[str]) -> str:
    """The directory name of a sweep job: its overrides, sorted, without launcher/logging/resume
    keys, as ``key-value`` joined by ``_`` (``editor=memit sphere=on run.seed=1`` →
    ``editor-memit_run.seed-1_sphere-on``; ``run.keep_at=[100]`` → ``run.keep_at-100``), in
    [A-Za-z0-9._-] only; the same command gives every job the same name again (resuming needs it)."""
    return overrides_name([o for o in overrides if not o.startswith(NOT_IN_NAME)])[:200]


def overrides_name(overrides: Sequence[str]) -> str:
    """``overrides``, sorted, as ``key-value`` items joined by ``_``, in [A-Za-z0-9._-] only
    (``default`` when there are none): the names of sweep jobs (``job_dirname``) and of
    re-evaluations (``sphere.run.reevaluate.tag_for``)."""
    items = []
    for override in sorted(overrides):
        key, eq, value = override.partition("=")
        items.append(_readable(key.lstrip("+~")) + ("-" + _readable(value) if eq else ""))
    return "_".join(items).strip(".-") or "default"


INDEX = "index.json"
STATUS_DIR = ".index"
HEADLINE = ("efficacy", "generalization", "specificity", "score", "n_edits")


def _paths(config: DictConfig) -> tuple[Path, Path, str] | None:
    """(sweep dir, run dir, job key) in a multirun; None otherwise."""
    hc = config.hydra
    if str(hc.mode) != "RunMode.MULTIRUN":
        return None
    run_dir = Path(hc.runtime.output_dir)
    return Path(hc.sweep.dir), run_dir, safe_name(run_dir.name)


def rebuild_index(sweep_dir: Path) -> dict[str, Any]:
    """index.json from every job's status file, ordered by job number."""
    jobs = []
    for f in sorted((sweep_dir / STATUS_DIR).glob("*.json")):
        try:
            jobs.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # being replaced right now: the next rebuild reads it
    jobs.sort(key=lambda j: j.get("num", 0))
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    index = {"sweep_dir": str(sweep_dir), "counts": counts, "jobs": jobs}
    atomic_write_json(sweep_dir / INDEX, index)
    return index


def _keeps_finished(run: DictConfig) -> bool:
    """Whether this job leaves a finished run in its directory as it is (not a plan, not
    ``run.resume=false``); a bad ``run.resume`` is the job's own one-line error, not the index's."""
    try:
        return resume_mode(run.resume) != "false" and not run.plan
    except ValueError:
        return False


class SweepIndex(Callback):
    """Keeps ``<sweep dir>/index.json`` up to date as jobs start and end."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        where = _paths(config)
        if where is None:
            return
        sweep_dir, run_dir, key = where
        done = (run_dir / "summary.json").exists() and _keeps_finished(config.run)
        self._write(
            sweep_dir,
            key,
            {
                "num": int(config.hydra.job.num),
                "overrides": list(config.hydra.overrides.task),
                "run_dir": str(run_dir),
                "status": "finished" if done else "running",
                "skipped": done,  # finished in an earlier invocation: not run again
                "start": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        where = _paths(config)
        if where is None:
            return
        sweep_dir, run_dir, key = where
        entry = self._read(sweep_dir, key)
        completed = job_return.status == JobStatus.COMPLETED
        planned = completed and bool(config.run.plan)  # printed its plan; nothing was to be written
        ok = completed and (run_dir / "summary.json").exists()
        entry["status"] = "planned" if planned else "finished" if ok else "failed"
        entry["end"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if ok and not planned:
            summary = json.loads((run_dir / "summary.json").read_text())
            entry["metrics"] = {k: summary[k] for k in HEADLINE if k in summary}
        elif not planned:
            err = job_return._return_value if job_return.status == JobStatus.FAILED else None
            entry["error"] = f"{type(err).__name__}: {err}" if err is not None else "no summary.json written"
            entry["skipped"] = False  # e.g. refused: its directory holds another configuration's run
        self._write(sweep_dir, key, entry)

    @staticmethod
    def _read(sweep_dir: Path, key: str) -> dict[str, Any]:
        try:
            return json.loads((sweep_dir / STATUS_DIR / f"{key}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {"num": 0, "overrides": [], "run_dir": ""}

    @staticmethod
    def _write(sweep_dir: Path, key: str, entry: dict[str, Any]) -> None:
        atomic_write_json(sweep_dir / STATUS_DIR / f"{key}.json", entry)
        rebuild_index(sweep_dir)
