"""scripts/results_index.py: docs/results/README.md, one row per study folder (its study.yaml, the run
directories below it, the code commits of their provenance), kept current by the --check test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import ROOT

_spec = importlib.util.spec_from_file_location("results_index", ROOT / "scripts" / "results_index.py")
assert _spec and _spec.loader
results_index = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_index)


def test_the_committed_index_is_current(capsys):
    """Fails when a study or runs were added under docs/results/ without regenerating the index; the
    message names the command to run (python scripts/results_index.py)."""
    rc = results_index.main(["--check"])
    assert rc == 0, capsys.readouterr().err


def _run(folder: Path, provenance: dict | None) -> None:
    folder.mkdir(parents=True)
    summary = {"efficacy": 100.0, **({"provenance": provenance} if provenance else {})}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text("run: {}\n")


def _fake_results(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text(
        "# Notes\n\n```bash\n# not a heading\n```\n\n## Study A: the first\n\n## Study B | second\n"
    )
    results = tmp_path / "docs" / "results"
    a, b = results / "study_a", results / "study_b"
    sha = "0123456789abcdef0123456789abcdef01234567"
    _run(a / "sweep" / "editor-memit_sphere-off", {"code": {"commit": sha, "dirty": False}})
    _run(a / "sweep" / "editor-memit_sphere-on", {"code": {"commit": sha, "dirty": True}})
    (a / "report").mkdir()  # no summary.json: not a run
    (a / "study.yaml").write_text(
        "title: Study A\n"
        "page: ../../notes.md#study-a-the-first\n"
        "command:\n"
        "  - |-\n"
        "    for s in off on; do\n"
        "      sphere-edit -m editor=memit sphere=$s \\\n"
        "          hydra.sweep.dir=outputs/a\n"
        "    done\n"
        "finding: efficacy 100 | both\n"
    )
    _run(b, None)  # a study folder that is itself one run, from before provenance
    (b / "study.yaml").write_text(
        "title: Study B\npage: [../../notes.md#study-b--second, ../../notes.md]\n"
        "command: sphere-edit x=1\nfinding: in progress\nnote: reconstructed from config.yaml\n"
    )
    return results


def test_rows_count_runs_list_commits_and_link_pages(tmp_path):
    results = _fake_results(tmp_path)
    lines = results_index.render(results).splitlines()
    rows = [ln for ln in lines if ln.startswith("| [study_")]
    assert rows == [
        "| [study_a](study_a/)<br>Study A | 2 | `0123456789ab`<br>`0123456789ab` (modified) | "
        "`for s in off on; do sphere-edit -m editor=memit sphere=$s hydra.sweep.dir=outputs/a; done` | "
        "efficacy 100 \\| both | [notes.md § Study A: the first](../notes.md#study-a-the-first) |",
        "| [study_b](study_b/)<br>Study B | 1 | before provenance | "
        "`sphere-edit x=1`<br>*note: reconstructed from config.yaml* | in progress | "
        "[notes.md § Study B \\| second](../notes.md#study-b--second)<br>[notes.md](../notes.md) |",
    ]
    assert lines[lines.index(rows[0]) - 1] == "|---|---:|---|---|---|---|"


def test_write_then_check_and_stale_index_names_the_command(tmp_path, capsys):
    results = _fake_results(tmp_path)
    args = ["--results-dir", str(results)]
    assert results_index.main([*args, "--check"]) == 1  # no README.md yet
    assert results_index.main(args) == 0
    text = (results / "README.md").read_text()
    assert results_index.main([*args, "--check"]) == 0
    assert not [p for p in results.iterdir() if p.name.startswith(".")]  # the temp file was renamed
    _run(results / "study_b" / "more", None)  # a run added: the index is stale
    capsys.readouterr()
    assert results_index.main([*args, "--check"]) == 1
    assert "run `python scripts/results_index.py" in capsys.readouterr().err
    assert (results / "README.md").read_text() == text  # --check writes nothing
    assert results_index.main(args) == 0
    assert "| 2 | before provenance |" in (results / "README.md").read_text()


@pytest.mark.parametrize(
    ("study", "message"),
    [
        (None, "study.yaml is missing"),
        (
            "title: t\npage: ../../notes.md#nowhere\ncommand: c\nfinding: f\n",
            "no heading with anchor #nowhere",
        ),
        ("title: t\npage: ../../notes.md\ncommand: c\n", "missing ['finding']"),
    ],
)
def test_a_study_without_a_usable_record_is_an_error(tmp_path, capsys, study, message):
    results = _fake_results(tmp_path)
    new = results / "study_c"
    _run(new / "run", None)
    if study is not None:
        (new / "study.yaml").write_text(study)
    assert results_index.main(["--results-dir", str(results)]) == 2
    assert message in capsys.readouterr().err
    assert not (results / "README.md").exists()
