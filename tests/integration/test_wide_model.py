"""The 8B code path at LLaMA3-8B's real widths, on the CPU: a random 2-layer LLaMA with hidden 4096,
MLP 14336 and the LLaMA-3 vocabulary of 128,256 (1.49 B parameters, 5.96 GB in float32) runs four
MEMIT + SPHERE edits end to end, and its peak memory stays within 1.3× its weights plus the
d_ff × d_ff statistics the plan documents (docs/plan.md): C of each edited layer, kept for the run,
and the one matrix A = λC + KᵀK the layer solve factors.

Slow tier (~20 min on 2 CPU cores, ~10 GB of memory): skipped when less than 12 GiB is available.
The run is measured in a fresh process (``python -m sphere.bench.memory``), whose VmHWM is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, settings

pytestmark = pytest.mark.slow

D_MODEL, D_FF, LAYERS = 4096, 14336, [0, 1]
WIDE = [
    "model=tiny-llama",
    f"model.tiny.hidden_size={D_MODEL}",
    f"model.tiny.intermediate_size={D_FF}",
    "model.tiny.num_hidden_layers=2",
    "model.tiny.num_attention_heads=32",
    "model.tiny.num_key_value_heads=8",
    f"model.layers.multi=[{','.join(map(str, LAYERS))}]",
    "editor=memit",
    "sphere=on",
    "dataset.limit=4",
    "dataset.batch_size=4",
    "model.covariance.n_samples=64",  # two batches of 32 texts: the peak does not depend on the count
]


def _available_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_four_memit_sphere_edits_at_llama3_8b_width_fit_in_1_3x_the_weights_plus_statistics(tmp_path):
    if _available_gib() < 12:
        pytest.skip(f"{_available_gib():.1f} GiB available; the run needs ~10 GiB")
    from sphere.run.plan import make_plan

    out = tmp_path / "memory.json"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run(
        [sys.executable, "-m", "sphere.bench.memory", str(out), *WIDE, f"run.cache_dir={tmp_path / 'cache'}"],
        check=True,
        cwd=ROOT,
        env=env,
    )
    r = json.loads(out.read_text())

    plan = make_plan(settings(*WIDE, tmp=tmp_path), budget=None)
    documented = {i.label: i.nbytes for i in plan.items}
    weights = documented["model weights (float32)"]  # 1,486,901,248 parameters (untied embeddings)
    assert weights == 1_486_901_248 * 4 and abs(r["weights_bytes"] - weights) < 2**20  # + rotary buffers
    c = documented["key statistics C (kept by the statistics cache)"]
    a = next(n for label, n in documented.items() if label.startswith("solve workspace"))
    assert c == len(LAYERS) * D_FF**2 * 4 and a >= D_FF**2 * 8
    bound = 1.3 * weights + c + a
    phases = {name: round(p["peak_rss"] / 2**30, 2) for name, p in r["phases"].items()}
    assert r["peak_rss"] <= bound, f"peak {r['peak_rss'] / 2**30:.2f} GiB > {bound / 2**30:.2f}: {phases}"

    # The checkpoint holds the two edited layers once; W₀ is its own file, written once.
    layer = D_MODEL * D_FF * 4
    files = r["checkpoint_files"]
    assert set(files) == {"checkpoint.safetensors", "w0.safetensors"}
    assert len(LAYERS) * layer < files["checkpoint.safetensors"] < len(LAYERS) * layer * 1.01
    assert len(LAYERS) * layer < files["w0.safetensors"] < len(LAYERS) * layer * 1.01
    assert all(v == v for v in r["metrics"].values()) and r["metrics"]  # finite edit metrics
    assert Path(out).exists()
