"""A run killed with SIGKILL anywhere resumes, with the same command plus run.resume=true, to the
uninterrupted run's summary.json and metrics.jsonl rows: nothing lost, nothing logged twice.

The kill points are named in the code (``editors/core/faults.py``: ``kill_point``) and chosen with
``SPHERE_KILL_AT=<pattern>[:<n-th time>]``. One point runs in the fast tier, the rest under
``make test-slow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DISTINCT8
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
    ("batch.commit:2", "during a batch: after its first layer's update was added"),
    ("stats.collect", "while collecting key statistics"),
    ("write:model.layers.*", "while writing a statistics cache file"),
    ("batch.logged:2", "between batches: batch 2 logged, its checkpoint not yet written"),
    ("write:checkpoint.safetensors:2", "while writing the second checkpoint"),
    ("metrics.append:3", "in the middle of a metrics.jsonl line"),
    ("write:summary.json", "while writing summary.json"),
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
    """summary.json without timings, metrics rows without wall-clock times, checkpointed weights."""
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("time")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("batch_time_s", None)
    return summary, rows, load_file(out / "checkpoint" / "checkpoint.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, list[dict], dict]:
    root = tmp_path_factory.mktemp("reference")
    proc = sphere_edit(root / "run", root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outcome(root / "run")


def kill_and_resume(tmp_path: Path, point: str, reference) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"  # own cache: the statistics points must fire
    killed = sphere_edit(out, cache, kill=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} never fired: {killed.stderr[-2000:]}"
    resumed = sphere_edit(out, cache, "run.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary, rows, weights = outcome(out)
    ref_summary, ref_rows, ref_weights = reference
    assert summary == ref_summary
    assert rows == ref_rows  # the same rows, in order: none lost, none twice
    assert weights.keys() == ref_weights.keys()
    for k, v in weights.items():
        assert (v == ref_weights[k]).all(), k
    again = sphere_edit(out, cache, "run.resume=true")  # a finished run is not run again
    assert again.returncode == 0 and "not re-run" in again.stdout
    assert json.loads((out / "summary.json").read_text())["n_edits"] == 6


def test_killed_mid_batch_resumes_to_the_same_result(tmp_path, reference):
    kill_and_resume(tmp_path, POINTS[0][0], reference)


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p, _ in POINTS[1:]], ids=[p for p, _ in POINTS[1:]])
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
    resumed = subprocess.run(
        [*command, "run.resume=true"], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (job0 / "summary.json").stat().st_mtime_ns == finished_at  # not run again
    (job1,) = sweep.glob("1_*")
    summary, rows, weights = outcome(job1)
    assert summary == reference[0] and rows == reference[1]
