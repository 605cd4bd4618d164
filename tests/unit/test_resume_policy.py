"""``run.resume``'s policy on hand-made run directories (sphere/run/identity.py): continue the same
configuration, refuse another one in one line, start over cleanly when asked. The real runs,
killed and rerun, are in tests/integration/test_kills.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sphere.errors import ConfigError
from sphere.run.identity import clear_outputs, config_diff, decide, resume_mode, upgrade_config

CONFIG = {
    "run": {"seed": 0, "resume": "auto", "cache_dir": ".cache/sphere", "checkpoint_every": 10},
    "model": {"name": "tiny-llama", "device": "auto", "covariance": {"batch_size": 8, "n_samples": 100}},
    "sphere": {"alpha": 0.8, "beta": 0.5},
    "eval": {"batch_size": 32, "every": 4},
    "logger": {"wandb": False},
}


def run_dir(tmp_path: Path, *, checkpoint: bool = False, summary: bool = False, config=CONFIG) -> Path:
    out = tmp_path / "run"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    (out / "metrics.jsonl").write_text('{"n_edits": 0}\n')
    if checkpoint:
        (out / "checkpoint").mkdir(exist_ok=True)
        (out / "checkpoint" / "checkpoint.safetensors").write_bytes(b"x")
    if summary:
        (out / "summary.json").write_text("{}")
    return out


def changed(**sections) -> dict:
    new = yaml.safe_load(yaml.safe_dump(CONFIG))
    for section, values in sections.items():
        new[section].update(values)
    return new


@pytest.mark.parametrize(
    "value,mode", [(True, "true"), ("True", "true"), (False, "false"), ("false", "false"), ("auto", "auto")]
)
def test_old_boolean_values_keep_their_meaning(value, mode):
    assert resume_mode(value) == mode


def test_a_bad_value_names_the_choices():
    with pytest.raises(
        ValueError, match=r"run.resume='maybe' is not allowed; choose one of auto, true, false"
    ):
        resume_mode("maybe")


def test_operational_keys_are_not_part_of_the_identity():
    new = changed(
        run={"resume": "true", "cache_dir": "/elsewhere", "checkpoint_every": 1},
        model={"device": "cuda", "covariance": {"batch_size": 1, "n_samples": 100}},
        eval={"batch_size": 4},
        logger={"wandb": True},
    )
    assert config_diff(CONFIG, new) == []
    assert config_diff(CONFIG, changed(run={"seed": 1}, eval={"every": 8})) == [
        ("eval.every", 4, 8),
        ("run.seed", 0, 1),
    ]  # the seed picks the stream, the schedule the rows: a resume must keep both


def test_a_run_written_before_a_key_was_renamed_is_the_same_configuration(tmp_path):
    """model.stats is model.covariance's old name: a run that wrote it resumes under the new one."""
    old = yaml.safe_load(yaml.safe_dump(CONFIG))
    old["model"]["stats"] = old["model"].pop("covariance")
    assert config_diff(old, CONFIG) == []
    assert decide(run_dir(tmp_path, checkpoint=True, config=old), CONFIG, "auto").action == "resume"
    other = changed(model={"covariance": {"batch_size": 8, "n_samples": 200}})
    assert config_diff(old, other) == [("model.covariance.n_samples", 100, 200)]
    assert upgrade_config(old) == CONFIG and "stats" in old["model"]  # a copy: the argument is kept


@pytest.mark.parametrize("mode", ["auto", "true"])
def test_same_configuration(tmp_path, mode):
    assert decide(run_dir(tmp_path, checkpoint=True), CONFIG, mode).action == "resume"
    assert decide(run_dir(tmp_path, summary=True), CONFIG, mode).action == "finished"


def test_same_configuration_without_a_checkpoint_starts_again(tmp_path):
    d = decide(run_dir(tmp_path), CONFIG, "auto")
    assert (d.action, d.clear) == ("new", True)


def test_a_start_that_wrote_no_results_is_replaced(tmp_path):
    """config.yaml alone (a start that failed, a run killed while collecting statistics): nothing
    to continue or to lose, so a corrected command runs there, whatever it changed."""
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (out / "checkpoint" / "w0.safetensors").write_bytes(b"x")  # written before the statistics
    d = decide(out, changed(sphere={"alpha": 0.5}), "auto")
    assert (d.action, d.clear) == ("new", True)


