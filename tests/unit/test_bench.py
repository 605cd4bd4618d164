"""sphere-bench runs every stage end to end on tiny sizes and writes its JSON and Markdown. Nothing
about speed is asserted (timings are the benchmark's output, not a test's); what is checked is that
each fast path agrees with its reference-style path on the same inputs."""

from __future__ import annotations

import json

import pytest
import torch

from sphere.bench import reference as ref
from sphere.bench import stages as st


def test_reference_paths_agree_with_ours():
    from editors.core.solvers import nullspace_projector
    from sphere.method.energy import hyperspherical_energy
    from sphere.method.projection import principal_directions, project_update

    W = st._weights(24, 80, torch.device("cpu"))
    delta = st._weights(24, 80, torch.device("cpu"), seed=5)
    d = principal_directions(W, beta=0.5, method="gram")
    torch.testing.assert_close(
        project_update(delta, d.U, 0.8), ref.sphere_projection(W, delta, 0.5, 0.8), atol=1e-4, rtol=1e-4
    )
    C = st._psd(40, 80, torch.device("cpu"))
    ev = torch.linalg.eigvalsh(C.double())
    thr = float((ev[19] * ev[20]).sqrt())
    torch.testing.assert_close(
        nullspace_projector(C, thr), ref.nullspace_projector_svd(C, thr), atol=1e-4, rtol=0
    )
    assert hyperspherical_energy(W) == pytest.approx(ref.hyperspherical_energy_full(W), rel=1e-9)


def test_reference_mode_restores_every_patched_function():
    import editors.alphaedit as alphaedit_mod
    import editors.core.spread as spread_mod
    import sphere.evaluation as evaluation_mod
    import sphere.run.covariance as covariance_mod

    before = [
        spread_mod.compute_target_values,
        covariance_mod.collect_second_moments,
        alphaedit_mod.nullspace_projector,
        evaluation_mod.evaluate_counterfact,
    ]
    with st.reference_mode():
        assert spread_mod.compute_target_values is ref.target_values_one_by_one
    after = [
        spread_mod.compute_target_values,
        covariance_mod.collect_second_moments,
        alphaedit_mod.nullspace_projector,
        evaluation_mod.evaluate_counterfact,
    ]
    assert after == before


@pytest.mark.slow  # ~1.5 min: two whole runs in each mode; the agreement tests above are the fast tier
def test_every_stage_on_a_tiny_model_writes_json_and_markdown(tmp_path, capsys):
    from sphere.cli.bench import main

    args = [
        "model=tiny-llama",
        "editor.v_num_grad_steps=4",
        f"run.cache_dir={tmp_path / 'cache'}",
        "--scale", "0.02", "--he-scale", "0.02", "--repeats", "1", "--ref-repeats", "1",
        "--texts", "8", "--max-length", "16", "--requests", "2", "--records", "3",
        "--run-edits", "4", "--run-batch", "2", "--run-editors", "alphaedit", "--run-sphere", "on",
        "-o", str(tmp_path / "bench"),
    ]  # fmt: skip
    assert main(args) == 0
    payload = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert payload["environment"]["torch_threads"] >= 1 and payload["complete"]
    stages = {r["stage"]: r for r in payload["results"]}
    # 2 SPHERE shapes, null space, 2 solves, HE, statistics, z, evaluation, an AlphaEdit + SPHERE run,
    # the memory of a MEMIT + SPHERE run
    assert len(stages) == 11
    for r in payload["results"]:
        assert r["ours"]["median"] > 0 and r["ours"]["peak_rss"] > 0
        if r["reference"] is not None:
            assert r["ratio"] == pytest.approx(r["reference"]["median"] / r["ours"]["median"])
    runs = [r for r in payload["results"] if r["stage"].startswith("whole run")]
    assert len(runs) == 1 and all("within one record" in r["agreement"] for r in runs)
    assert all(r["extra"]["edit_s_per_edit"]["ours"] > 0 for r in runs)
    evals = next(r for r in payload["results"] if r["stage"].startswith("CounterFact evaluation"))
    assert evals["agreement"] == "identical per-record success"
    memory = next(r for r in payload["results"] if r["stage"].startswith("memory of a run"))
    phases = memory["extra"]["phases"]
    assert {"load", "statistics", "evaluation", "z optimisation", "layer solve", "SPHERE"} <= set(phases)
    assert memory["ours"]["peak_rss"] == max(p["peak_rss"] for p in phases.values())
    assert memory["extra"]["weights_bytes"] > 0 and memory["extra"]["checkpoint_files"]
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert md.split("\n\n")[1].count("\n| ") == len(payload["results"])  # one row per stage
    assert "peak memory per phase" in md and "| z optimisation |" in md


def test_linear_algebra_and_evaluation_stages_write_json_and_markdown(tmp_path):
    from sphere.cli.bench import main

    args = [
        "model=tiny-llama",
        "--stages", "sphere", "nullspace", "he", "eval",
        "--scale", "0.02", "--he-scale", "0.02", "--repeats", "1", "--ref-repeats", "1", "--records", "2",
        "-o", str(tmp_path / "bench"),
    ]  # fmt: skip
    assert main(args) == 0
    payload = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert payload["complete"] and len(payload["results"]) == 5
    assert all(r["ratio"] > 0 for r in payload["results"])
    assert payload["results"][-1]["agreement"] == "identical per-record success"
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "| SPHERE directions + projection (llama3-8b down_proj) |" in md
