"""Search, not only grids: the Optuna sweeper preset on the tiny model, 3 trials, each returning its
summary's score (run.objective) to the sweeper, which writes the best α and β."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


@pytest.mark.slow  # 3 tiny-model runs: minutes on 2 shared CPU cores
def test_optuna_search_names_the_best_alpha(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphere.cli.edit",
            "-m",
            "+experiment=search_sphere_smollm2",
            "model=tiny-llama",
            "dataset.limit=4",
            "dataset.batch_size=2",
            "hydra.sweeper.n_trials=3",
            f"run.cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna" and 0.1 <= result["best_params"]["sphere.alpha"] <= 1.0
    jobs = json.loads((sweep / "index.json").read_text())["jobs"]
    assert len(jobs) == 3 and all(j["status"] == "finished" for j in jobs)
    # The best value is the best trial's score, as its summary.json has it.
    assert result["best_value"] == max(j["metrics"]["score"] for j in jobs)
    best = [j for j in jobs if f"sphere.alpha={result['best_params']['sphere.alpha']}" in j["overrides"]]
    assert len(best) == 1 and Path(best[0]["run_dir"]).is_dir()