def test_an_empty_directory(tmp_path):
    assert decide(tmp_path / "new", CONFIG, "auto").action == "new"
    with pytest.raises(ConfigError, match="run.resume=true but .* holds no run to continue"):
        decide(tmp_path / "new", CONFIG, "true")
    assert decide(tmp_path / "new", CONFIG, "true", in_sweep=True).action == "new"  # a job never started


@pytest.mark.parametrize("mode", ["auto", "true"])
def test_another_configuration_is_refused_in_one_line(tmp_path, mode):
    out = run_dir(tmp_path, checkpoint=True)
    with pytest.raises(ConfigError) as e:
        decide(out, changed(sphere={"alpha": 0.5}), mode)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{out} holds a run of another configuration (sphere.alpha: 0.8 -> 0.5)")
    assert "choose another hydra.run.dir, or add run.resume=false to start over there" in message
    with pytest.raises(ConfigError, match="sphere.alpha: 0.8 -> 0.5"):  # a finished one too
        decide(run_dir(tmp_path, summary=True), changed(sphere={"alpha": 0.5}), mode)


def test_start_over_clears_the_old_run_and_nothing_else(tmp_path):
    out = run_dir(tmp_path, checkpoint=True, summary=True)
    for name in ("summary.txt", "outcomes.jsonl", "metrics_vs_edits.png", "notes.md"):
        (out / name).write_text("x")
    (out / "kept").mkdir()
    (out / "kept" / "edits_4.safetensors").write_bytes(b"x")
    d = decide(out, changed(sphere={"alpha": 0.5}), "false")
    assert (d.action, d.clear) == ("new", True)
    clear_outputs(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "notes.md",
    ]  # the new run rewrites config.yaml


def limits(old: int | None, new: int | None, **sections) -> tuple[dict, dict]:
    """(the directory's config with dataset.limit=old, a command's with new and ``sections``)."""
    a = yaml.safe_load(yaml.safe_dump(CONFIG))
    a["dataset"] = {"limit": old, "batch_size": 2}
    b = yaml.safe_load(yaml.safe_dump(a))
    b["dataset"]["limit"] = new
    for section, values in sections.items():
        b[section].update(values)
    return a, b


@pytest.mark.parametrize("mode", ["auto", "true"])
@pytest.mark.parametrize("new", [8, None])
def test_a_longer_stream_extends_the_run_finished_or_not(tmp_path, mode, new):
    old, longer = limits(4, new, eval={"subset": 4})  # eval.subset may change with it (checked later)
    for finished in (False, True):
        d = decide(run_dir(tmp_path, checkpoint=True, summary=finished, config=old), longer, mode)
        assert (d.action, d.why) == ("extend", f"dataset.limit: 4 -> {new}")


def test_what_is_not_a_longer_stream_is_refused(tmp_path):
    old, shorter = limits(8, 4)
    with pytest.raises(ConfigError, match=r"another configuration \(dataset.limit: 8 -> 4\)"):
        decide(run_dir(tmp_path, checkpoint=True, config=old), shorter, "auto")
    old, longer = limits(4, 8, sphere={"alpha": 0.5})  # longer, and something else
    with pytest.raises(ConfigError, match=r"another configuration \(dataset.limit: 4 -> 8, sphere.alpha"):
        decide(run_dir(tmp_path, checkpoint=True, config=old), longer, "auto")
    old, longer = limits(None, 8)  # all records already
    with pytest.raises(ConfigError, match=r"dataset.limit: None -> 8"):
        decide(run_dir(tmp_path, checkpoint=True, config=old), longer, "auto")
    _, subset_only = limits(4, 4, eval={"subset": 2})
    with pytest.raises(ConfigError, match=r"eval.subset"):
        decide(run_dir(tmp_path, checkpoint=True, config=limits(4, 4)[0]), subset_only, "auto")
    old, longer = limits(4, 8)
    with pytest.raises(
        ConfigError, match=r"shorter run of this configuration \(dataset.limit: 4 -> 8\) but no checkpoint"
    ):
        decide(run_dir(tmp_path / "finished", summary=True, config=old), longer, "auto")
