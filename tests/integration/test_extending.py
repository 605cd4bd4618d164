"""Extending the framework as docs/editors.md says: a new editor is one file plus one config, a new
evaluator one file, and nothing else is touched; and every registered editor honours the contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import ROOT, restored, settings

from editors.core.protocol import Editor
from editors.core.weights import read_weight
from editors.registry import available_editors, get_editor
from sphere.data import load_records
from sphere.run.runner import SequentialRun

NEW_EDITOR = '''
"""Half-MEMIT (a test plug-in): MEMIT whose every update is scaled by `shrink`."""
from dataclasses import dataclass

from editors.core.footprint import ALWAYS, Footprint, PlanItem
from editors.core.hparams import knob
from editors.core.spread import SPREAD_PLACEMENT, SpreadEditor
from editors.memit import MEMITHParams, memit_footprint, memit_solve
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


def half_footprint(shape, hp):
    """MEMIT's pieces plus a buffer of its own: one d_model x d_ff matrix per edited layer."""
    extra = PlanItem(
        "half-MEMIT: shrink buffer",
        "device",
        len(shape.layers) * shape.d_model * shape.d_ff * 4,
        f"{len(shape.layers)} x {shape.d_model}x{shape.d_ff} x 4 B",
        (ALWAYS,),
        "set editor.shrink=1",
    )
    return memit_footprint(shape, hp) + Footprint([extra])


@register_editor(
    "_test_half",
    hparams=HalfHParams,
    placement=SPREAD_PLACEMENT,
    display_name="Half-MEMIT",
    footprint=half_footprint,
)
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
from sphere.evaluation.catalogue import Metric
from sphere.evaluation.registry import register_evaluator


@register_evaluator(
    "_test_count",
    metrics=[
        Metric("count/records", "Records counted", unit="records", better=-1, order=95),
        Metric("count/n_edits", "Edits counted", unit="edits", better=0, table=False),
    ],
)
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


def _cli(module: str, *args: str, cwd, tree) -> subprocess.CompletedProcess:
    """``python -m module args`` on the code in ``tree`` (first on the path, before the checkout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


def _checkout_copy(dest):
    """The code and configs of the checkout, copied (the bundled data linked): a plug-in test adds its
    files there and never to the checkout, which other tests (and other pytest workers) read."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("sphere", "editors", "configs"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    (dest / "data").symlink_to(ROOT / "data", target_is_directory=True)
    return dest


def test_a_new_editor_and_evaluator_are_one_file_each(tmp_path):
    """The issue's contract: an editor with a memory footprint and an evaluator with new metrics,
    each one file (plus the editor's yaml), reach the plan, the run summary and the report's tables
    with no other file edited."""
    tree = _checkout_copy(tmp_path / "tree")
    files = {
        tree / "editors" / "_test_half.py": NEW_EDITOR,
        tree / "configs" / "editor" / "_test_half.yaml": NEW_CONFIG,
        tree / "sphere" / "evaluation" / "_test_count.py": NEW_EVALUATOR,
    }
    for path, text in files.items():
        path.write_text(textwrap.dedent(text))
    out = tmp_path / "runs" / "half"
    common = ["model=tiny-llama", "editor=_test_half", "sphere=on", "logger=none"]
    plan = _cli("sphere.cli.edit", *common, "run.plan=true", cwd=tmp_path, tree=tree)
    proc = _cli(
        "sphere.cli.edit",
        *common,
        "dataset.limit=4",
        "dataset.batch_size=2",
        "eval.evaluators=[edit_quality,he,_test_count]",
        "run.plots=false",
        f"run.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        tree=tree,
    )
    report = _cli(
        "sphere.cli.report",
        str(tmp_path / "runs"),
        "-o",
        str(tmp_path / "report"),
        "-q",
        cwd=tmp_path,
        tree=tree,
    )
    assert "_test_half" not in {p.stem for p in (ROOT / "editors").glob("*.py")}  # the checkout untouched
    # the plan: the editor's own footprint item, sized from the model's shape (2 layers x 64 x 256 x 4 B)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "half-MEMIT: shrink buffer" in plan.stdout and "shrink buffer" in plan.stdout
    assert "solve workspace" in plan.stdout  # MEMIT's pieces it is built from
    # the run and its summary: the evaluator's metrics, labelled from its declaration
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["editor"] == "_test_half" and summary["n_edits"] == 4
    assert summary["count/records"] == 4 and summary["count/n_edits"] == 4
    assert summary["pre"]["count/records"] == 4 and summary["pre"]["count/n_edits"] == 0
    assert "count/records" in (out / "summary.txt").read_text()  # lower-is-better metrics too
    assert "shrink: 0.25" in (out / "config.yaml").read_text()
    # the report: the editor's display name and the new metric's column, no report file edited
    assert report.returncode == 0, report.stderr[-3000:]
    tables = "\n".join(f.read_text() for f in (tmp_path / "report").rglob("*.md"))
    assert "Half-MEMIT" in tables and "Records counted" in tables


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
