"""Command-line mistakes answered in our voice: one line on stderr that names the key and what it
takes (with a did-you-mean), exit code 2, and nothing written. One bad command line per row, with
substrings the line must contain (the style of test_bad_input.py); ``run.plan=true`` writes no
run directory and asks no Hub for a bundled architecture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
EDITORS = "choose one of alphaedit, memit, prune, rect, rome"


def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=ENV
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["editor=memitt"], ["editor=memitt: no such editor", EDITORS, "did you mean editor=memit?"]),
        # the internal schemas are not options: Hydra would run base_memit's bare defaults
        (["editor=base_memit"], ["editor=base_memit: no such editor", EDITORS, "did you mean editor=memit?"]),
        (["-m", "editor=memit,base_rome"], ["editor=base_rome: no such editor", "did you mean editor=rome?"]),
        (["sphere.alfa=0.5"], ["sphere.alfa: no such key in sphere", "did you mean sphere.alpha?", "beta"]),
        (["model.covariance.batchsize=2"], ["did you mean model.covariance.batch_size?"]),
        (["dataset.limit=abc"], ["dataset.limit=abc", "takes an integer or null"]),
        (["run.plan=maybe"], ["run.plan=maybe", "takes true or false"]),
        (["run.resume=maybe"], ["run.resume='maybe' is not allowed; choose one of auto, true, false"]),
        (["hydra/launcher=slurmm"], ["no such hydra/launcher", "did you mean hydra/launcher=slurm?"]),
        (["sphere.alpha=[1,"], ["'sphere.alpha=[1,' is not an override"]),
    ],
)
def test_sphere_edit_mistakes_give_one_line_and_exit_2(tmp_path, args, expected):
    proc = run("sphere.cli.edit", *args, "model=tiny-llama", "logger=none", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sphere-edit: config error: "), proc.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]
    assert "base_" not in lines[0].split(":", 3)[-1].split(";", 1)[-1]  # never offered as an option


def test_sphere_eval_on_a_missing_directory(tmp_path):
    proc = run("sphere.cli.evaluate", str(tmp_path / "nowhere"), "--list", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"sphere-eval: RUN_DIR {tmp_path / 'nowhere'} does not exist; pass a directory written by sphere-edit"
    ]


def test_a_plan_writes_nothing(tmp_path):
    """``run.plan=true`` prints the plan and leaves no run directory (Hydra would create one, with
    .hydra/ in it, before the job starts)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run(
        "sphere.cli.edit", "model=tiny-llama", "run.plan=true", f"run.cache_dir={tmp_path / 'c'}", cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sphere-edit plan" in proc.stdout and "fits:" in proc.stdout
    assert list(cwd.iterdir()) == [] and not (tmp_path / "c").exists()


def test_a_bundled_architecture_is_planned_without_the_hub(monkeypatch):
    """LLaMA3-8B's plan on a machine without the Hub: the bundled config is read, and the Hub is
    never asked (an unreachable Hub costs ~25 s of retries), online mode or not."""
    import huggingface_hub
    import transformers

    from sphere.models.architecture import load_architecture
    from sphere.run.compose import compose_config

    asked = []

    def from_pretrained(path, **kw):
        asked.append(kw.get("local_files_only"))
        raise OSError("not in the cache")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    cfg = compose_config(["model=llama3-8b"])
    from sphere.run.config import validate

    arch = load_architecture(validate(cfg).model)
    assert asked == [True]
    assert arch.config.hidden_size == 4096 and "the Hub is not asked" in arch.source
