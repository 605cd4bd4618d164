"""Sweeps end to end: a multirun over seeds on the tiny preset, its index, resuming it, a failed
job, the report on its directory; launching through submitit (locally) and the SLURM script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
SMALL = ["dataset.limit=4", "dataset.batch_size=2", "eval.every=2", "run.keep_at=[2,4]", "logger=none"]


def sphere_edit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphere.cli.edit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=ENV,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """``sphere-edit -m +experiment=tiny_seeds run.seed=0,1``: MEMIT ± SPHERE × 2 seeds = 4 jobs."""
    tmp = tmp_path_factory.mktemp("sweep")
    out = tmp / "sweep"
    proc = sphere_edit(
        "-m",
        "+experiment=tiny_seeds",
        "run.seed=0,1",
        *SMALL,
        f"run.cache_dir={tmp / 'cache'}",
        f"hydra.sweep.dir={out}",
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_sweep_index_lists_every_job(sweep):
    index = json.loads((sweep / "index.json").read_text())
    assert index["counts"] == {"finished": 4}
    jobs = index["jobs"]
    assert [j["num"] for j in jobs] == [0, 1, 2, 3]
    assert {Path(j["run_dir"]).name for j in jobs} == {
        f"dataset.batch_size-2_dataset.limit-4_eval.every-2_run.keep_at-2-4_run.seed-{seed}_sphere-{s}"
        for seed in (0, 1)
        for s in ("off", "on")
    }  # named by the overrides (not cache dir, logger, resume): the same command finds the same directories
    for j in jobs:
        assert (Path(j["run_dir"]) / "summary.json").exists() and 0 <= j["metrics"]["efficacy"] <= 100
        assert not j["skipped"]
        assert (Path(j["run_dir"]) / "metrics_vs_edits.png").is_file()  # run.plots: every job draws


def test_resuming_a_sweep_skips_finished_jobs(sweep):
    """The same command again (no flag: run.resume=auto) skips every finished job."""
    summaries = {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")}
    proc = sphere_edit(
        "-m",
        "+experiment=tiny_seeds",
        "run.seed=0,1",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
        f"run.cache_dir={sweep.parent / 'elsewhere'}",  # not part of a job's name
        cwd=sweep.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished earlier; not re-run" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")} == summaries
    index = json.loads((sweep / "index.json").read_text())
    assert index["counts"] == {"finished": 4} and all(j["skipped"] for j in index["jobs"])


def test_report_on_the_sweep_gives_tables_figures_and_html(sweep, tmp_path):
    from sphere.report.build import build_report

    build_report([sweep], tmp_path / "report")
    out = tmp_path / "report"
    for f in ("tables/results.csv", "tables/results.md", "tables/results.tex", "report.html"):
        assert (out / f).stat().st_size > 0, f
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {
        "metrics_vs_edits",
        "he_change_vs_edits",
        "plugin_bars",
        "angular_distribution",
        "he_vs_metric",
    } <= figures
    md = (out / "tables" / "results.md").read_text()
    assert "MEMIT + SPHERE" in md and "±" in md  # two seeds: mean ± 95 % CI


def test_a_failing_job_is_recorded_and_the_others_run(tmp_path):
    out = tmp_path / "sweep"
    proc = sphere_edit(
        "-m",
        "+experiment=tiny_seeds",
        "sphere=on",
        "run.seed=0",
        "sphere.alpha=0.5,2.0",
        *SMALL,
        "dataset.limit=2",
        "run.keep_at=[]",
        f"run.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "sphere.alpha=2.0 is outside [0, 1]" in proc.stderr
    jobs = {
        next(o for o in j["overrides"] if o.startswith("sphere.alpha=")): j
        for j in json.loads((out / "index.json").read_text())["jobs"]
    }
    assert jobs["sphere.alpha=0.5"]["status"] == "finished"
    assert (
        jobs["sphere.alpha=2.0"]["status"] == "failed"
        and "outside [0, 1]" in jobs["sphere.alpha=2.0"]["error"]
    )


def test_a_planned_sweep_is_listed_as_planned(tmp_path):
    """``run.plan=true`` in a multirun: each job prints its plan, writes no run files and is
    ``planned`` in the index (not ``failed`` for the summary.json a plan never writes)."""
    out = tmp_path / "sweep"
    proc = sphere_edit(
        "-m",
        "model=tiny-llama",
        "sphere.alpha=0.5,0.8",
        "run.plan=true",
        "logger=none",
        f"run.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("sphere-edit plan") == 2
    index = json.loads((out / "index.json").read_text())
    assert index["counts"] == {"planned": 2}
    for job in index["jobs"]:
        assert {p.name for p in Path(job["run_dir"]).iterdir()} <= {".hydra", "edit.log"}  # Hydra's only


# The launcher's plumbing (submitit's local executor); the SLURM script it would write is checked
# in the fast tier below.
@pytest.mark.slow
def test_submitit_local_launcher_runs_a_job(tmp_path):
    out = tmp_path / "sweep"
    proc = sphere_edit(
        "-m",
        "+experiment=tiny_seeds",
        "hydra/launcher=local_gpus",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "sphere=on",
        "run.seed=0",
        *SMALL,
        "dataset.limit=2",
        "run.keep_at=[]",
        f"run.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = out.glob("*run.seed-0_sphere-on")  # launcher keys are not part of the name
    assert (run / "summary.json").exists() and "hydra" not in run.name
    assert json.loads((out / "index.json").read_text())["counts"] == {"finished": 1}
    assert (out / ".submitit").is_dir()


def test_slurm_launcher_writes_the_expected_sbatch_script(tmp_path, monkeypatch):
    """Compose hydra/launcher=slurm as a user would, let Hydra's submitit launcher build its executor,
    and read the sbatch script it would submit (no cluster needed)."""
    import submitit
    from hydra.core.utils import JobReturn

    from sphere.run.compose import compose_config

    cfg = compose_config(
        [
            "+experiment=tiny_seeds",
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu-a100",
            "hydra.launcher.timeout_min=600",
            "hydra.launcher.array_parallelism=3",
            f"hydra.sweep.dir={tmp_path}",
            "hydra.job.name=sphere",
        ],
        return_hydra_config=True,
    )
    from hydra.utils import instantiate

    launcher = instantiate(cfg.hydra.launcher)
    captured = {}
    fake_bin = tmp_path / "bin"  # submitit checks that srun exists before it builds a SLURM executor
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    def fake_map_array(self, fn, *args):
        ex = self._executor
        ex.parameters["map_count"] = len(args[0])  # what submitit sets for a job array
        captured["script"] = ex._make_submission_file_text("python -u -m submitit.core._submit %j", "uid")
        raise StopIteration

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    launcher.config, launcher.task_function, launcher.hydra_context = cfg, None, None
    with pytest.raises(StopIteration):
        launcher.launch([["run.seed=0"], ["run.seed=1"], ["run.seed=2"], ["run.seed=3"]], initial_job_idx=0)
    script = captured["script"]
    assert "#SBATCH --partition=gpu-a100" in script
    assert "#SBATCH --gpus-per-node=1" in script
    assert "#SBATCH --time=600" in script
    assert "#SBATCH --array=0-3%3" in script
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH --mem=96GB" in script
    assert JobReturn  # the launcher's return type, imported to pin the hydra API this test relies on
