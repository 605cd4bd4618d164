"""Every preset in configs/experiment composes and validates; the paper presets carry the reference
hyperparameters (spec §6) and the paper's edit counts; grids expand to the expected jobs."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from sphere.run.compose import CONFIG_DIR, compose_config
from sphere.run.config import validate

PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))

# spec §6: Llama3-8B and Qwen2.5-7B JSON files of the reference ([S] hparams/); PRUNE and RECT use MEMIT's.
# v_loss_layer (31 / 27) is the models' last layer, which is where our z optimisation always reads the loss.
SPEC6 = {
    ("llama3-8b", "rome"): dict(
        layers=[5],
        v_num_grad_steps=25,
        v_lr=0.5,
        v_weight_decay=1e-3,
        clamp_norm_factor=4,
        kl_factor=0.0625,
        mom2_adjustment=False,
    ),
    ("llama3-8b", "memit"): dict(
        layers=[4, 5, 6, 7, 8],
        v_num_grad_steps=25,
        v_lr=0.1,
        v_weight_decay=0.5,
        clamp_norm_factor=0.75,
        kl_factor=0.0625,
        mom2_update_weight=15000,
    ),
    ("llama3-8b", "alphaedit"): dict(
        layers=[4, 5, 6, 7, 8],
        v_num_grad_steps=25,
        v_lr=0.1,
        v_weight_decay=0.5,
        clamp_norm_factor=0.75,
        kl_factor=0.0625,
        nullspace_threshold=2e-2,
        L2=10,
    ),
    ("qwen2.5-7b", "rome"): dict(
        layers=[5],
        v_num_grad_steps=25,
        v_lr=0.5,
        v_weight_decay=1e-3,
        clamp_norm_factor=4,
        kl_factor=0.0625,
        mom2_adjustment=False,
    ),
    ("qwen2.5-7b", "memit"): dict(
        layers=[4, 5, 6, 7, 8],
        v_num_grad_steps=25,
        v_lr=0.5,
        v_weight_decay=1e-3,
        clamp_norm_factor=4,
        kl_factor=0.0625,
        mom2_update_weight=15000,
    ),
    ("qwen2.5-7b", "alphaedit"): dict(
        layers=[4, 5, 6, 7, 8],
        v_num_grad_steps=25,
        v_lr=0.5,
        v_weight_decay=1e-3,
        clamp_norm_factor=4,
        kl_factor=0.0625,
        nullspace_threshold=2e-2,
        L2=10,
    ),
}
SPEC6.update({(m, e): SPEC6[(m, "memit")] for m in ("llama3-8b", "qwen2.5-7b") for e in ("prune", "rect")})


def _values(spec: str) -> list[str]:
    """A sweeper parameter's values: a grid's ``a,b,c``, or the ends of an Optuna search range
    (``interval(lo, hi)``, ``range(lo, hi)``) or its ``choice(a, b)`` options."""
    for fn in ("interval", "range", "choice"):
        if spec.startswith(f"{fn}(") and spec.endswith(")"):
            items = [v.strip() for v in spec[len(fn) + 1 : -1].split(",")]
            return items if fn == "choice" else items[:2]
    return spec.split(",")


def _grid(cfg) -> list[dict[str, str]]:
    params = cfg.hydra.sweeper.params or {}
    keys = list(params)
    values = [_values(str(params[k])) for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _compose(preset: str, *overrides: str):
    return compose_config([f"+experiment={preset}", "logger=none", *overrides], return_hydra_config=True)


def test_there_are_paper_and_cpu_presets():
    for name in (
        "table1_llama3",
        "table1_qwen25",
        "table1_llama3_rome",
        "plugin_llama3",
        "sensitivity_llama3",
        "he_study_llama3",
        "general_llama3",
        "cpu_table1_smollm2",
        "cpu_general_smollm2",
        "cpu_table1_gemma3",
        "tiny_seeds",
    ):
        assert name in PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_every_job_of_every_preset_composes_and_validates(preset):
    if preset.startswith("search_"):  # Hydra's Optuna sweeper: the optuna extra
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = _compose(preset)
    jobs = _grid(cfg)
    assert jobs, f"{preset} sweeps nothing"
    for job in jobs:
        s = validate(
            compose_config([f"+experiment={preset}", "logger=none", *(f"{k}={v}" for k, v in job.items())])
        )
        assert s.dataset.limit and s.dataset.batch_size >= 1


@pytest.mark.parametrize(
    "preset", ["table1_llama3", "table1_qwen25", "table1_llama3_rome", "table1_qwen25_rome"]
)
def test_table1_presets_match_the_reference_hyperparameters(preset):
    cfg = _compose(preset)
    for job in _grid(cfg):
        overrides = [f"{k}={v}" for k, v in job.items()]
        s = validate(compose_config([f"+experiment={preset}", "logger=none", *overrides]))
        want = SPEC6[(s.model.name, s.editor_name)]
        got = {k: getattr(s.editor, k) for k in want}
        assert got == want, (preset, job)
        assert s.dataset.limit == 15000 and s.dataset.shuffle
        assert s.dataset.batch_size == (1 if s.editor_name == "rome" else 100)
        assert s.run.keep_at == [5000, 15000]
        if s.sphere.enabled:  # the paper's SPHERE strength: α 0.5 on AlphaEdit, 0.8 otherwise; β 0.5
            assert (s.sphere.alpha, s.sphere.beta) == ((0.5 if s.editor_name == "alphaedit" else 0.8), 0.5)
    n = len(_grid(cfg))
    assert n == (4 if preset.endswith("rome") else 16)


def test_grid_sizes():
    assert len(_grid(_compose("sensitivity_llama3"))) == 20
    assert len(_grid(_compose("plugin_llama3"))) == 6
    assert {j["editor"] for j in _grid(_compose("plugin_llama3"))} == {"memit", "prune", "rect"}


def test_general_presets_measure_general_ability_on_the_papers_schedule():
    jobs = _grid(_compose("general_llama3"))
    assert {(j["editor"], j["sphere"]) for j in jobs} == {
        (e, s) for e in ("memit", "alphaedit") for s in ("off", "on")
    }
    for job in jobs:
        s = validate(
            compose_config(
                ["+experiment=general_llama3", "logger=none", *(f"{k}={v}" for k, v in job.items())]
            )
        )
        assert "general" in s.eval.evaluators
        assert (s.eval.general.every, s.eval.general.n_items, s.eval.general.source) == (1000, 500, "full")
        assert s.eval.general.tasks == ["reasoning", "nli", "open_qa", "closed_qa"]
        assert (s.dataset.limit, s.dataset.batch_size) == (15000, 100)
    for cpu in ("cpu_general_smollm2", "cpu_general_gemma3"):
        s = validate(compose_config([f"+experiment={cpu}", "logger=none"]))
        assert "general" in s.eval.evaluators and s.eval.general.source == "bundled"


def test_cfg_job_from_the_command_line():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphere.cli.edit",
            "+experiment=table1_llama3",
            "editor=alphaedit",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: llama3-8b" in proc.stdout and "limit: 15000" in proc.stdout and "alpha: 0.5" in proc.stdout


def test_sweep_job_names_leave_out_paths_launcher_and_resume():
    from sphere.run.sweep import job_dirname

    name = job_dirname(
        [
            "sphere=on",
            "run.seed=1",
            "+experiment=x",
            "run.cache_dir=/a/b",
            "run.resume=true",
            "hydra.launcher.partition=gpu",
            "logger=none",
            "dataset.path=/data/mcf.json",
        ]
    )
    assert name == "dataset.path-_data_mcf.json_run.seed-1_sphere-on"
    assert job_dirname(["run.seed=1", "sphere=on"]) == job_dirname(["sphere=on", "run.seed=1"])
    # a shell reads it as is: no "=", ",", brackets or quotes; list values keep their items
    listed = job_dirname(["run.keep_at=[2,4]", "editor.context_template_length_params=[[5, 5]]", "+x='a b'"])
    assert listed == "x-a-b_editor.context_template_length_params-5-5_run.keep_at-2-4"
    assert job_dirname([]) == "default" and job_dirname(["logger=none"]) == "default"


def test_the_search_preset_maximises_the_score_of_sphere_on_the_tuning_split():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = _compose("search_sphere_smollm2")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"sphere.alpha", "sphere.beta"}
    s = validate(compose_config(["+experiment=search_sphere_smollm2", "logger=none"]))
    assert s.dataset.path == "counterfact-tune" and s.sphere.enabled and s.run.objective == "score"
