"""A model sharded over several devices by a device map: every editor stage gives what it gives on
one device, and edited layers offloaded by the map are refused at start-up.

There is one CPU here, so the shards are virtual (``tests/virtual_devices.py``): accelerate's
hooks move each block's inputs to its device as on GPUs, and any operation that mixes tensors of
two devices raises, as it would on two GPUs. The map puts the embedding on cpu:0, blocks 0–1 on
cpu:1 and blocks 2–3 with the final norm and LM head on cpu:2, so the edited layers 1 and 2 sit on
different devices, neither on the inputs' nor (layer 1) on the logits', and the lower blocks that
the z optimisation skips (0–1) are on another device than the embedding.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import DISTINCT8, restored, settings
from virtual_devices import DeviceMismatch, split

from editors.core.covariance import weights_digest
from editors.core.model_spec import input_device, output_device, spec_for
from editors.core.weights import EditedWeights, OffloadedWeightError, check_editable
from sphere.data import load_records
from sphere.errors import ConfigError
from sphere.evaluation.decoding import generate_texts
from sphere.models import load_model
from sphere.run.checkpoint import load_checkpoint
from sphere.run.runner import SequentialRun
from sphere.run.state import Progress

D0, D1, D2 = (torch.device("cpu", i) for i in range(3))
DEVICE_MAP = {
    "model.embed_tokens": D0,
    "model.rotary_emb": D0,
    "model.layers.0": D1,
    "model.layers.1": D1,
    "model.layers.2": D2,
    "model.layers.3": D2,
    "model.norm": D2,
    "lm_head": D2,
}
# A 4-block tiny LLaMA, edited at layers 1 and 2 (ROME: 1), with short z optimisation and statistics.
TINY = (
    "model=tiny-llama",
    "model.tiny.hidden_size=64",
    "model.tiny.intermediate_size=128",
    "model.tiny.num_hidden_layers=4",
    "model.layers.multi=[1,2]",
    "model.layers.single=[1]",
    "model.covariance.n_samples=32",
    "model.covariance.max_length=32",
)
EDITORS = ("memit", "rome", "alphaedit", "rect", "prune")


def run_settings(tmp: Path, editor: str):
    return settings(
        *TINY,
        f"editor={editor}",
        "sphere=on",
        "editor.v_num_grad_steps=3",
        "editor.context_template_length_params=[[5,5]]",
        f"dataset.path={DISTINCT8}",
        "dataset.limit=2",
        "dataset.batch_size=1",
        tmp=tmp,
    )


@pytest.fixture(scope="module")
def plain():
    return load_model(settings(*TINY, tmp=Path("/tmp")).model)


@pytest.fixture(scope="module")
def sharded(plain):
    model, tok = copy.deepcopy(plain[0]), plain[1]
    return model, tok, split(model, DEVICE_MAP)


def edit_twice(model, tok, s, tmp: Path, mode=None):
    """Two batches of one request on ``model`` (statistics collected on it, into ``tmp``), the
    weights and the editor's state saved to a checkpoint and restored between them: ΔW of each
    edited layer as evaluated (readout transforms applied), and the final-moment metrics."""
    s = dataclasses.replace(s, run=dataclasses.replace(s.run, cache_dir=str(tmp / "cache")))
    records = load_records(s.dataset.kind, s.dataset.path, limit=2)
    with restored(model), mode or contextlib.nullcontext():
        run = SequentialRun(s, model, tok, "tiny-sharded-test", records, tmp)
        run.editor.setup()
        run.editor.apply([records[0].request])
        run._checkpoint(tmp / "checkpoint", Progress())
        for layer in run.layers:  # lose the edit, then take it back from the checkpoint
            run.ctx.weights.write(layer, run.ctx.pretrained(layer))
        run.restore(load_checkpoint(tmp / "checkpoint"))
        run.editor.apply([records[1].request])
        deltas = {}
        with run.evaluated_weights():
            for layer in run.layers:
                w = run.ctx.weights.read(layer)
                deltas[layer] = (w - run.ctx.pretrained(layer).to(w.device)).cpu()
            metrics = run.measure("final", records, 2)
    return deltas, metrics


@pytest.mark.parametrize("editor", EDITORS)
def test_edit_on_sharded_model_equals_one_device(tmp_path, plain, sharded, editor):
    """Statistics, templates, keys, z (with the lower-block reuse), the solves, SPHERE, the editor's
    own transforms, the weight updates, a checkpoint's save and restore, and the evaluation, all on
    the sharded model: the same ΔW and metrics as on one device, and no operation mixed devices
    (it would have raised)."""
    model, tok, vd = sharded
    s = run_settings(tmp_path, editor)
    want, want_metrics = edit_twice(*plain, s, tmp_path / "one")
    got, got_metrics = edit_twice(model, tok, s, tmp_path / "sharded", vd)
    assert got.keys() == want.keys()
    for layer in want:
        assert want[layer].abs().max() > 0, f"layer {layer} was not edited"
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-7)
    assert got_metrics == pytest.approx(want_metrics, rel=1e-5, nan_ok=True)
    # The z optimisation skips the lower blocks by replacing their forward; accelerate's hooks
    # (also an instance ``forward``) must be back, or the next forward would mix devices.
    for name in DEVICE_MAP:
        assert "forward" in vars(model.get_submodule(name)), f"{name} lost its device hook"


def test_virtual_devices_catch_a_mix(sharded):
    """The harness itself: a tensor of the wrong device meeting a layer's weight raises."""
    model, _, vd = sharded
    w = model.model.layers[2].mlp.down_proj.weight
    with vd, pytest.raises(DeviceMismatch):
        w + torch.ones(w.shape, device=D1)
    with vd:
        assert w.device == D2 and input_device(model) == D0 and output_device(model) == D2
        assert (w + torch.ones(w.shape, device=D1).to(w.device)).device == D2


