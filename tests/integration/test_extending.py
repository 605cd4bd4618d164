"""Extending the framework as docs/editors.md says: a new editor is one file plus one config, a new
evaluator one file, and nothing else is touched; and every registered editor honours the contract."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, restored, settings

from editors.core.protocol import Editor
from editors.core.weights import read_weight
from editors.registry import available_editors, get_editor
from sphere.data import load_records
from sphere.run.runner import SequentialRun

NEW_EDITOR = '''
"""Half-MEMIT (a test plug-in): MEMIT whose every update is scaled by `shrink`."""
from dataclasses import dataclass

from editors.core.hparams import knob
from editors.core.spread import SPREAD_PLACEMENT, SpreadEditor
from editors.memit import MEMITHParams, memit_solve
from editors.registry import register_editor


class Shrink:
    point = "step"

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, name, layer, reference, delta):
        return self.factor * delta


@dataclass
class HalfHParams(MEMITHParams):
    shrink: float = knob(0.5, "factor applied to every update")


@register_editor("_test_half", hparams=HalfHParams, placement=SPREAD_PLACEMENT)
def half(hp, ctx):
    """MEMIT, scaled."""
    return SpreadEditor(hp, ctx, memit_solve(hp), own_transforms=[Shrink(hp.shrink)])
'''

NEW_CONFIG = """
defaults: [base__test_half, _self_]
layers: ${model.layers.multi}
shrink: 0.25
"""

NEW_EVALUATOR = '''
"""Counts the records an evaluation saw (a test plug-in)."""
from sphere.evaluation.registry import register_evaluator


@register_evaluator("_test_count")
class Count:
    moments = frozenset({"pre", "final"})

    def __init__(self, cfg):
        pass

    def __call__(self, moment, view):
        return {"count/records": float(len(view.records)), "count/n_edits": float(view.n_edits)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
'''


def test_a_new_editor_and_evaluator_are_one_file_each(tmp_path):
    files = {
        ROOT / "editors" / "_test_half.py": NEW_EDITOR,
        ROOT / "configs" / "editor" / "_test_half.yaml": NEW_CONFIG,
        ROOT / "sphere" / "evaluation" / "_test_count.py": NEW_EVALUATOR,
    }
    out = tmp_path / "run"
    try:
        for path, text in files.items():
            path.write_text(textwrap.dedent(text))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sphere.cli.edit",
                "model=tiny-llama",
                "editor=_test_half",
                "sphere=on",
                "logger=none",
                "dataset.limit=4",
                "dataset.batch_size=2",
                "eval.evaluators=[edit_quality,he,_test_count]",
                "run.plots=false",
                f"run.cache_dir={tmp_path / 'cache'}",
                f"hydra.run.dir={out}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        for path in files:
            path.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["editor"] == "_test_half" and summary["n_edits"] == 4
    assert summary["count/records"] == 4 and summary["count/n_edits"] == 4
    assert summary["pre"]["count/records"] == 4 and summary["pre"]["count/n_edits"] == 0
    config = (out / "config.yaml").read_text()
    assert "shrink: 0.25" in config


@pytest.mark.parametrize("sphere", ["on"])  # with SPHERE: every transform point is exercised
@pytest.mark.parametrize("editor", available_editors())
def test_every_registered_editor_honours_the_contract(tmp_path, config_tiny_llama, editor, sphere):
    """One request through each editor: the protocol's members, updates of its own layers only,
    finite, equal to the weight change, and a state that round-trips."""
    model, tok = config_tiny_llama
    s = settings("model=tiny-llama", f"editor={editor}", f"sphere={sphere}", tmp=tmp_path)
    record = load_records(s.dataset.kind, s.dataset.path, limit=1)
    with restored(model):
        run = SequentialRun(s, model, tok, "tiny-llama-test", record, tmp_path)
        ed = run.editor
        assert isinstance(ed, Editor)
        before = {layer: read_weight(model, run.spec, layer) for layer in ed.layers}
        untouched = {n: p.detach().clone() for n, p in model.named_parameters()}
        ed.setup()
        updates = ed.apply([record[0].request])
        assert sorted(u.layer for u in updates) == sorted(ed.layers)
        edited = {run.spec.weight_name(u.layer) for u in updates}
        for n, p in model.named_parameters():
            assert torch.equal(p, untouched[n]) == (n not in edited), n
        for u in updates:
            assert u.delta.shape == before[u.layer].shape and torch.isfinite(u.delta).all()
            change = read_weight(model, run.spec, u.layer) - before[u.layer]
            torch.testing.assert_close(change, u.delta, rtol=1e-4, atol=1e-6)
        state = ed.state_dict()
        twin = get_editor(editor).build(s.editor, run.ctx)
        twin.load_state_dict(state)
        again = twin.state_dict()
        assert again.keys() == state.keys()
        for k, v in state.items():
            assert torch.equal(v, again[k]) if isinstance(v, torch.Tensor) else v == again[k]
