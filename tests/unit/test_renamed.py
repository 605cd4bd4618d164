"""Old names that still work for one release, each with one ``FutureWarning: ...`` line naming the
new one: ``model.stats`` (now ``model.covariance``), ``sphere.stats`` / ``python -m sphere.stats``
(now ``sphere.covariance``), ``sphere-stats`` (now ``sphere-covariance``); and run directories
written under the old names, read under the new ones. Re-evaluation files get shell-readable names."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT
from omegaconf import OmegaConf

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each warning is said once per process: start every test with none said."""
    monkeypatch.setattr("sphere.errors._RENAMED_SAID", set())


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("FutureWarning: ")]


def test_model_stats_on_the_command_line_is_read_as_model_covariance(capsys):
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    cfg = compose_config(["model=tiny-llama", "model.stats.n_samples=10"])
    s = validate(cfg)
    assert s.model.covariance.n_samples == 10 and s.model.covariance.max_length == 64  # the file's
    assert "stats" not in cfg.model and cfg.model.covariance.n_samples == 10  # config.yaml: the new key
    assert warnings_in(capsys.readouterr().err) == [
        "FutureWarning: model.stats is renamed model.covariance: read as model.covariance.n_samples=10; "
        "model.stats goes in the next release"
    ]


def test_the_new_key_alone_says_nothing(capsys):
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    cfg = compose_config(["model=tiny-llama", "model.covariance.n_samples=10"])
    assert validate(cfg).model.covariance.n_samples == 10 and "stats" not in cfg.model
    assert warnings_in(capsys.readouterr().err) == []


def test_a_stats_block_of_a_model_file_is_read_as_covariance(capsys):
    from sphere.run.config import ConfigError, upgrade_renamed_keys

    cfg = OmegaConf.create(
        {"model": {"covariance": {"corpus": "bundled", "n_samples": 200}, "stats": {"n_samples": 5}}}
    )
    upgrade_renamed_keys(cfg)
    assert OmegaConf.to_container(cfg) == {"model": {"covariance": {"corpus": "bundled", "n_samples": 5}}}
    assert len(warnings_in(capsys.readouterr().err)) == 1
    bad = OmegaConf.create({"model": {"covariance": {"batch_size": 8}, "stats": {"batchsize": 2}}})
    with pytest.raises(
        ConfigError,
        match=r"model.stats.batchsize: no such key in model.covariance \(did you mean model.covariance.batch_size\?\)",
    ):
        upgrade_renamed_keys(bad)


def test_sphere_edit_plans_with_model_stats(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphere.cli.edit",
            "model=tiny-llama",
            "model.stats.n_samples=10",
            "run.plan=true",
            "logger=none",
            f"run.cache_dir={tmp_path / 'c'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sphere-edit plan" in proc.stdout
    assert warnings_in(proc.stderr) == [
        "FutureWarning: model.stats is renamed model.covariance: read as model.covariance.n_samples=10; "
        "model.stats goes in the next release"
    ]


def test_python_m_sphere_stats_runs_sphere_covariance():
    proc = subprocess.run(
        [sys.executable, "-m", "sphere.stats", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: sphere-covariance")
    assert warnings_in(proc.stderr) == [
        "FutureWarning: sphere.stats is renamed sphere.covariance: run `python -m sphere.covariance` (or "
        "`sphere-covariance`); sphere.stats goes in the next release"
    ]


def test_the_old_module_names_still_import():
    import sphere.covariance as new
    import sphere.stats as old

    assert old.precompute_stats is new.precompute_covariance and old.StatsResult is new.CovarianceResult
    assert old.Ranks is new.Ranks and old.TIMEOUT == new.TIMEOUT


def test_sphere_stats_console_script_is_sphere_covariance(capsys):
    from sphere.cli.stats import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage: sphere-covariance")
    assert warnings_in(out.err) == [
        "FutureWarning: sphere-stats is renamed sphere-covariance; sphere-stats goes in the next release"
    ]


def test_the_report_reads_an_old_run_config_under_the_new_key(tmp_path):
    from sphere.report.collect import config_differences, load_run

    runs = []
    for i, key in enumerate(("stats", "covariance")):  # before and after the rename, same settings
        d = tmp_path / f"run{i}"
        d.mkdir()
        cfg = {
            "model": {"name": "tiny-llama", key: {"n_samples": 100, "batch_size": 8 + i}},
            "run": {"seed": i},
        }
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        (d / "metrics.jsonl").write_text('{"n_edits": 0}\n')
        runs.append(load_run(d, f"run{i}"))
    assert runs[0].config["model"] == {
        "name": "tiny-llama",
        "covariance": {"n_samples": 100, "batch_size": 8},
    }
    assert config_differences(runs) == []  # batch size is operational; n_samples agrees across the names


@pytest.mark.parametrize(
    "overrides,name",
    [
        (["eval.evaluators=[he]"], "eval.evaluators-he"),
        (
            [
                "eval.evaluators=[generation]",
                "eval.generation.prompts=edit_prompts",
                "eval.generation.every_case=2",
            ],
            "eval.evaluators-generation_eval.generation.every_case-2_eval.generation.prompts-edit_prompts",
        ),
        (
            ["eval.evaluators=[quality,he]", "eval.general.tasks=[mmlu]"],
            "eval.evaluators-quality-he_eval.general.tasks-mmlu",
        ),
        ([], "default"),
    ],
)
def test_reevaluation_files_have_shell_readable_names(overrides, name):
    from sphere.run.reevaluate import tag_for

    assert tag_for(overrides) == name
    assert all(c.isalnum() or c in "._-" for c in name)
