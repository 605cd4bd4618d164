"""Long checks (`make test-slow`): 50 sequential edits per editor, with and without SPHERE."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

EDITORS = ["memit", "rect", "prune", "alphaedit", "rome"]


@pytest.mark.slow
@pytest.mark.parametrize("sphere", ["off", "on"])
@pytest.mark.parametrize("editor", EDITORS)
def test_fifty_sequential_edits(tmp_path, editor, sphere):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphere.cli.edit",
            "model=tiny-qwen2",
            f"editor={editor}",
            f"sphere={sphere}",
            "logger=none",
            "dataset.limit=50",
            f"dataset.batch_size={1 if editor == 'rome' else 10}",
            "eval.every=10",
            "run.plots=true",
            f"run.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "efficacy" in r]
    assert [r["n_edits"] for r in evaluated] == [0, 10, 20, 30, 40, 50]
    he_rows = [r for r in rows if any(k.startswith("he/") for k in r)]
    assert len({r["n_edits"] for r in he_rows}) >= (51 if editor == "rome" else 6)  # HE after every batch
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert math.isfinite(v), (k, r["n_edits"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_edits"] == 50 and all(math.isfinite(v) for v in summary["he"].values())
    assert (out / "he_vs_edits.png").exists() and (out / "metrics_vs_edits.png").exists()
