"""Saved runs: kept points, re-evaluation without editing, export as an HF checkpoint or a patch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import DISTINCT8


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """A finished tiny MEMIT+SPHERE run: 8 edits in batches of 4, evaluated at 4, kept at 4."""
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    tmp = tmp_path_factory.mktemp("saved")
    cfg = compose_config(
        [
            "model=tiny-llama",
            "logger=none",
            f"dataset.path={DISTINCT8}",
            "dataset.limit=8",
            "dataset.batch_size=4",
            "eval.every=4",
            "run.keep_at=[4]",
            "run.plots=false",
            f"run.cache_dir={tmp / 'cache'}",
        ]
    )
    run_experiment(cfg, tmp / "run")
    return tmp / "run"


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_kept_points_and_summary_fields(saved_run):
    from sphere.run.saved import resolve_points, saved_points

    assert saved_points(saved_run) == {0: "kept", 4: "kept", 8: "checkpoint"}
    assert resolve_points(saved_run, "last") == [8]
    with pytest.raises(ValueError, match=r"no weights saved at \[5\] edits; saved: \[0, 4, 8\]"):
        resolve_points(saved_run, "5")
    summary = json.loads((saved_run / "summary.json").read_text())
    assert summary["seed"] == 0
    assert summary["efficacy_se"] >= 0.0 and "specificity_top1_se" in summary
    # where "auto" resolved for MEMIT (the report keys settings on a non-default reference)
    assert summary["sphere"]["reference"] == "auto"
    assert summary["sphere"]["resolved"] == {
        "point": "step",
        "reference": "current",
        "default_point": "step",
        "default_reference": "current",
    }


def test_reevaluation_reproduces_the_logged_metrics(saved_run):
    from sphere.run.reevaluate import reevaluate

    result = reevaluate(saved_run, at="all", pre=True)
    by_n = {p["n_edits"]: p for p in result["points"]}
    rows = _rows(saved_run)
    logged = {0: rows[0], 4: next(r for r in rows if r["n_edits"] == 4 and "efficacy" in r), 8: rows[-1]}
    for n, row in logged.items():
        for key in ("efficacy", "generalization", "specificity", "efficacy_top1", "he/layer_1"):
            assert by_n[n][key] == pytest.approx(row[key], abs=1e-6), (n, key)
    assert json.loads(Path(result["path"]).read_text())["points"] == result["points"]
    # another metric set, same weights: only HE, and nothing edited again
    ckpt = (saved_run / "checkpoint" / "checkpoint.safetensors").stat().st_mtime_ns
    only_he = reevaluate(saved_run, ["eval.evaluators=[he]"], at="4")
    assert set(only_he["points"][0]) == {"n_edits", "he/layer_0", "he/layer_1", "he/layer_2"}
    assert (saved_run / "checkpoint" / "checkpoint.safetensors").stat().st_mtime_ns == ckpt


def test_reevaluation_keeps_each_points_generated_texts(saved_run):
    """The texts behind a fluency number, per point and record, and only that point's."""
    from sphere.run.reevaluate import reevaluate

    overrides = [
        "eval.evaluators=[generation]",
        "eval.generation.prompts=edit_prompts",
        "eval.generation.every_case=2",
        "eval.generation.max_length=12",
        "eval.generation.top_k=0",
    ]
    result = reevaluate(saved_run, overrides, at="4,8", pre=True)
    assert set(result["texts"]) == {"0", "4", "8"}
    for n, point in zip(("0", "4", "8"), result["points"]):
        texts = result["texts"][n]
        assert len(texts) == point["n_generation_records"]  # every second record edited by then
        assert all(len(t) == 2 and all(isinstance(x, str) and x for x in t) for t in texts.values())
    assert len(result["texts"]["0"]) == 4 and len(result["texts"]["4"]) == 2  # 8 records pre, 4 edited at 4
    assert result["texts"]["4"].keys() <= result["texts"]["8"].keys()
    assert json.loads(Path(result["path"]).read_text())["texts"] == result["texts"]
    plain = reevaluate(saved_run, ["eval.evaluators=[he]"], at="4")
    assert plain["texts"] == {}


def test_reevaluation_refuses_unknown_keys(saved_run):
    from sphere.errors import ConfigError
    from sphere.run.reevaluate import reevaluate

    with pytest.raises(ConfigError, match="nope"):
        reevaluate(saved_run, ["eval.nope=1"])


