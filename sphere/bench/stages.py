"""The benchmark's stages. Each returns a ``StageResult``: ours vs the reference-style path.

Linear-algebra stages run on random matrices at the 8B models' layer shapes (scaled down by
``scale`` on a machine that cannot afford the reference path at full size: its c×c eigh of
LLaMA3-8B's down_proj takes ~10 min on 2 CPU cores); model stages run on a real small model.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from editors.core.solvers import alphaedit_delta, memit_delta, nullspace_projector
from sphere.bench import reference as ref
from sphere.bench.harness import StageResult, measure, patched
from sphere.method.energy import hyperspherical_energy
from sphere.method.projection import principal_directions, project_update

# (name, rows m = d_model, columns c = d_ff) of the edited down_proj matrices.
SHAPES = {"llama3-8b": (4096, 14336), "qwen2.5-7b": (3584, 18944)}


def scaled(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(8, round(shape[0] * scale)), max(8, round(shape[1] * scale))


def _weights(m: int, c: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """A random weight with a decaying column spectrum (so SPHERE's β picks a real r)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return (torch.randn(m, c, generator=g) * torch.linspace(1, 0.1, c)).to(device)


def _psd(d: int, n: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    """A key covariance: C = AᵀA/n from n random keys with a decaying spectrum (rank ≤ n)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(n, d, generator=g) * torch.logspace(0, -3, d)
    return (a.T @ a / n).to(device)


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def sphere_stage(
    model: str, scale: float, repeats: int, device: torch.device, ref_repeats: int
) -> StageResult:
    m, c = scaled(SHAPES[model], scale)
    W, delta = _weights(m, c, device), _weights(m, c, device, seed=2) * 1e-3
    beta, alpha = 0.5, 0.8

    def ours():
        d = principal_directions(W, beta=beta, method="gram", compute_dtype=torch.float32)
        return project_update(delta, d.U, alpha), d.r

    t_ours, (out_ours, r_ours) = measure(ours, repeats, warmup=1)
    t_ref, out_ref = measure(lambda: ref.sphere_projection(W, delta, beta, alpha), ref_repeats)
    r_ref = principal_directions(W, beta=beta, method="naive", compute_dtype=torch.float32).r
    return StageResult(
        f"SPHERE directions + projection ({model} down_proj)",
        f"{m}×{c}",
        t_ours,
        t_ref,
        agreement=f"r {r_ours} vs {r_ref}; max rel. |ΔW'−ΔW'_ref| {_max_rel(out_ours, out_ref):.1e}",
        notes="ours: m×m eigh of the row Gram matrix; reference: c×c eigh and the explicit c×c projector",
    )


def nullspace_stage(scale: float, repeats: int, device: torch.device, ref_repeats: int) -> StageResult:
    d = scaled(SHAPES["llama3-8b"], scale)[1]
    C = _psd(d, 2 * d, device)
    ev = torch.linalg.eigvalsh(C.double())
    thr = float((ev[d // 2 - 1] * ev[d // 2]).sqrt())  # between two eigenvalues: half the spectrum, no tie
    t_ours, P = measure(lambda: nullspace_projector(C, thr), repeats, warmup=1)
    t_ref, P_ref = measure(lambda: ref.nullspace_projector_svd(C, thr), ref_repeats)
    return StageResult(
        "AlphaEdit null-space projector",
        f"d_ff {d}",
        t_ours,
        t_ref,
        agreement=f"max |P−P_ref| {float((P - P_ref).abs().max()):.1e}, rank {int(P.trace().round())}",
        notes=f"ours: symmetric eigh on {device}; reference: full SVD on the CPU",
    )


def solve_stage(
    editor: str, scale: float, repeats: int, device: torch.device, n_keys: int = 100
) -> StageResult:
    m, d = scaled(SHAPES["llama3-8b"], scale)
    C = _psd(d, 2 * d, device)
    g = torch.Generator(device="cpu").manual_seed(3)
    K = torch.randn(n_keys, d, generator=g).to(device)
    R = torch.randn(n_keys, m, generator=g).to(device) * 1e-2
    if editor == "memit":
        t, out = measure(lambda: memit_delta(K, R, C, 15000.0), repeats)
        check = float(
            (out @ (15000.0 * C.double() + K.double().T @ K.double()).float() - R.T @ K).abs().max()
        )
        agree = f"normal-equation residual {check:.1e}"
    else:
        P = nullspace_projector(C, float(torch.linalg.eigvalsh(C).median()))
        past = torch.zeros(d, d, device=device)
        t, out = measure(lambda: alphaedit_delta(K, R, P, past, 10.0), repeats)
        agree = f"‖ΔW(I−P)‖/‖ΔW‖ {float((out - out @ P).norm() / out.norm()):.1e}"
    return StageResult(
        f"{'MEMIT' if editor == 'memit' else 'AlphaEdit'} solve, {n_keys} keys",
        f"{m}×{d}",
        t,
        None,
        agreement=agree,
        notes="the same d_ff × d_ff solve as the reference (float64 for MEMIT): no faster path yet",
    )


def he_stage(repeats: int, device: torch.device, scale: float = 1.0) -> StageResult:
    m, c = scaled(SHAPES["llama3-8b"], scale)
    W = _weights(m, c, device)
    t_ours, he = measure(lambda: hyperspherical_energy(W, normalized=False), repeats)
    t_ref, he_ref = measure(lambda: ref.hyperspherical_energy_full(W), repeats)
    return StageResult(
        "hyperspherical energy",
        f"{m}×{c}",
        t_ours,
        t_ref,
        agreement=f"HE {he:.6g} vs {he_ref:.6g}",
        notes="ours: row blocks of the Gram matrix (1024 × m at a time, float64); reference-style: the "
        "whole m×m distance matrix at once (the memory column shows the difference)",
    )


# ----------------------------------------------------------------------------------- model stages


class SmallModel:
    """A real small model loaded once for the model stages, with its editor hyperparameters."""

    def __init__(self, overrides: list[str]) -> None:
        from editors.core.model_spec import spec_for
        from sphere.models import load_model
        from sphere.run.compose import compose_config
        from sphere.run.config import validate

        self.overrides = overrides
        self.s = validate(compose_config(["logger=none", *overrides]))
        self.model, self.tok = load_model(self.s.model, self.s.run.cache_dir)
        self.spec = spec_for(self.model)


def covariance_stage(sm: SmallModel, n_texts: int, max_length: int, repeats: int) -> StageResult:
    from editors.core.covariance import CovarianceOptions, collect_second_moments
    from sphere.data.corpus import corpus_texts

    layers = list(sm.s.editor.layers)
    texts = list(corpus_texts("bundled", 0, n_texts))
    opts = CovarianceOptions(corpus="bundled", n_samples=n_texts, max_length=max_length, batch_size=16)
    with torch.no_grad():
        t_ours, ours = measure(
            lambda: collect_second_moments(sm.model, sm.tok, sm.spec, layers, texts, opts), repeats
        )
        t_ref, refd = measure(
            lambda: ref.covariance_per_layer(sm.model, sm.tok, sm.spec, layers, texts, opts), repeats
        )
    diff = max(_max_rel(ours[k][0], refd[k][0]) for k in layers)
    return StageResult(
        f"key statistics, layers {layers[0]}–{layers[-1]}",
        f"{sm.s.model.name}, {n_texts} texts × ≤{max_length} tokens",
        t_ours,
        t_ref,
        agreement=f"max rel. |C−C_ref| {diff:.1e}",
        notes="ours: one pass for all layers, stopped after the deepest; reference: one pass per layer",
    )


def values_stage(sm: SmallModel, n_requests: int, repeats: int) -> StageResult:
    from editors.core.templates import generate_context_templates
    from editors.core.values import ValueOptions, compute_target_values
    from sphere.data import load_records

    hp = sm.s.editor
    requests = [r.request for r in load_records("counterfact", "counterfact-sample", limit=n_requests)]
    templates = generate_context_templates(
        sm.model, sm.tok, hp.context_template_length_params, seed=0, flat=False
    ).flat
    block, opts = sm.spec.block_name(hp.layers[-1]), ValueOptions.from_hparams(hp)
    args = (sm.model, sm.tok, sm.spec, requests, block, templates, opts)
    t_ours, (z, _) = measure(lambda: compute_target_values(*args), repeats)
    t_ref, (z_ref, _) = measure(lambda: ref.target_values_one_by_one(*args), repeats)
    return StageResult(
        f"z optimisation, {n_requests} requests",
        f"{sm.s.model.name}, {len(templates)} templates, {opts.v_num_grad_steps} steps",
        t_ours,
        t_ref,
        agreement=f"max rel. |z−z_ref| {_max_rel(z, z_ref):.1e}",
        notes="ours: all requests together, blocks below the edited one computed once; reference: "
        "one request at a time, full forwards",
    )


def eval_stage(sm: SmallModel, n_records: int, repeats: int) -> StageResult:
    from sphere.data import load_records
    from sphere.evaluation.counterfact import evaluate_counterfact

    records = load_records("counterfact", "counterfact-sample", limit=n_records)
    t_ours, rows = measure(lambda: evaluate_counterfact(sm.model, sm.tok, records), repeats)
    t_ref, rows_ref = measure(lambda: ref.evaluate_record_by_record(sm.model, sm.tok, records), repeats)
    keys = [k for k in rows[0] if k.endswith("_success")]
    same = all(abs(a[k] - b[k]) < 1e-9 for a, b in zip(rows, rows_ref) for k in keys if a[k] == a[k])
    return StageResult(
        f"CounterFact evaluation, {n_records} records",
        f"{sm.s.model.name}",
        t_ours,
        t_ref,
        agreement="identical per-record success" if same else "per-record success DIFFERS",
        notes="ours: all prompts of all records in length-sorted batches; reference: record by record",
    )


@contextlib.contextmanager
def reference_mode() -> Iterator[None]:
    """Every stage of a run the reference's way: per-layer statistics passes, z one request at a
    time with full forwards, AlphaEdit's CPU SVD, SPHERE's c×c eigh, record-by-record evaluation."""
    import editors.alphaedit as alphaedit_mod
    import editors.core.spread as spread_mod
    import sphere.evaluation as evaluation_mod
    import sphere.run.covariance as covariance_mod

    def per_layer(model, tok, spec, layers, texts, opts, **kw):
        texts = list(texts)
        return ref.covariance_per_layer(model, tok, spec, layers, texts, opts)

    patches = [
        (spread_mod, "compute_target_values", ref.target_values_one_by_one),
        (covariance_mod, "collect_second_moments", per_layer),
        (alphaedit_mod, "nullspace_projector", ref.nullspace_projector_svd),
        (evaluation_mod, "evaluate_counterfact", ref.evaluate_record_by_record),
    ]
    with patched(patches):
        yield


def run_stage(overrides: list[str], editor: str, sphere: bool, n_edits: int, batch: int) -> StageResult:
    """One whole run (statistics, editing, evaluation; model loading excluded), ours vs reference mode."""
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    job = [
        *overrides,
        f"editor={editor}",
        f"sphere={'on' if sphere else 'off'}",
        "logger=none",
        "dataset.path=counterfact-sample",
        f"dataset.limit={n_edits}",
        f"dataset.batch_size={batch}",
        "run.plots=false",
    ]
    summaries: dict[str, dict[str, Any]] = {}
    timings = {}
    for mode in ("ours", "reference"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose_config(
                [
                    *job,
                    f"run.cache_dir={tmp}/cache",
                    *(["sphere.method=naive"] if mode == "reference" else []),
                ]
            )
            ctx = reference_mode() if mode == "reference" else contextlib.nullcontext()
            out_dir = Path(tmp) / "run"

            def one_run(cfg: Any = cfg, out_dir: Path = out_dir) -> dict[str, Any]:
                return run_experiment(cfg, out_dir)

            with ctx:
                t, summary = measure(one_run, 1)
            summaries[mode] = summary
            timings[mode] = t
    # Model loading is the same in both modes: report editing + evaluation + setup from the runner.
    for mode, s in summaries.items():
        tm = s["time"]
        timings[mode].times = [tm["setup_s"] + tm["edit_s"] + tm["eval_s"]]
    keys = ["efficacy", "generalization", "specificity"]
    post = {m: {k: summaries[m][k] for k in keys if k in summaries[m]} for m in summaries}
    one_record = 100.0 / n_edits
    worst = max(abs(post["ours"][k] - post["reference"][k]) for k in post["ours"])
    return StageResult(
        f"whole run: {editor}{' + SPHERE' if sphere else ''}, {n_edits} edits in batches of {batch}",
        overrides[0].split("=", 1)[1] if overrides else "",
        timings["ours"],
        timings["reference"],
        agreement=f"max |Δmetric| {worst:.2f} (one record = {one_record:.2f}): "
        + ("within one record" if worst <= one_record + 1e-9 else "MORE than one record"),
        notes="setup + editing + evaluation from the runner's timings (model loading excluded)",
        extra={
            "metrics": post,
            "edit_s_per_edit": {m: s["time"]["edit_s"] / n_edits for m, s in summaries.items()},
        },
    )


def memory_stage(overrides: list[str], editor: str, sphere: bool, n_edits: int, batch: int) -> StageResult:
    """One whole run (loading and statistics included) in a fresh process, with its peak host RSS
    and GPU memory per phase (``sphere.bench.memory``); no reference-style side."""
    import subprocess
    import sys

    from sphere.bench.harness import Timing
    from sphere.bench.memory import human

    job = [
        *overrides,
        f"editor={editor}",
        f"sphere={'on' if sphere else 'off'}",
        "dataset.path=counterfact-sample",
        f"dataset.limit={n_edits}",
        f"dataset.batch_size={batch}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        subprocess.run([sys.executable, "-m", "sphere.bench.memory", str(out), *job], check=True)
        result = json.loads(out.read_text())
    w, peak = result["weights_bytes"], result["peak_rss"]
    top = max(result["phases"], key=lambda name: result["phases"][name]["peak_rss"])
    return StageResult(
        f"memory of a run: {editor}{' + SPHERE' if sphere else ''}, {n_edits} edits in batches of {batch}",
        overrides[0].split("=", 1)[1] if overrides else "",
        Timing([result["seconds"]], peak, result["peak_gpu"]),
        None,
        agreement=f"peak RSS {human(peak)} = {peak / w:.2f}× the weights ({human(w)}), in {top}",
        notes="a fresh process; peak RSS (and GPU memory) of every phase of the run, loading included: "
        "the table below",
        extra={k: result[k] for k in ("phases", "weights_bytes", "exact", "checkpoint_files", "metrics")},
    )


def dump(results: list[StageResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=1)
