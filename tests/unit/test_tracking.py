"""W&B mirroring as a dashboard needs it, checked against a recording stand-in for ``wandb``."""

from __future__ import annotations

import sys
import types

from sphere.run.config import LoggerConfig
from sphere.run.tracking import WANDB_ID_FILE, Tracker, wandb_run_id


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


def _tracker(out, rec, monkeypatch, resume_from_edits=None) -> str:
    """The W&B id the tracker opens its run with (a recording stand-in for wandb, offline mode)."""
    monkeypatch.setitem(sys.modules, "wandb", rec.module())
    Tracker(
        out,
        LoggerConfig(wandb=True, mode="offline"),
        run_name="r",
        group="g",
        tags=[],
        config={},
        resume_from_edits=resume_from_edits,
    )
    return rec.init_kwargs["id"]


def test_wandb_continues_a_run_only_when_the_run_continues(tmp_path, monkeypatch):
    """A new run in a reused directory gets a new W&B id (an id from the directory's path made it
    append to the old run's history); a resumed run keeps the id its directory stores."""
    rec = _Recorder()
    first = _tracker(tmp_path, rec, monkeypatch)
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == first
    assert _tracker(tmp_path, rec, monkeypatch, resume_from_edits=4) == first
    second = _tracker(tmp_path, rec, monkeypatch)  # started over in the same directory
    assert second != first and (tmp_path / WANDB_ID_FILE).read_text().strip() == second
    assert _tracker(tmp_path, rec, monkeypatch, resume_from_edits=4) == second


def test_a_new_run_without_wandb_forgets_the_old_id(tmp_path, monkeypatch):
    rec = _Recorder()
    _tracker(tmp_path, rec, monkeypatch)
    Tracker(tmp_path, LoggerConfig(wandb=False), run_name="r", group="g", tags=[], config={})
    assert not (tmp_path / WANDB_ID_FILE).exists()  # its resume must not continue the old W&B run


def test_a_run_directory_from_before_the_id_file_resumes_under_its_old_id(tmp_path):
    import hashlib

    legacy = hashlib.sha1(str(tmp_path.resolve()).encode()).hexdigest()[:12]
    assert wandb_run_id(tmp_path, resume=True) == legacy
