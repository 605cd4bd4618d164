"""scripts/tuning_table.py: the Markdown tables of docs/tuning.md, from a sweep's index.json and its runs'
summaries, also for a sweep copied under docs/results/ (run directories named relatively)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from helpers import ROOT

_spec = importlib.util.spec_from_file_location("tuning_table", ROOT / "scripts" / "tuning_table.py")
assert _spec and _spec.loader
tuning_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tuning_table)


def _job(sweep: Path, name: str, lam: int, efficacy: float | None, relative: bool) -> dict:
    run = sweep / name
    run.mkdir(parents=True)
    if efficacy is not None:
        summary = {
            "efficacy": efficacy,
            "generalization": 50.0,
            "specificity": 60.0,
            "score": efficacy / 2,
            "pre": {"specificity": 70.0},
            "time": {"edit_s_per_edit": 3.25},
        }
        (run / "summary.json").write_text(json.dumps(summary))
    overrides = ["+experiment=tune_smollm2", "editor=memit", f"editor.mom2_update_weight={lam}"]
    return {"overrides": overrides, "run_dir": name if relative else str(run)}


def test_rows_are_sorted_shared_overrides_lifted_and_unfinished_jobs_listed(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    jobs = [
        _job(sweep, "a", 400, 80.0, relative=False),
        _job(sweep, "b", 1600, 100.0, relative=True),
        _job(sweep, "c", 6400, None, relative=True),
    ]
    (sweep / "index.json").write_text(json.dumps({"jobs": jobs}))
    assert tuning_table.main([str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "All rows: `editor=memit`"
    assert out[2].startswith("| mom2_update_weight | efficacy |")
    assert out[4] == "| 1600 | 100.0 | 50.0 | 60.0 | 50.0 | 70.0 | 3.2 |"  # best score first
    assert out[5].startswith("| 400 | 80.0 |")
    assert out[6] == "| 6400 | not finished |"


def test_the_committed_targets_regenerate():
    rows = tuning_table.rows_of(ROOT / "docs" / "results" / "targets_smollm2")
    assert rows and all(r["summary"] and r["summary"]["n_edits"] == 100 for r in rows)


def test_keep_results_copies_finished_runs_and_the_table_reads_the_copy(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("keep_results", ROOT / "scripts" / "keep_results.py")
    assert spec and spec.loader
    keep_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keep_results)
    sweep = tmp_path / "sweep"
    jobs = [_job(sweep, "a", 400, 80.0, relative=False), _job(sweep, "c", 6400, None, relative=True)]
    jobs[0]["status"], jobs[1]["status"] = "finished", "running"
    (sweep / "a" / "metrics.jsonl").write_text('{"n_edits": 0}\n')
    (sweep / "a" / "kept").mkdir()  # weights never come along
    (sweep / "index.json").write_text(json.dumps({"jobs": jobs}))
    dest = tmp_path / "docs" / "kept"
    assert keep_results.keep(sweep, dest) == [str(sweep / "c")]
    assert sorted(p.name for p in (dest / "a").iterdir()) == ["metrics.jsonl", "summary.json"]
    index = json.loads((dest / "index.json").read_text())
    assert [j["run_dir"] for j in index["jobs"]] == ["a"] and index["counts"] == {"finished": 1}
    tuning_table.main([str(dest)])
    assert "| 80.0 |" in capsys.readouterr().out
    assert keep_results.main([str(tmp_path / "nowhere"), str(dest)]) == 2


def test_a_glob_over_a_study_folder_skips_its_study_yaml_and_report(tmp_path, capsys):
    """``python scripts/tuning_table.py docs/results/<study>/*`` also passes study.yaml and report/."""
    study = tmp_path / "study"
    sweep = study / "sweep"
    jobs = [_job(sweep, "a", 400, 80.0, relative=True)]
    (sweep / "index.json").write_text(json.dumps({"jobs": jobs}))
    (study / "study.yaml").write_text("title: t\n")
    (study / "report" / "tables").mkdir(parents=True)
    assert tuning_table.main([str(sweep), str(study / "study.yaml"), str(study / "report")]) == 0
    captured = capsys.readouterr()
    assert "| 80.0 |" in captured.out and "skipped" in captured.err
