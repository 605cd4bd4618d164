"""The metric catalogue: evaluators declare their metrics, and the report, the summary and the
figures read them from there, so a new evaluator's metric needs no edit anywhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_run

from sphere.evaluation.catalogue import Metric, catalogue, headline, metric, table_metrics
from sphere.evaluation.registry import register_evaluator, unregister_evaluator
from sphere.report.build import build_report
from sphere.run.summary import format_summary, shown_metrics


@pytest.fixture
def novelty_evaluator():
    """A plug-in evaluator as one file would define it: its class, registered with its metric."""

    @register_evaluator("novelty", metrics=[Metric("novelty", "Novelty", unit="%", order=25)])
    class Novelty:
        moments = frozenset({"final"})

        def __init__(self, cfg) -> None:
            pass

        def __call__(self, moment, view):
            return {"novelty": 42.0}

        def state_dict(self):
            return {}

        def load_state_dict(self, state) -> None:
            pass

    yield Novelty
    unregister_evaluator("novelty")


def test_builtin_declarations() -> None:
    keys = [m.key for m in catalogue()]
    assert keys.index("efficacy") < keys.index("fluency") < keys.index("efficacy_top1") < keys.index("score")
    assert metric("fluency").unit == "n-gram entropy ×100" and metric("efficacy").unit == "%"
    assert metric("he_abs_change_pct").better == -1 and metric("he_change_pct").better == 0
    assert (
        metric("general/nli").label == "NLI acc." and metric("general/new_task").label == "New task accuracy"
    )
    assert metric("he_change_pct/7").per_layer and not metric("he_change_pct/7").table
    assert metric("not_declared").table is False and metric("not_declared").label == "not_declared"
    assert headline()[:3] == ["efficacy", "generalization", "specificity"]
    present = ["efficacy", "efficacy_se", "general/nli", "general/nli_f1", "he_change_pct/4", "pre/efficacy"]
    assert [m.key for m in table_metrics(present)] == ["efficacy", "general/nli"]


def test_a_new_evaluators_metric_reaches_table_and_summary(tmp_path: Path, novelty_evaluator) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        d = write_run(root, seed=seed, checkpoint=False)
        summary = json.loads((d / "summary.json").read_text())
        summary["novelty"] = 40.0 + seed
        (d / "summary.json").write_text(json.dumps(summary))
    report = build_report([root], tmp_path / "out", formats=("png",))
    keys = [c.key for c in report.table.columns]
    assert "novelty" in keys and keys.index("score") < keys.index("novelty")  # its declared order, 25
    assert "Novelty" in (tmp_path / "out" / "tables" / "results.md").read_text()
    assert "novelty" in shown_metrics(summary)
    assert "novelty" in format_summary(summary)


def test_report_lists_no_metric_or_editor_by_hand() -> None:
    """The report reads metrics from the catalogue and editor names from the registry: no module of
    sphere/report names one in a string literal."""
    import ast

    from editors import available_editors
    from sphere import report

    names = set(available_editors()) | {m.key for m in catalogue() if not m.family}
    for path in Path(report.__file__).parent.rglob("*.py"):  # the figures/ and tables/ packages too
        literals = {
            n.value
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert not names & literals, f"{path.name} names {sorted(names & literals)}"
