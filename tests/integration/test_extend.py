"""Extending a run to a longer stream (``dataset.limit`` raised on its directory; sphere/run/extend.py):
the run continues from its checkpoint to what a run of the longer configuration from the start
writes (summary, metrics rows, outcomes, weights), with its unedited-model row measured again on
every record; the shorter run's files are kept; what cannot continue exactly is refused in one
line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import DISTINCT8
from safetensors.torch import load_file

from sphere.errors import ConfigError
from sphere.run.compose import compose_config
from sphere.run.experiment import run_experiment

BASE = (
    "model=tiny-llama",
    "editor=memit",
    "sphere=on",
    f"dataset.path={DISTINCT8}",
    "dataset.batch_size=2",
    "dataset.shuffle=true",  # the stream is a prefix of a shuffled file: the harder case
    "eval.every=2",
    "eval.evaluators=[edit_quality,he]",
    "editor.v_num_grad_steps=2",  # what the edits achieve does not matter here
    "run.plots=false",
    "run.checkpoint_every=1",
    "run.seed=3",
)


def run(out: Path, cache: Path, *extra: str) -> dict:
    return run_experiment(compose_config(["logger=none", f"run.cache_dir={cache}", *BASE, *extra]), out)


def rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def by_edits(out: Path) -> dict[int, dict]:
    """metrics.jsonl merged per number of edits (a batch row and an evaluation row at the same
    count are one point), without wall-clock times."""
    merged: dict[int, dict] = {}
    for r in rows(out):
        r.pop("batch_time_s", None)
        r.pop("final", None)
        merged.setdefault(r["n_edits"], {}).update(r)
    return merged


def stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("time", "provenance", "extended_from")}


def test_an_extended_run_ends_where_the_longer_run_ends(tmp_path):
    cache = tmp_path / "cache"
    longer = tmp_path / "longer"
    reference = run(longer, cache, "dataset.limit=8")
    out = tmp_path / "run"
    short = run(out, cache, "dataset.limit=4")
    assert short["n_edits"] == 4

    extended = run(out, cache, "dataset.limit=8")

    assert stable(extended) == stable(reference)
    assert extended["extended_from"] == [4]
    assert by_edits(out) == by_edits(longer)  # pre measured again on all 8 records, on W₀
    assert rows(out)[0]["n_edits"] == 0 and rows(out)[0]["n_records"] == 8  # the unedited row first
    assert [r["n_edits"] for r in rows(out) if r.get("final")] == [8]
    assert (out / "outcomes.jsonl").read_text() == (longer / "outcomes.jsonl").read_text()
    weights, ref_weights = (load_file(d / "checkpoint" / "checkpoint.safetensors") for d in (out, longer))
    assert weights.keys() == ref_weights.keys()
    assert all((weights[k] == ref_weights[k]).all() for k in weights)
    archive = out / "extended" / "at-4"
    assert json.loads((archive / "summary.json").read_text())["n_edits"] == 4  # the shorter run, kept
    assert [r["n_edits"] for r in map(json.loads, (archive / "metrics.jsonl").read_text().splitlines())][
        0
    ] == 0
    assert "limit: 4" in (archive / "config.yaml").read_text()
    again = run(out, cache, "dataset.limit=8")  # finished: not run again
    assert again == json.loads((out / "summary.json").read_text())


def test_the_evaluation_subset_must_measure_the_same_records(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    run(out, cache, "dataset.limit=4", "eval.subset=2")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as e:  # 2 of 8 would measure other records among the first 4
        run(out, cache, "dataset.limit=8", "eval.subset=2")
    assert "\n" not in str(e.value) and "set eval.subset=4" in str(e.value), e.value
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing written

    run(out, cache, "dataset.limit=8", "eval.subset=4")
    scheduled = {r["n_edits"]: r["eval_n_records"] for r in rows(out) if "eval_n_records" in r}
    assert scheduled == {2: 1, 6: 3}  # 4 is the shorter run's final point (all 4 records)
    assert next(r for r in rows(out) if r["n_edits"] == 4 and "efficacy" in r)["n_records"] == 4


def test_a_short_last_batch_cannot_be_continued(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    run(out, cache, "dataset.limit=3")  # batches of 2, 2 and 1
    with pytest.raises(ConfigError, match=r"its last batch held 1 records, not dataset.batch_size=2"):
        run(out, cache, "dataset.limit=8")
    assert json.loads((out / "summary.json").read_text())["n_edits"] == 3  # left as it was
    assert not (out / "extended").exists()