def test_generation_on_sharded_model(plain, sharded):
    model, tok, vd = sharded
    prompts = ["The Eiffel Tower is in", "Danielle Darrieux speaks"]
    want = generate_texts(plain[0], tok, prompts, max_new_tokens=4)
    with vd:
        assert generate_texts(model, tok, prompts, max_new_tokens=4) == want


def test_master_copy_lives_with_its_layer(sharded):
    """A bf16/fp16 layer's float32 master copy stays on the layer's device whatever is written
    (a checkpoint restore writes host tensors)."""
    model, _, vd = sharded
    spec = spec_for(model)
    w = model.model.layers[2].mlp.down_proj.weight
    saved = w.detach().clone()
    try:
        with vd:
            w.data = w.data.to(torch.bfloat16)
            assert w.device == D2
            weights = EditedWeights(model, spec)
            weights.write(2, saved.float().cpu())
            assert weights.read(2).device == D2
            weights.add(2, torch.zeros(saved.shape, device=D2))
    finally:
        w.data = saved


def offloaded_model(plain, tmp_path: Path):
    """The tiny model with block 3 offloaded to disk by a real accelerate dispatch."""
    from accelerate import dispatch_model

    model, tok = copy.deepcopy(plain[0]), plain[1]
    device_map = {
        "model.embed_tokens": "cpu",
        "model.rotary_emb": "cpu",
        "model.norm": "cpu",
        "lm_head": "cpu",
    }
    device_map |= {f"model.layers.{i}": "cpu" for i in range(3)} | {"model.layers.3": "disk"}
    return dispatch_model(model, device_map, main_device="cpu", offload_dir=str(tmp_path / "offload")), tok


def test_offloaded_edited_layer_is_refused_at_startup(tmp_path, plain):
    model, tok = offloaded_model(plain, tmp_path)
    spec = spec_for(model)
    assert model.model.layers[3].mlp.down_proj.weight.device.type == "meta"
    check_editable(model, spec, [1, 2])  # layers kept on a device are fine
    with pytest.raises(
        OffloadedWeightError, match=r"model\.layers\.3\.mlp\.down_proj\.weight \(edited layer 3\)"
    ):
        check_editable(model, spec, [2, 3])
    s = settings(*TINY, "editor=memit", "editor.layers=[2,3]", f"dataset.path={DISTINCT8}", tmp=tmp_path)
    with pytest.raises(ConfigError, match="model.device_map must keep the edited layers on a device"):
        SequentialRun(s, model, tok, "t", [], tmp_path)


def test_offloaded_layers_are_read_for_the_statistics_key(tmp_path, plain):
    """The statistics cache key reads the weights of every layer, offloaded ones from the offload."""
    model, _ = offloaded_model(plain, tmp_path)
    spec = spec_for(model)
    assert weights_digest(model, spec, range(4)) == weights_digest(plain[0], spec, range(4))


def test_tiny_model_takes_a_device_map(tmp_path):
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers": "cpu"}
    device_map |= {"model.norm": "cpu", "lm_head": "cpu"}
    s = settings(*TINY, f"model.device_map={_hydra_dict(device_map)}", tmp=tmp_path)
    model, _ = load_model(s.model)
    assert model.hf_device_map == device_map
    with pytest.raises(ConfigError, match="model.device_map"):
        settings(*TINY, "model.device_map=everywhere", tmp=tmp_path)


def _hydra_dict(d: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"