def test_export_checkpoint_and_patch(saved_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from sphere.export import apply_patch, export_run
    from sphere.models import load_model
    from sphere.run.checkpoint import load_checkpoint
    from sphere.run.config import validate
    from sphere.run.reevaluate import run_config_with

    final = load_checkpoint(saved_run / "checkpoint")["weights"]  # MEMIT: live weights = evaluated
    hf_dir = export_run(saved_run, tmp_path / "hf")
    exported = AutoModelForCausalLM.from_pretrained(hf_dir)
    for layer, w in final.items():
        torch.testing.assert_close(exported.model.layers[int(layer)].mlp.down_proj.weight, w)
    assert json.loads((hf_dir / "sphere_edit.json").read_text())["n_edits"] == 8

    patch = export_run(saved_run, tmp_path / "p.safetensors", at="4", patch=True)
    base, _ = load_model(validate(run_config_with(saved_run)).model)
    info = apply_patch(base, patch)
    assert info["n_edits"] == 4 and info["editor"] == "memit"
    from sphere.run.saved import kept_path, load_kept

    for layer, w in load_kept(kept_path(saved_run, 4)).items():
        torch.testing.assert_close(base.model.layers[layer].mlp.down_proj.weight, w)
    with pytest.raises(ValueError, match="not the base this patch was made from"):
        apply_patch(base, patch)  # already applied: the base check refuses a second time


def test_merge_adds_metrics_to_the_runs_own_files(saved_run, tmp_path):
    import shutil

    from sphere.evaluation.registry import register_evaluator, unregister_evaluator
    from sphere.run.reevaluate import reevaluate

    run = tmp_path / "run"
    shutil.copytree(saved_run, run)

    @register_evaluator("edits_seen_test")
    class EditsSeen:
        """A metric a run did not have: how many records the point covers."""

        moments = frozenset({"pre", "final"})
        notes = {"edits_seen": "test metric"}

        def __init__(self, cfg):
            pass

        def __call__(self, moment, view):
            return {"edits_seen": float(len(view.records))}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    try:
        reevaluate(run, ["eval.evaluators=[edits_seen_test]"], at="all", pre=True, merge=True)
    finally:
        unregister_evaluator("edits_seen_test")
    rows = _rows(run)
    assert rows[0]["edits_seen"] == 8.0  # pre: every record
    assert [r.get("edits_seen") for r in rows if r["n_edits"] == 4] == [4.0]
    assert rows[-1]["final"] and rows[-1]["edits_seen"] == 8.0 and "efficacy" in rows[-1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["edits_seen"] == 8.0 and summary["pre"]["edits_seen"] == 8.0
    assert summary["notes"]["edits_seen"] == "test metric" and "efficacy" in summary
    assert "edits_seen: test metric" in (run / "summary.txt").read_text()  # the note is printed


def test_cli_exit_codes(saved_run, tmp_path, capsys):
    from sphere.cli.evaluate import main as sphere_eval
    from sphere.cli.export import main as sphere_export

    assert sphere_eval([str(saved_run), "--list"]) == 0
    assert "4 edits  (kept)" in capsys.readouterr().out
    assert sphere_eval([str(saved_run), "--at", "4", "eval.evaluators=[he]"]) == 0  # options, then overrides
    assert sphere_eval([str(saved_run), "--at", "5"]) == 1
    assert sphere_eval([str(saved_run), "eval.nope=1"]) == 2
    assert sphere_eval([str(tmp_path / "missing")]) == 2  # not a run directory: a usage error
    assert sphere_eval([str(tmp_path / "missing"), "--list"]) == 2
    assert "sphere-eval:" in capsys.readouterr().err
    assert sphere_export([str(saved_run), "--patch", "--at", "4", "-o", str(tmp_path / "p.safetensors")]) == 0
    assert (tmp_path / "p.safetensors").stat().st_size > 0
    assert sphere_export([str(tmp_path / "missing")]) == 1


def test_general_ability_through_a_run_its_summary_and_report(tmp_path):
    """The ``general`` evaluator in a real sequential run: measured before editing, at each multiple of
    ``eval.general.every`` and at the end; its keys reach metrics.jsonl, summary.json and the report's
    general-ability figure and table columns."""
    from sphere.report.build import build_report
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    cfg = compose_config(
        [
            "model=tiny-llama",
            "logger=none",
            f"dataset.path={DISTINCT8}",
            "dataset.limit=8",
            "dataset.batch_size=2",
            "eval.every=4",
            "eval.evaluators=[edit_quality,general]",
            "eval.general.tasks=[nli,sst2]",
            "eval.general.n_items=3",
            "eval.general.every=4",
            "run.plots=false",
            f"run.cache_dir={tmp_path / 'cache'}",
        ]
    )
    from sphere.evaluation import general

    calls = []
    real = general.generate_texts
    general.generate_texts = lambda *a, **k: calls.append(1) or real(*a, **k)
    run = tmp_path / "run"
    try:
        run_experiment(cfg, run)
    finally:
        general.generate_texts = real
    rows = [r for r in _rows(run) if "general/mean" in r]
    # pre, the batches reaching 4 and 8, and the final row, which reuses the measurement at 8
    assert [r["n_edits"] for r in rows] == [0, 4, 8, 8] and rows[-1].get("final")
    assert {k: v for k, v in rows[-1].items() if k.startswith("general/")} == {
        k: v for k, v in rows[-2].items() if k.startswith("general/")
    }
    assert len(calls) == 2 * 3  # two tasks at 0, 4 and 8: nothing generated again for the final row
    summary = json.loads((run / "summary.json").read_text())
    for key in ("general/nli", "general/sst2", "general/sst2_f1", "general/sst2_mcc", "general/mean"):
        assert key in summary
    assert 0.0 <= summary["general/sst2"] <= 100.0
    assert "general" in summary["notes"]
    report = build_report([run], tmp_path / "report", formats=("png",))
    assert any(f.name == "general_vs_edits" for f in report.figures.figures)
    table = (tmp_path / "report" / "tables").glob("*.csv")
    assert any("general" in p.read_text() for p in table)
