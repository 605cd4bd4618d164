"""W&B mirroring as a dashboard needs it, checked against a recording stand-in for ``wandb``."""

from __future__ import annotations

import sys
import types

from sphere.run.config import LoggerConfig
from sphere.run.tracking import Tracker


class _Recorder:
    """Records what the tracker asks of ``wandb`` (init kwargs, define_metric, logged rows)."""

    def __init__(self):
        self.init_kwargs: dict = {}
        self.defined: list[tuple] = []
        self.logged: list[dict] = []
        self.summary: dict = {}

    def module(self):
        rec = self

        class Run:
            summary = rec.summary

            def define_metric(self, name, **kw):
                rec.defined.append((name, kw))

            def log(self, row):
                rec.logged.append(row)

            def finish(self):
                pass

        class Table:
            def __init__(self, columns, data):
                self.columns, self.data = columns, data

        def init(**kw):
            rec.init_kwargs = kw
            return Run()

        plot = types.SimpleNamespace(line_series=lambda **kw: ("line_series", kw))
        return types.SimpleNamespace(init=init, Table=Table, plot=plot)


def test_dashboard_metadata_tables_and_he_curves(tmp_path, monkeypatch):
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "wandb", rec.module())
    cfg = LoggerConfig(wandb=True, mode="offline")
    tracker = Tracker(
        tmp_path,
        cfg,
        run_name="memit+sphere seed=1",
        group="sweep-x",
        tags=["t"],
        config={"a": 1},
        job_type="memit+sphere",
    )
    assert rec.init_kwargs["group"] == "sweep-x" and rec.init_kwargs["job_type"] == "memit+sphere"
    assert ("*", {"step_metric": "n_edits"}) in rec.defined  # n_edits is every metric's x-axis
    tracker.log({"n_edits": 0, "efficacy": 10.0, "he/layer_4": 1.0, "he/layer_5": 2.0})
    tracker.log({"n_edits": 5, "he/layer_4": 1.5, "he/layer_5": 2.5})
    summary = {
        "n_edits": 5,
        "efficacy": 90.0,
        "efficacy_se": 3.0,
        "pre": {"efficacy": 10.0},
        "he": {"4": 1.5, "5": 2.5},
        "he_pre": {"4": 1.0, "5": 2.0},
        "he_change_pct": {"4": 50.0, "5": 25.0},
    }
    tracker.write_summary(summary)
    assert rec.summary["efficacy"] == 90.0 and rec.summary["pre/efficacy"] == 10.0
    tables = rec.logged[-1]
    assert tables["final/metrics"].data == [["efficacy", 10.0, 90.0, 3.0]]
    assert tables["final/he"].data == [["4", 1.0, 1.5, 50.0], ["5", 2.0, 2.5, 25.0]]
    kind, series = tables["he_per_layer"]
    assert kind == "line_series" and series["xs"] == [0, 5] and series["ys"] == [[1.0, 1.5], [2.0, 2.5]]
