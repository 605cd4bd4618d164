"""The same edit on CUDA as on the CPU: MEMIT + SPHERE makes 8 sequential CounterFact edits (two
batches of 4) of the tiny LLaMA of configs/model/tiny-llama.yaml once per device, from the same
random weights and each with its own key statistics, and the two runs agree to float tolerance.

Marked ``gpu``: tests/conftest.py skips it where no CUDA device is visible; ``make test-gpu``
(``pytest -m gpu``) runs it on a GPU machine. Everything else in tests/ runs on the CPU, so this is
the check that no stage (statistics, z optimisation, the solve, the SPHERE projection, evaluation)
loses a tensor to the wrong device or depends on the device beyond rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import DISTINCT8, settings

from editors.core.weights import read_weight
from sphere.data import load_records
from sphere.models import load_model
from sphere.run.runner import SequentialRun
from sphere.run.tracking import Tracker

pytestmark = pytest.mark.gpu

# float32 on both devices; the two runs differ by rounding only (summation order in the kernels),
# which the z optimisation and the solve amplify a little. A lost transform or a stage computed
# from another device's tensor differs by O(1).
WEIGHT_RTOL = 5e-3
HE_RTOL = 1e-4
ONE_RECORD = 100 / 8  # a rate over 8 records moves in steps of 12.5 points


def edit_on(device: str, tmp: Path) -> tuple[dict, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """(summary, W₀ and ΔW = W − W₀ of each edited layer, on the CPU) of the run on ``device``."""
    s = settings(
        "model=tiny-llama",
        f"model.device={device}",
        "editor=memit",
        "sphere=on",
        f"dataset.path={DISTINCT8}",
        "dataset.limit=8",
        "dataset.batch_size=4",
        tmp=tmp,
    )
    model, tok = load_model(s.model)
    assert next(model.parameters()).device.type == torch.device(device).type
    records = load_records(s.dataset.kind, s.dataset.path, limit=s.dataset.limit)
    run = SequentialRun(s, model, tok, "tiny-llama-gpu-test", records, tmp)
    summary = run.run(Tracker(tmp, s.logger, run_name=device, group="gpu", tags=[], config={}))
    w0 = {layer: run.ctx.pretrained(layer) for layer in run.layers}
    delta = {
        layer: read_weight(model, run.spec, layer).detach().float().cpu() - w0[layer] for layer in run.layers
    }
    return summary, w0, delta


def test_memit_with_sphere_on_cuda_matches_the_cpu(tmp_path):
    cpu, w0_cpu, delta_cpu = edit_on("cpu", tmp_path / "cpu")
    gpu, w0_gpu, delta_gpu = edit_on("cuda", tmp_path / "cuda")

    assert gpu["n_edits"] == cpu["n_edits"] == 8
    assert delta_gpu.keys() == delta_cpu.keys()
    for layer in delta_cpu:
        torch.testing.assert_close(w0_gpu[layer], w0_cpu[layer], rtol=0, atol=0)  # the same start
        assert delta_cpu[layer].norm() > 0
        err = float((delta_gpu[layer] - delta_cpu[layer]).norm() / delta_cpu[layer].norm())
        assert err < WEIGHT_RTOL, f"layer {layer}: ‖ΔW_cuda − ΔW_cpu‖ / ‖ΔW_cpu‖ = {err:.2e}"
    assert gpu["he"].keys() == cpu["he"].keys()
    for layer, he in cpu["he"].items():
        assert gpu["he"][layer] == pytest.approx(he, rel=HE_RTOL), layer
    for metric in ("efficacy", "generalization", "specificity"):
        assert abs(gpu[metric] - cpu[metric]) <= ONE_RECORD, (metric, gpu[metric], cpu[metric])
        assert abs(gpu["pre"][metric] - cpu["pre"][metric]) <= ONE_RECORD, metric
    assert cpu["efficacy"] > cpu["pre"]["efficacy"]  # the edits took hold (tests/integration/test_editors.py)
