"""A run killed with SIGKILL anywhere resumes, with the same command run again (as SLURM requeues
a job), to the uninterrupted run's summary.json, metrics.jsonl rows and outcomes.jsonl: nothing
lost, nothing logged twice. The same directory with a changed setting is refused in one line, and
a finished run is not run again (``run.resume=auto``, sphere/run/identity.py).

The kill points are named in the code (``editors/core/faults.py``: ``kill_point``) and chosen with
``SPHERE_KILL_AT=<pattern>[:<n-th time>]`` (``batch.commit`` fires once per edited layer). One
point runs in the fast tier, the rest under ``make test-slow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DISTINCT8
from safetensors.torch import load_file

ARGS = (
    "model=tiny-llama",
    "editor=memit",
    "sphere=on",
    "logger=none",
    f"dataset.path={DISTINCT8}",
    "dataset.limit=6",
    "dataset.batch_size=2",
    "run.plots=false",
    "run.checkpoint_every=1",  # the kill points below include the second of three checkpoints
)

# (kill point pattern, what it interrupts). Each must fire once in a 3-batch run.
POINTS = [
    ("batch.commit:2", "during the first batch: after its second layer's update was added"),
    ("covariance.collect", "while collecting key statistics"),
    ("write:model.layers.*", "while writing a statistics cache file"),
    ("batch.logged:2", "between batches: batch 2 logged, its checkpoint not yet written"),
    ("write:checkpoint.safetensors:2", "while writing the second checkpoint"),
    ("metrics.append:3", "in the middle of a metrics.jsonl line"),
    ("write:outcomes.jsonl", "while writing outcomes.jsonl"),
    ("write:summary.json", "while writing summary.json (outcomes.jsonl already written)"),
]


def sphere_edit(out: Path, cache: Path, *extra: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SPHERE_KILL_AT"}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled", **({"SPHERE_KILL_AT": kill} if kill else {}))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphere.cli.edit",
            *ARGS,
            f"run.cache_dir={cache}",
            f"hydra.run.dir={out}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=out.parent,
    )


def outcome(out: Path) -> tuple[dict, list[dict], dict]:
    """summary.json without timings and provenance (the process's, and the checkout's commit may
    move between runs), metrics rows without wall-clock times and with the per-record outcomes
    appended, checkpointed weights."""
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("time")
    assert summary.pop("provenance")["data"]["sha256"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("batch_time_s", None)
    rows += [json.loads(x) for x in (out / "outcomes.jsonl").read_text().splitlines()]
    return summary, rows, load_file(out / "checkpoint" / "checkpoint.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, list[dict], dict]:
    root = tmp_path_factory.mktemp("reference")
    proc = sphere_edit(root / "run", root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outcome(root / "run")


def kill_and_resume(tmp_path: Path, point: str, reference, before_resume=None) -> subprocess.CompletedProcess:
    """Kill at ``point``, run the same command again, compare with ``reference``, run it once more
    (a finished run is not run again); the resumed process is returned. ``before_resume(killed)``
    runs between the kill and the resume."""
    out, cache = tmp_path / "run", tmp_path / "cache"  # own cache: the statistics points must fire
    killed = sphere_edit(out, cache, kill=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} never fired: {killed.stderr[-2000:]}"
    if before_resume is not None:
        before_resume(killed)
    resumed = sphere_edit(out, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary, rows, weights = outcome(out)
    ref_summary, ref_rows, ref_weights = reference
    assert summary == ref_summary
    assert rows == ref_rows  # the same rows, in order: none lost, none twice; the same outcomes
    assert weights.keys() == ref_weights.keys()
    for k, v in weights.items():
        assert (v == ref_weights[k]).all(), k
    again = sphere_edit(out, cache)  # a finished run is not run again
    assert again.returncode == 0 and "not re-run" in again.stdout
    assert json.loads((out / "summary.json").read_text())["n_edits"] == 6
    return resumed


FAST = "batch.logged:2"  # after the first checkpoint (2 edits): the run has something to continue


def test_a_requeued_run_continues_and_a_changed_one_is_refused(tmp_path, reference):
    """The SLURM requeue: the same command, no flag, continues from the checkpoint and says so.
    Before it, the same directory with a changed setting is refused: one line, exit 2, naming the
    directory, the key that differs and the fix, and nothing in the directory changes."""
    out, cache = tmp_path / "run", tmp_path / "cache"

    def refused_first(_killed: subprocess.CompletedProcess) -> None:
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and ".hydra" not in p.parts}
        changed = sphere_edit(out, cache, "sphere.alpha=0.5")
        assert changed.returncode == 2, changed.stderr[-3000:]
        lines = [x for x in changed.stderr.splitlines() if x.startswith("sphere-edit:")]
        assert len(lines) == 1 and "Traceback" not in changed.stderr, changed.stderr[-3000:]
        assert str(out) in lines[0] and "sphere.alpha: 0.8 -> 0.5" in lines[0], lines[0]
        assert "hydra.run.dir" in lines[0] and "run.resume=false" in lines[0]
        assert {p: p.stat().st_mtime_ns for p in before} == before

    resumed = kill_and_resume(tmp_path, FAST, reference, before_resume=refused_first)
    said = resumed.stdout + resumed.stderr  # the log goes where Hydra's job logging puts it
    assert f"resuming from {out} after 2 edits (same configuration)" in said


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", [p for p, _ in POINTS if p != FAST], ids=[p for p, _ in POINTS if p != FAST]
)
def test_killed_anywhere_resumes_to_the_same_result(tmp_path, reference, point):
    kill_and_resume(tmp_path, point, reference)


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_redoing_finished_jobs(tmp_path, reference):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "sphere.cli.edit",
        "-m",
        *ARGS,
        "sphere.alpha=0.5,0.8",  # job 1 is the reference run's configuration
        f"run.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    killed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**env, "SPHERE_KILL_AT": "batch.logged:5"},
    )
    assert killed.returncode == -signal.SIGKILL  # job 0 finished (3 batches), job 1 died in batch 2
    (job0,) = sweep.glob("0_*")
    finished_at = (job0 / "summary.json").stat().st_mtime_ns
    resumed = subprocess.run(  # run.resume=true: the old spelling, still the same
        [*command, "run.resume=true"], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (job0 / "summary.json").stat().st_mtime_ns == finished_at  # not run again
    (job1,) = sweep.glob("1_*")
    summary, rows, weights = outcome(job1)
    assert summary == reference[0] and rows == reference[1]
