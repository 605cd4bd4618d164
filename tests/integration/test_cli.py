"""The command line as a user runs it: sphere-edit on a tiny model, --help, bad values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from sphere.evaluation import HEADLINE


def sphere_edit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphere.cli.edit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"},
    )


def run_tiny(tmp_path: Path, *overrides: str, model: str = "tiny-llama") -> dict:
    out = tmp_path / "run"
    proc = sphere_edit(
        f"model={model}",
        "logger=none",
        f"dataset.path={ROOT / 'tests' / 'assets' / 'counterfact_distinct8.json'}",  # see tests/assets/README.md
        "dataset.limit=8",
        "dataset.batch_size=4",
        "run.plots=false",
        f"run.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={out}",
        *overrides,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["n_edits"] == 0 and rows[-1]["n_edits"] == 8 and rows[-1]["final"]
    assert (out / "config.yaml").exists() and (out / "checkpoint" / "checkpoint.safetensors").exists()
    return summary


# With SPHERE off in the slow tier: the fast tier has MEMIT without SPHERE in-process
# (test_editors.py) and this CLI path once, with SPHERE.
@pytest.mark.parametrize("sphere", [pytest.param("off", marks=pytest.mark.slow), "on"])
def test_tiny_llama_memit_reaches_efficacy(tmp_path, sphere):
    s = run_tiny(tmp_path, f"sphere={sphere}")
    assert s["n_edits"] == 8
    assert s["efficacy"] >= 90.0, s
    assert s["pre"]["efficacy"] < s["efficacy"]
    for key in HEADLINE:
        assert 0.0 <= s[key] <= 100.0 and key in s["pre"]
    assert set(s["he"]) == {"0", "1", "2"} and all(v > 0 for v in s["he"].values())
    assert s["sphere"]["enabled"] == (sphere == "on")


def test_help_lists_groups(tmp_path):
    proc = sphere_edit("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for group in ("model:", "editor:", "sphere:", "dataset:", "eval:", "logger:"):
        assert group in proc.stdout


@pytest.mark.parametrize(
    "override,needle",
    [
        ("sphere.alpha=2", "sphere.alpha=2.0 is outside [0, 1]"),
        ("sphere.beta=1.5", "sphere.beta=1.5 must be in (0, 1)"),
        ("editor=nope", "nope"),
        ("model=nope", "nope"),
        ("dataset.batch_size=0", "dataset.batch_size=0 must be >= 1"),
        ("editor.v_lrr=0.1", "v_lrr"),
        ("eval.protocol=sometimes", "eval.protocol"),
        ("editor.layers=[0,1,9]", "editor.layers=[0, 1, 9] but tiny-llama has 6 layers (0..5)"),
        ("dataset.limit=1000", "dataset.limit=1000 but counterfact-sample has only 300 usable records"),
    ],
)
def test_bad_values_fail_fast_with_a_clear_message(tmp_path, override, needle):
    proc = sphere_edit(
        "model=tiny-llama",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        *override.split(),
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_missing_or_damaged_model_files_give_one_line(tmp_path):
    bad = tmp_path / "damaged.gguf"
    bad.write_bytes(b"GGUF" + bytes(8))
    for path, needle in ((tmp_path / "absent.gguf", "not found"), (bad, "could not be loaded")):
        proc = sphere_edit(
            "logger=none", f"model.path={path}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
        )
        assert proc.returncode != 0 and needle in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
