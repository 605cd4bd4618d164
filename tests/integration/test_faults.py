"""Faults during a run: a non-finite update stops the run naming the batch with nothing of it
written (or the batch is undone and recorded with run.on_nonfinite=skip), and bf16 models
accumulate small edits like float32 ones (a float32 master copy of the edited layers)."""

from __future__ import annotations

import pytest
import torch
from helpers import DISTINCT8, restored, settings, tiny

from editors.core.model_spec import spec_for
from editors.core.weights import EditedWeights, NonFiniteUpdateError, read_weight
from sphere.data import load_records
from sphere.run.runner import SequentialRun
from sphere.run.tracking import Tracker


def _run(tmp_path, model_pair, *overrides):
    model, tok = model_pair
    s = settings(
        "model=tiny-llama", "editor=memit", "sphere=on", f"dataset.path={DISTINCT8}", *overrides, tmp=tmp_path
    )
    records = load_records(s.dataset.kind, s.dataset.path, limit=8)
    return s, SequentialRun(s, model, tok, "tiny-llama-test", records, tmp_path)


def _poison_second_batch(run):
    real, calls = run.editor.solve, []

    class Poisoned:
        wants_edited_keys = False

        def setup(self, ctx, layers):
            real.setup(ctx, layers)

        def __call__(self, layer, keys, resid):
            calls.append(layer)
            delta = real(layer, keys, resid)
            return delta * float("nan") if len(calls) > len(run.layers) and layer == run.layers[-1] else delta

        def remember(self, keys):
            pass

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    run.editor.solve = Poisoned()


def test_a_nan_update_stops_the_run_naming_the_batch_with_nothing_written(tmp_path, config_tiny_llama):
    model, _ = config_tiny_llama
    with restored(model):
        s, run = _run(tmp_path, config_tiny_llama, "dataset.batch_size=4")
        _poison_second_batch(run)
        seen = {}
        real_apply = run.editor.apply

        def apply(requests):
            out = real_apply(requests)
            seen["after_first"] = {layer: read_weight(model, run.spec, layer) for layer in run.layers}
            return out

        run.editor.apply = apply
        tracker = Tracker(tmp_path, s.logger, run_name="t", group="g", tags=[], config={})
        with pytest.raises(
            NonFiniteUpdateError,
            match=r"batch 2/2 \(case_ids .*\): non-finite values in the update of model\.layers\.2",
        ):
            run.run(tracker)
        for layer in run.layers:  # the model is exactly as after batch 1
            assert torch.equal(read_weight(model, run.spec, layer), seen["after_first"][layer])


def test_a_nan_batch_is_undone_and_recorded_when_asked(tmp_path, config_tiny_llama):
    model, _ = config_tiny_llama
    with restored(model):
        s, run = _run(tmp_path, config_tiny_llama, "dataset.batch_size=4", "run.on_nonfinite=skip")
        _poison_second_batch(run)
        summary = run.run(Tracker(tmp_path, s.logger, run_name="t", group="g", tags=[], config={}))
    assert summary["skipped_batches"] == [2] and summary["n_edits"] == 4
    assert summary["n_records"] == 4  # the final evaluation covers the edited records only


def test_bf16_weights_accumulate_small_edits_like_float32():
    model, _ = tiny("llama", layers=2, hidden=32, ff=64)
    spec = spec_for(model)
    w32 = read_weight(model, spec, 1)
    model = model.to(torch.bfloat16)
    store = EditedWeights(model, spec)
    naive = read_weight(model, spec, 1).to(torch.bfloat16)
    delta = torch.full_like(w32, 1e-4)  # below half a bf16 step for most entries of |W| ~ 0.06
    for _ in range(100):
        store.add(1, delta)
        naive = naive + delta.to(torch.bfloat16)  # what adding into bf16 weights does
    expected = w32.to(torch.bfloat16).float() + 100 * 1e-4
    torch.testing.assert_close(store.read(1), expected, rtol=0, atol=1e-5)  # master: every edit counted
    in_model = read_weight(model, spec, 1)
    assert torch.equal(in_model, store.read(1).to(torch.bfloat16).float())  # the model holds it rounded
    kept = float((naive.float() - w32.to(torch.bfloat16).float()).mean()) / (100 * 1e-4)
    assert kept < 0.6  # adding into bf16 weights keeps ~40 % of this edit; the master copy all of it


# A whole bfloat16 run on the CPU is slow (see below); the master-copy arithmetic it rests on is
# checked in the fast tier just above.
@pytest.mark.slow
def test_a_bf16_run_edits_and_checkpoints_the_float32_master(tmp_path, config_tiny_llama):
    model, tok = config_tiny_llama
    with restored(model):
        model.to(torch.bfloat16)
        try:
            # Few z steps: without AVX-512 a bfloat16 matmul over LLaMA-3's 128k vocabulary takes
            # ~7 s on a CPU (70× float32), and one is needed per step.
            s, run = _run(
                tmp_path, (model, tok), "dataset.batch_size=2", "dataset.limit=2", "editor.v_num_grad_steps=4"
            )
            summary = run.run(Tracker(tmp_path, s.logger, run_name="t", group="g", tags=[], config={}))
            assert summary["efficacy"] > summary["pre"]["efficacy"]
            from sphere.run.checkpoint import load_checkpoint

            state = load_checkpoint(tmp_path / "checkpoint")
            for key, w in state["weights"].items():
                assert w.dtype == torch.float32
                assert torch.equal(w.to(torch.bfloat16).float(), read_weight(model, run.spec, int(key)))
        finally:
            model.to(torch.float32)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["sphere.rank=600"], "sphere.rank=600 exceeds min(rows, columns) = 256"),
        (["sphere.layers=[7]"], "sphere.layers=[7] includes layers the editor does not edit"),
        (["editor.layers=[4,5,6]"], "editor.layers=[4, 5, 6] but tiny-llama has 6 layers"),
    ],
)
def test_settings_the_model_refutes_stop_before_any_edit(tmp_path, config_tiny_llama, overrides, needle):
    from sphere.errors import ConfigError

    model, _ = config_tiny_llama
    before = read_weight(model, spec_for(model), 0)
    with pytest.raises(ConfigError) as e:
        _run(tmp_path, config_tiny_llama, *overrides)
    assert needle in str(e.value) and torch.equal(read_weight(model, spec_for(model), 0), before)


def test_a_missing_covariance_corpus_names_the_key(tmp_path, config_tiny_llama):
    model, _ = config_tiny_llama
    with restored(model):
        _, run = _run(tmp_path, config_tiny_llama, "model.covariance.corpus=/no/such/corpus.txt")
        with pytest.raises(FileNotFoundError, match=r"model\.covariance\.corpus='/no/such/corpus\.txt'"):
            run.editor.setup()
