"""Extending a run to a longer edit stream: ``dataset.limit`` raised on a directory that holds the
run (``sphere.run.identity`` decides ``extend``; the command is the run's own with the new limit).

Why: a long study that has not failed at its planned length (3,000 edits) should go on (10,000)
without editing the first 3,000 records again, hours of work on a CPU. Continuing is exact only
if the longer run would have done the same thing up to the checkpoint, so :func:`check_extension`
requires, before anything is written:

* the longer stream begins with the records already edited, batched the same way (the edit stream
  is a prefix of the shuffled or file-ordered records, ``sphere.run.build.edit_stream``; checked,
  not assumed, and a last batch shorter than ``dataset.batch_size`` cannot be continued);
* ``eval.subset`` measures the same records among those already edited (the subset is drawn per
  stratum of the stream, so a longer stream keeps it when the strata keep their width:
  ``eval.subset`` grows with ``dataset.limit``; the error names the value that does);
* ``run.keep_at`` adds no edit count the run has already passed.

What changes (:func:`start_extension`), in an order that a kill at any point leaves a directory
the same command continues: the finished run's summary, outcomes, metrics and config are copied
to ``extended/at-<n>/`` (kept, never overwritten); the checkpoint's progress is told to measure the
unedited model again (its first measurement covered only the shorter stream: the unedited
baseline must be on the same records as the final measurement) and records where the run was
extended; in ``metrics.jsonl`` the unedited model's row is dropped (the runner writes the new one
first) and the final row of the shorter run becomes an ordinary evaluation point (all records
edited so far at that length); summary.json goes last, so the directory is never a finished run
of the longer configuration.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sphere.data.records import EditRecord
from sphere.errors import ConfigError
from sphere.files import atomic_write_text
from sphere.run.checkpoint import CHECKPOINT_DIR, set_progress
from sphere.run.config import Settings
from sphere.run.eval_subset import subset_positions
from sphere.run.rundir import (
    CONFIG_FILE,
    EXTENDED_DIR,
    METRICS_FILE,
    OUTCOMES_FILE,
    SUMMARY_FILE,
    SUMMARY_TEXT_FILE,
    is_pre_row,
    read_metrics,
)

log = logging.getLogger(__name__)

ARCHIVED = (CONFIG_FILE, SUMMARY_FILE, SUMMARY_TEXT_FILE, OUTCOMES_FILE, METRICS_FILE)


def check_extension(
    s: Settings, records: Sequence[EditRecord], old_config: Mapping[str, Any], progress: Mapping[str, Any]
) -> None:
    """Raise ConfigError (naming the problem and the fix) unless continuing ``progress`` (the
    checkpoint's) under ``s`` with ``records`` (its stream) edits and measures exactly what a run of
    ``s`` from the start would have up to the checkpoint."""
    from sphere.run.build import edit_stream

    old_limit = int(old_config["dataset"]["limit"])
    old_eval = old_config.get("eval") or {}
    shorter = edit_stream(replace(s, dataset=replace(s.dataset, limit=old_limit)))
    bs, done, n_done = s.dataset.batch_size, int(progress["batches_done"]), int(progress["n_edits"])
    edited = done * bs
    if edited > len(shorter):
        raise ConfigError(
            f"the run cannot be extended: its last batch held {len(shorter) - (done - 1) * bs} records, "
            f"not dataset.batch_size={bs}, so the longer run would batch them differently; start a new "
            "run (another hydra.run.dir) with the longer dataset.limit"
        )
    if list(records[:edited]) != list(shorter[:edited]):
        first = next(i for i, (a, b) in enumerate(zip(records, shorter)) if a != b)
        raise ConfigError(
            f"the run cannot be extended: the longer stream's record {first} (case_id "
            f"{records[first].case_id}) is not the one it edited (case_id {shorter[first].case_id}); "
            "start a new run (another hydra.run.dir) with the longer dataset.limit"
        )
    old_subset = old_eval.get("subset")
    before = _measured(subset_positions(len(shorter), old_subset, s.run.seed), edited)
    after = _measured(subset_positions(len(records), s.eval.subset, s.run.seed), edited)
    if before != after:
        keeps = _subset_that_keeps(old_subset, len(shorter), len(records))
        hint = f"set eval.subset={keeps}" if keeps else "keep eval.subset's strata (len/subset) unchanged"
        raise ConfigError(
            f"the run cannot be extended with eval.subset={s.eval.subset}: it would measure other "
            f"records among the {edited} already edited than the run did (eval.subset={old_subset}); "
            f"{hint}"
        )
    passed = sorted(
        {k for k in s.run.keep_at if k <= n_done} - {k for k in old_config["run"].get("keep_at") or []}
    )
    if passed:
        raise ConfigError(
            f"run.keep_at asks for the weights after {', '.join(map(str, passed))} edits, which the run "
            f"has passed ({n_done} edits done); keep only later points in run.keep_at"
        )


def _measured(positions: frozenset[int] | None, edited: int) -> frozenset[int]:
    return frozenset(range(edited)) if positions is None else frozenset(p for p in positions if p < edited)


def _subset_that_keeps(old_subset: int | None, n_old: int, n_new: int) -> int | None:
    """The ``eval.subset`` whose strata over ``n_new`` records are the old ones over ``n_old``."""
    if old_subset is None:
        return None
    size = old_subset * n_new / n_old
    return int(size) if size == int(size) and n_old % old_subset == 0 else None


def start_extension(out_dir: Path, progress: Mapping[str, Any]) -> Path:
    """Archive the shorter run and make its directory continue as the longer one (module
    docstring); ``progress``: its checkpoint's. Returns the archive, ``extended/at-<n>``. Each step
    is atomic and repeating them is harmless, so a kill anywhere leaves a directory the same
    command extends or resumes."""
    n_edits = int(progress["n_edits"])
    archive = out_dir / EXTENDED_DIR / f"at-{n_edits}"
    if not (archive / METRICS_FILE).exists():  # the first copy is the shorter run's: never overwritten
        tmp = archive.with_name(archive.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ARCHIVED:
            if (out_dir / name).exists():
                shutil.copy2(out_dir / name, tmp / name)
        shutil.rmtree(archive, ignore_errors=True)
        tmp.rename(archive)
    extended = [int(n) for n in progress.get("extended_from") or []]
    if not extended or extended[-1] != n_edits:
        extended.append(n_edits)
    set_progress(out_dir / CHECKPOINT_DIR, {**progress, "pre": None, "extended_from": extended})
    metrics = out_dir / METRICS_FILE
    if metrics.exists():
        rows = read_metrics(metrics)[0]  # a line cut by a kill goes: the resumed run logs it again
        kept = [{k: v for k, v in r.items() if k != "final"} for r in rows if not is_pre_row(r)]
        atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))
    for name in (SUMMARY_FILE, SUMMARY_TEXT_FILE, OUTCOMES_FILE):  # summary.json first: not finished
        (out_dir / name).unlink(missing_ok=True)
    log.info("extending %s after %d edits; the shorter run's files are in %s", out_dir, n_edits, archive)
    return archive
