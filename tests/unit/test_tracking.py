"""W&B mirroring as a dashboard needs it, checked against a recording stand-in for ``wandb`` (and
once against wandb itself, offline): run names, groups, images, artifacts, online/offline."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from sphere.run.config import LoggerConfig
from sphere.run.tracking import WANDB_ID_FILE, Tracker, wandb_mode, wandb_run_id


class _Recorder:
    """Records what the tracker asks of ``wandb`` (init kwargs, define_metric, logged rows)."""

    def __init__(self):
        self.init_kwargs: dict = {}
        self.defined: list[tuple] = []
        self.logged: list[dict] = []
        self.summary: dict = {}
        self.artifacts: list = []

    def module(self):
        rec = self

        class Run:
            summary = rec.summary
            id = "abc123"

            def log_artifact(self, artifact):
                rec.artifacts.append(artifact)

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

        class Image:
            def __init__(self, path):
                self.path = path

        class Artifact:
            def __init__(self, name, type, metadata=None):
                self.name, self.type, self.metadata, self.files = name, type, metadata, []

            def add_file(self, path, name=None):
                self.files.append(name or Path(path).name)

        plot = types.SimpleNamespace(line_series=lambda **kw: ("line_series", kw))
        return types.SimpleNamespace(init=init, Table=Table, plot=plot, Image=Image, Artifact=Artifact)


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


def test_figures_are_logged_as_images_and_small_files_as_an_artifact(tmp_path, monkeypatch):
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "wandb", rec.module())
    tracker = Tracker(tmp_path, LoggerConfig(mode="offline"), run_name="r", group="g", tags=[], config={})
    for name in ("metrics_vs_edits.png", "config.yaml", "summary.json"):
        (tmp_path / name).write_bytes(b"x")
    tracker.log_images([tmp_path / "metrics_vs_edits.png", tmp_path / "missing.png"])
    assert set(rec.logged[-1]) == {"figures/metrics_vs_edits"}
    assert rec.logged[-1]["figures/metrics_vs_edits"].path == str(tmp_path / "metrics_vs_edits.png")
    tracker.log_artifact("run", [tmp_path / f for f in ("config.yaml", "summary.json", "outcomes.jsonl")])
    (art,) = rec.artifacts
    assert (art.name, art.type, art.files) == ("run-abc123", "run", ["config.yaml", "summary.json"])
    tracker.finish()
    tracker.log_images([tmp_path / "metrics_vs_edits.png"])  # after finish: nothing, no error


def test_an_offline_wandb_run_holds_the_images_and_the_artifact(tmp_path, monkeypatch):
    """wandb itself (WANDB_MODE=offline, nothing leaves the machine): the offline run directory
    holds the logged figure and the artifact's manifest."""
    wandb = pytest.importorskip("wandb")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "metrics_vs_edits.png")
    plt.close(fig)
    (tmp_path / "summary.json").write_text('{"score": 1.0}')
    tracker = Tracker(tmp_path, LoggerConfig(), run_name="r", group="g", tags=[], config={})
    assert tracker.run is not None, "wandb failed to start offline"
    run_dir = Path(tracker.run.dir).parent  # <out>/wandb/offline-run-<date>-<id>/files -> its parent
    tracker.log({"n_edits": 0, "score": 1.0})
    tracker.log_images([tmp_path / "metrics_vs_edits.png"])
    tracker.log_artifact("run", [tmp_path / "summary.json"])
    tracker.finish()
    # run.finish() only *informs* wandb-core that the run is done; the core closes the run's stream,
    # and flushes its transaction log, afterwards (CI once read the 7-byte header alone). A run's
    # process gets that flush from wandb's atexit teardown; the test asks for it explicitly.
    wandb.teardown()
    assert run_dir.name.startswith("offline-run-")
    images = list((run_dir / "files" / "media" / "images").glob("figures/metrics_vs_edits_*.png"))
    assert images, sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    # The artifact is a record of the run's transaction log (synced later by `wandb sync`).
    (log,) = run_dir.glob("run-*.wandb")
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    assert f"run-{run_id}".encode() in log.read_bytes() and b"summary.json" in log.read_bytes()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WANDB_MODE": "offline", "WANDB_API_KEY": "k" * 40}, "offline"),
        ({"WANDB_MODE": "disabled"}, "disabled"),
    ],
)
def test_wandb_mode_respects_wandb_mode(monkeypatch, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert wandb_mode(LoggerConfig()) == expected
    assert wandb_mode(LoggerConfig(mode="online")) == "online"  # an explicit logger.mode wins


def test_a_netrc_entry_for_a_self_hosted_wandb_means_online(tmp_path):
    """wandb's own lookup: the .netrc entry of WANDB_BASE_URL's host, not only api.wandb.ai's (in a
    fresh process: wandb keeps its settings, base URL included, for the process's lifetime)."""
    import os
    import subprocess

    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine wandb.example.com\n  login user\n  password {'a' * 40}\n")
    netrc.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL")}
    env.update(NETRC=str(netrc), HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "config"))
    code = "from sphere.run.config import LoggerConfig as C; from sphere.run.tracking import wandb_mode as m; print(m(C()))"

    def mode(**extra: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()[-1]

    assert mode(WANDB_BASE_URL="https://wandb.example.com") == "online"
    assert mode() == "offline"  # the entry is for the self-hosted host, not api.wandb.ai


def test_no_credentials_or_a_broken_wandb_means_offline(monkeypatch):
    for k in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(k, raising=False)

    def login(**kw):
        raise RuntimeError("no settings")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(login=login))
    assert wandb_mode(LoggerConfig()) == "offline"
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(login=lambda **kw: False))
    assert wandb_mode(LoggerConfig()) == "offline"


