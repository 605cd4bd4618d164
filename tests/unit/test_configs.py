"""Every config file composes and validates, defaults live in one place, and the paper's
per-editor SPHERE strength and per-model hyperparameters arrive where they should."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, settings

from editors.registry import available_editors, get_editor
from sphere.errors import ConfigError

CONFIGS = ROOT / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml") if not p.stem.startswith("_test_"))


def per_model_files() -> list[tuple[str, str]]:
    return sorted((p.parent.name, p.stem) for p in (CONFIGS / "editor_model").glob("*/*.yaml"))


@pytest.mark.parametrize("group", ["model", "editor", "sphere", "dataset", "eval", "logger"])
def test_every_option_of_every_group_composes_and_validates(group, tmp_path):
    for option in options(group):
        s = settings(f"{group}={option}", tmp=tmp_path)
        assert s is not None


@pytest.mark.parametrize("editor,model", per_model_files())
def test_every_per_model_editor_file_composes(editor, model, tmp_path):
    s = settings(f"editor={editor}", f"model={model}", tmp=tmp_path)
    assert s.editor_name == editor and s.model.name == model
    assert list(s.editor.layers) == list(s.model.layers.single if editor == "rome" else s.model.layers.multi)


def test_every_registered_editor_has_a_config_and_every_config_an_editor():
    assert set(options("editor")) == set(available_editors())


def test_defaults_come_from_the_dataclasses(tmp_path):
    s = settings("editor=memit", "sphere=on", tmp=tmp_path)
    assert (s.sphere.alpha, s.sphere.beta) == (0.8, 0.5)
    assert s.editor == get_editor("memit").hparams(**{**vars(s.editor)})
    off = settings("sphere=off", tmp=tmp_path).sphere
    assert not off.enabled and off.alpha == 0.8  # off.yaml restates nothing


def test_alphaedit_brings_its_sphere_strength_and_the_command_line_wins(tmp_path):
    assert settings("editor=alphaedit", tmp=tmp_path).sphere.alpha == 0.5
    assert settings("editor=alphaedit", "sphere.alpha=0.3", tmp=tmp_path).sphere.alpha == 0.3
    assert settings("editor=rect", tmp=tmp_path).sphere.alpha == 0.8


def test_reference_hyperparameters_reach_the_editors(tmp_path):
    # spec §6: LLaMA3-8B MEMIT-family v_lr 0.1, Qwen2.5-7B 0.5 with clamp 4; ROME no mom2 adjustment
    assert settings("editor=alphaedit", "model=llama3-8b", tmp=tmp_path).editor.v_lr == 0.1
    qwen = settings("editor=prune", "model=qwen2.5-7b", tmp=tmp_path).editor
    assert (qwen.v_lr, qwen.clamp_norm_factor) == (0.5, 4.0)
    assert settings("editor=rome", "model=llama3-8b", tmp=tmp_path).editor.mom2_adjustment is False


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["editor=rome", "sphere.point=layer"], "sphere.point=layer does nothing with editor rome"),
        (["editor.layers=[3,2]"], "editor.layers=[3, 2] must be a non-empty ascending list"),
        (["editor=rect", "editor.keep_fraction=0"], "editor.keep_fraction=0.0 must be in (0, 1]"),
        (["eval.evaluators=[edit_quality,hee]"], "did you mean 'he'"),
        (["sphere.rank=0"], "sphere.rank=0 must be a positive integer"),
        (["run.on_nonfinite=maybe"], "run.on_nonfinite='maybe' is not allowed"),
        (["dataset.batch_size=0"], "dataset.batch_size=0 must be >= 1"),
    ],
)
def test_bad_combinations_fail_at_start_up(overrides, needle, tmp_path):
    with pytest.raises(ConfigError) as e:
        settings(*overrides, tmp=tmp_path)
    assert needle in str(e.value)


def test_describe_prints_every_knob_with_help(capsys):
    from sphere.cli.describe import describe_main

    assert describe_main(["editor=alphaedit", "model=llama3-8b"]) == 0
    out = capsys.readouterr().out
    hp = get_editor("alphaedit").hparams
    for name in hp.__dataclass_fields__:
        assert f"editor.{name} = " in out
    assert "editor.v_lr = 0.1  (default 0.5)" in out
    assert "sphere.alpha = 0.5  (default 0.8)" in out
    assert "null space" in out  # a help line


def test_no_yaml_restates_a_dataclass_default():
    """YAML files hold only deltas: a key equal to its schema default would be a second source."""
    import yaml

    from sphere.method.placement import SphereConfig

    for path in (CONFIGS / "sphere").glob("*.yaml"):
        body = yaml.safe_load(path.read_text())
        for key, value in body.items():
            if key in SphereConfig.__dataclass_fields__:
                assert SphereConfig.__dataclass_fields__[key].default != value or key == "enabled", path
    assert Path(CONFIGS / "sphere_editor").exists() is False
