"""Files a run writes for reviewer-grade statistics: per-record outcomes (``outcomes.jsonl``, for
paired tests across settings) and provenance in ``summary.json`` (code, software, machine, model, data)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from helpers import DISTINCT8

# per-record key (its group) -> summary column: rewrite → efficacy, paraphrase → generalization,
# neighborhood → specificity (sphere/run/outcomes.py)
COLUMNS = {
    "rewrite_success": "efficacy",
    "paraphrase_success": "generalization",
    "neighborhood_success": "specificity",
    "rewrite_top1": "efficacy_top1",
    "paraphrase_top1": "generalization_top1",
    "neighborhood_top1": "specificity_top1",
}
HEX40, HEX64 = re.compile(r"[0-9a-f]{40}"), re.compile(r"[0-9a-f]{64}")


def _run(tmp: Path, cache: Path, *overrides: str) -> Path:
    """A tiny MEMIT+SPHERE run of 8 edits in batches of 4, in-process; its directory. Runs share
    ``cache`` (the key statistics are computed once) and optimise z briefly: these tests check the
    files' consistency with each other, not how well the edits take."""
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    cfg = compose_config(
        [
            "model=tiny-llama",
            "logger=none",
            f"dataset.path={DISTINCT8}",
            "dataset.limit=8",
            "dataset.batch_size=4",
            "run.plots=false",
            "editor.v_num_grad_steps=4",
            "model.covariance.n_samples=50",
            f"run.cache_dir={cache}",
            *overrides,
        ]
    )
    run_experiment(cfg, tmp / "run")
    return tmp / "run"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache) -> Path:
    return _run(tmp_path_factory.mktemp("files"), cache)


def _strict_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file, refusing the non-JSON tokens NaN/Infinity."""

    def refuse(token: str):
        raise AssertionError(f"{path.name} holds {token}, not valid JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _check_against_summary(rows: list[dict], summary: dict) -> None:
    """Each headline column is the mean ×100 of its per-record key; per-prompt lists average to
    the per-record means."""
    for key, column in COLUMNS.items():
        values = [r[key] for r in rows if r[key] is not None]
        assert 100.0 * sum(values) / len(values) == pytest.approx(summary[column], abs=1e-9), key
    for row in rows:
        for key in COLUMNS:
            prompts = row[f"{key}_prompts"]
            assert set(prompts) <= {0, 1}
            assert row[key] == (pytest.approx(sum(prompts) / len(prompts)) if prompts else None)
        assert len(row["rewrite_success_prompts"]) == len(row["rewrite_top1_prompts"]) == 1


def test_outcomes_one_row_per_edited_record(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = _strict_rows(run_dir / "outcomes.jsonl")
    case_ids = [r["case_id"] for r in json.loads(Path(DISTINCT8).read_text())]
    assert [r["case_id"] for r in rows] == case_ids
    assert all(r["n_edits"] == r["measured_at"] == summary["n_edits"] == 8 for r in rows)
    for row in rows:
        assert {"rewrite_magnitude", "neighborhood_token_acc", "paraphrase_success_prompts"} <= set(row)
    _check_against_summary(rows, summary)
    # the lists stay out of the aggregates: no per-prompt key in summary.json or metrics.jsonl
    metric_rows = _strict_rows(run_dir / "metrics.jsonl")
    assert not [k for r in [summary, summary["pre"], *metric_rows] for k in r if k.endswith("_prompts")]


def test_outcomes_under_last_batch_are_the_immediate_rows(tmp_path, cache):
    run = _run(tmp_path, cache, "eval.protocol=last_batch")
    summary = json.loads((run / "summary.json").read_text())
    rows = _strict_rows(run / "outcomes.jsonl")
    assert [r["measured_at"] for r in rows] == [4] * 4 + [8] * 4  # right after each record's batch
    assert all(r["n_edits"] == 8 for r in rows)
    _check_against_summary(rows, summary)


def test_summary_has_provenance(run_dir):
    p = json.loads((run_dir / "summary.json").read_text())["provenance"]
    assert set(p) == {"code", "versions", "machine", "model", "data"}
    if p["code"]["commit"] == "unknown":  # not run from a git checkout (an installed package)
        assert p["code"]["dirty"] is None
    else:
        assert HEX40.fullmatch(p["code"]["commit"]) and isinstance(p["code"]["dirty"], bool)
    for name in ("python", "torch", "transformers", "sphere-edit"):
        assert p["versions"][name], name
    assert p["machine"]["device"] == "cpu" and p["machine"]["gpu"] is None
    assert p["machine"]["torch_threads"] >= 1 and p["machine"]["cpu_count"] >= 1
    assert p["model"]["name"] == "tiny-llama" and p["model"]["id"].startswith("tiny-llama-")
    assert p["model"]["source"] == "tiny" and p["model"]["revision"] is None
    assert p["data"]["kind"] == "counterfact"
    assert p["data"]["path"] == "tests/assets/counterfact_distinct8.json"  # repo-relative, no machine path
    assert HEX64.fullmatch(p["data"]["sha256"])
    assert p["data"]["sha256"] == hashlib.sha256(Path(DISTINCT8).read_bytes()).hexdigest()


def test_figures_are_drawn_by_the_layer_above_the_run(tmp_path, cache):
    """run.plots=true: ``sphere.api.run_config`` (what sphere-edit and every sweep job call) draws
    the run's figures into its directory; ``run_experiment`` alone draws none (the run layer
    never draws: the import layers, tests/unit/test_layers.py)."""
    from sphere.api import run_config
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    overrides = [
        "model=tiny-llama",
        "logger=none",
        f"dataset.path={DISTINCT8}",
        "dataset.limit=4",
        "dataset.batch_size=4",
        "run.plots=true",
        "editor.v_num_grad_steps=1",
        "model.covariance.n_samples=50",
        f"run.cache_dir={cache}",
    ]
    drawn = tmp_path / "drawn"
    run_config(compose_config(overrides), drawn)
    assert (drawn / "metrics_vs_edits.png").is_file() and (drawn / "he_vs_edits.png").is_file()
    alone = tmp_path / "alone"
    run_experiment(compose_config(overrides), alone)
    assert (alone / "summary.json").is_file() and not list(alone.glob("*.png"))