def _settings(*overrides: str):
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    return validate(compose_config(["logger=none", *overrides]))


def test_sweep_jobs_get_unique_names_from_preset_swept_values_and_seed():
    from sphere.run.experiment import run_name

    def sweep(*overrides):
        swept = dict(o.split("=", 1) for o in overrides)
        return {"preset": "sensitivity_llama3", "swept": swept, "group": "g", "config": {}}

    names = {
        run_name(
            _settings("sphere=on", f"sphere.alpha={a}", f"sphere.beta={b}", "run.seed=1"),
            sweep(f"sphere.alpha={a}", f"sphere.beta={b}", "run.seed=1", "run.cache_dir=/c", "hydra.x=1"),
        )
        for a in (0.2, 0.8)
        for b in (0.3, 0.5)
    }
    assert len(names) == 4
    assert "sensitivity_llama3 editor=memit sphere=on alpha=0.8 beta=0.5 seed=1" in names
    assert (
        run_name(_settings("sphere=off", "run.seed=2"), None) == "smollm2-135m editor=memit sphere=off seed=2"
    )


def test_the_objective_is_a_number_of_the_summary():
    from omegaconf import OmegaConf

    from sphere.errors import ConfigError
    from sphere.run.experiment import objective

    summary = {"score": 42.5, "efficacy": 90.0, "n_edits": 4, "he": {}}
    assert objective(OmegaConf.create({"run": {"objective": None}}), summary) is None
    assert objective(OmegaConf.create({"run": {"objective": "score"}}), summary) == 42.5
    assert objective(OmegaConf.create({"run": {"objective": "score"}}), {"plan": {}}) is None
    with pytest.raises(ConfigError, match="run.objective=scor is not a number"):
        objective(OmegaConf.create({"run": {"objective": "scor"}}), summary)


def test_the_optuna_sweeper_without_its_extra_is_one_line(monkeypatch):
    from sphere import extras

    monkeypatch.setattr(extras, "installed", lambda extra: extra != "optuna")
    for args in (["-m", "hydra/sweeper=optuna"], ["-m", "+experiment=search_sphere_smollm2"]):
        with pytest.raises(extras.MissingExtraError, match=r"pip install 'sphere-edit\[optuna\]'"):
            extras.check_sweeper(args)
    extras.check_sweeper(["-m", "+experiment=tiny_seeds"])  # a grid preset needs nothing
