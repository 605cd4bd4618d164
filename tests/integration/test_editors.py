"""Each editor's defining property on small random problems and tiny models, and each editor's
efficacy on 8 sequential CounterFact edits of a tiny model, with and without SPHERE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import DISTINCT8, random_psd, restored, settings

from editors.core.solvers import alphaedit_delta, nullspace_projector
from editors.core.weights import read_weight, write_weight
from editors.rome import rank_one_delta
from sphere.data import load_records
from sphere.run.runner import SequentialRun
from sphere.run.tracking import Tracker


def test_rome_rank_one_update_maps_key_to_value_exactly():
    g = torch.Generator().manual_seed(0)
    d_ff, d_model = 40, 12
    W = torch.randn(d_model, d_ff, generator=g, dtype=torch.float64)
    k_star = torch.randn(d_ff, generator=g, dtype=torch.float64)
    z = torch.randn(d_model, generator=g, dtype=torch.float64)
    u = torch.linalg.solve(
        random_psd(d_ff, 2), k_star + 0.1 * torch.randn(d_ff, generator=g, dtype=torch.float64)
    )
    u = u / u.norm()
    delta = rank_one_delta(u, k_star, W @ k_star, z).double()
    torch.testing.assert_close((W + delta) @ k_star, z, rtol=1e-5, atol=1e-5)
    assert torch.linalg.matrix_rank(delta) == 1
    other = torch.randn(d_ff, generator=g, dtype=torch.float64)
    other = other - (other @ u) * u  # keys orthogonal to u are untouched
    torch.testing.assert_close(delta @ other, torch.zeros(d_model, dtype=torch.float64), atol=1e-5, rtol=0)


def test_alphaedit_update_leaves_preserved_keys_unchanged():
    g = torch.Generator().manual_seed(3)
    d_ff, d_model, n = 32, 8, 4
    basis = torch.linalg.qr(torch.randn(d_ff, 12, generator=g))[0]  # preserved knowledge spans 12 dims
    K0 = torch.randn(500, 12, generator=g) @ basis.T
    C = K0.T @ K0 / 500
    P = nullspace_projector(C, threshold=1e-4)
    assert torch.allclose(P @ P, P, atol=1e-5) and abs(float(P.trace()) - (d_ff - 12)) < 1e-3
    K = torch.randn(n, d_ff, generator=g)
    R = torch.randn(n, d_model, generator=g)
    delta = alphaedit_delta(K, R, P, torch.zeros(d_ff, d_ff), l2=1.0)
    assert delta.norm() > 1e-2
    assert (delta @ K0.T).norm() / (delta.norm() * K0.norm()) < 1e-5  # ‖ΔW K₀‖ ≈ 0
    # Past edits' keys enter the system: a solve with them differs.
    assert not torch.allclose(alphaedit_delta(K, R, P, 5 * torch.eye(d_ff), l2=1.0), delta)


def edit_run(tmp_path: Path, model_pair, *overrides: str):
    model, tok = model_pair
    s = settings(
        f"dataset.path={DISTINCT8}", "dataset.limit=8", "dataset.batch_size=4", *overrides, tmp=tmp_path
    )
    records = load_records(s.dataset.kind, s.dataset.path, limit=s.dataset.limit)
    with restored(model):
        run = SequentialRun(s, model, tok, "tiny-llama-test", records, tmp_path)
        summary = run.run(Tracker(tmp_path, s.logger, run_name="t", group="g", tags=[], config={}))
    return summary, run


# Bars on a tiny *random* model (no knowledge, attention that barely routes the subject to the
# prediction position; see tests/assets/README.md). MEMIT, RECT and PRUNE make all 8 edits hold on
# the final model. AlphaEdit keeps 7 of 8 without SPHERE (its null-space constraint leaves little
# room in a 512-dim key space). ROME's rank-one updates interfere in sequence on a random model
# (one update with a small u·k* disturbs earlier facts), so ROME is judged right after each edit
# (protocol last_batch, batch size 1) — the closing note of issue 4 reports this gap.
EFFICACY = {"memit": 90.0, "rect": 90.0, "prune": 90.0, "alphaedit": 85.0, "rome": 75.0}
PROTOCOL = {"rome": ("eval.protocol=last_batch", "dataset.batch_size=1")}


# ROME + SPHERE takes ~2.5 min (21 templates, one request at a time); it runs under `make test-slow`.
CASES = [
    pytest.param(e, sp, marks=pytest.mark.slow) if (e, sp) == ("rome", "on") else (e, sp)
    for e in sorted(EFFICACY)
    for sp in ("off", "on")
]


@pytest.mark.parametrize("editor,sphere", CASES)
def test_editor_efficacy_on_tiny_llama(tmp_path, config_tiny_llama, editor, sphere):
    summary, run = edit_run(
        tmp_path,
        config_tiny_llama,
        "model=tiny-llama",
        f"editor={editor}",
        f"sphere={sphere}",
        *PROTOCOL.get(editor, ()),
    )
    assert summary["n_edits"] == 8
    assert summary["efficacy"] >= EFFICACY[editor], summary
    assert summary["efficacy"] > summary["pre"]["efficacy"]
    assert all(v == v and v > 0 for v in summary["he"].values())  # finite, logged per edited layer


def test_rome_writes_z_at_k_star_exactly(tmp_path, config_tiny_llama):
    """On the tiny model: after ROME's update, the edited matrix maps the subject's key to z."""
    from editors.core.keys import read_at_subject
    from editors.core.values import ValueOptions, compute_target_values
    from editors.core.weights import add_to_weight

    model, tok = config_tiny_llama
    s = settings("model=tiny-llama", "editor=rome", "sphere=off", tmp=tmp_path)
    request = load_records(s.dataset.kind, s.dataset.path, limit=1)[0].request
    with restored(model):
        run = SequentialRun(s, model, tok, "t", [], tmp_path)
        run.editor.setup()
        layer, spec, ed = run.layers[0], run.spec, run.editor
        z, _ = compute_target_values(
            model,
            tok,
            spec,
            [request],
            spec.mlp_name(layer),
            ed.templates.flat,
            ValueOptions.from_hparams(ed.hp),
        )
        add_to_weight(model, spec, layer, ed.delta(request))
        name = spec.weight_module_name(layer)
        out = read_at_subject(model, tok, [(request.prompt, request.subject)], [name], inputs=False)[name][0]
        torch.testing.assert_close(out, z[0], rtol=1e-4, atol=1e-4)


def test_rect_update_is_sparse_without_sphere(tmp_path, config_tiny_llama):
    model, _ = config_tiny_llama
    _, run = edit_run(
        tmp_path, config_tiny_llama, "model=tiny-llama", "editor=rect", "sphere=off", "dataset.limit=4"
    )
    with restored(model):  # one more batch, to look at a single batch's update
        updates = run.editor.apply([r.request for r in run.records[:2]])
    for u in updates:
        kept = float((u.delta != 0).float().mean())
        assert 0.39 <= kept <= 0.41, kept


def test_prune_readout_restrains_only_the_evaluated_weights(tmp_path, config_tiny_llama):
    model, tok = config_tiny_llama
    s = settings("model=tiny-llama", "editor=prune", "sphere=off", "dataset.limit=4", tmp=tmp_path)
    records = load_records(s.dataset.kind, s.dataset.path, limit=4)
    with restored(model):
        run = SequentialRun(s, model, tok, "t", records, tmp_path)
        run.editor.setup()
        run.editor.apply([r.request for r in records])
        layer = run.layers[-1]
        live = read_weight(model, run.spec, layer)
        w0 = run.ctx.pretrained(layer)
        # Blow the edit up so that some singular values exceed σ_max(W₀) and get restrained.
        write_weight(model, run.spec, layer, w0 + 50 * (live - w0))
        big = read_weight(model, run.spec, layer)
        s0 = float(torch.linalg.matrix_norm(w0, ord=2))
        with run.evaluated_weights():
            seen = read_weight(model, run.spec, layer)
        assert torch.equal(read_weight(model, run.spec, layer), big)  # live weights untouched
        sv = torch.linalg.svdvals(seen - w0)
        sv_big = torch.linalg.svdvals(big - w0)
        assert sv_big.max() > s0 and sv.max() < sv_big.max()
        expected = torch.where(sv_big > s0, torch.log(sv_big) - torch.log(torch.tensor(s0)) + s0, sv_big)
        torch.testing.assert_close(sv, expected, rtol=1e-4, atol=1e-4)


def test_alphaedit_updates_lie_in_the_null_space(tmp_path, config_tiny_llama):
    model, tok = config_tiny_llama
    s = settings("model=tiny-llama", "editor=alphaedit", "sphere=off", tmp=tmp_path)
    records = load_records(s.dataset.kind, s.dataset.path, limit=4)
    with restored(model):
        run = SequentialRun(s, model, tok, "t", records, tmp_path)
        run.editor.setup()
        solve = run.editor.solve
        for u in run.editor.apply([r.request for r in records]):
            P = solve.projectors[u.layer]
            assert (u.delta - u.delta @ P).norm() <= 1e-4 * u.delta.norm()
        assert all(float(c.norm()) > 0 for c in solve.past.gram.values())  # keys remembered


def test_unknown_editor_suggests_a_name():
    from editors.registry import UnknownEditorError, get_editor

    with pytest.raises(UnknownEditorError, match="did you mean 'memit'"):
        get_editor("memt")


@pytest.mark.parametrize("editor", ["alphaedit"])
def test_killed_run_resumes_to_the_same_result(tmp_path, config_tiny_llama, editor):
    """Kill a run after its first batch, resume it, and get the uninterrupted run's weights and metrics."""
    model, tok = config_tiny_llama
    overrides = (
        "model=tiny-llama",
        f"editor={editor}",
        "sphere=on",
        "dataset.limit=8",
        "dataset.batch_size=4",
        "run.checkpoint_every=1",  # a checkpoint after the first batch, the one the kill leaves
    )
    (tmp_path / "full").mkdir()
    full, _ = edit_run(tmp_path / "full", config_tiny_llama, *overrides)

    s = settings(f"dataset.path={DISTINCT8}", *overrides, tmp=tmp_path / "full")  # same statistics cache
    records = load_records(s.dataset.kind, s.dataset.path, limit=8)
    out = tmp_path / "killed"
    with restored(model):
        run = SequentialRun(s, model, tok, "tiny-llama-test", records, out)
        real_apply, calls = run.editor.apply, []

        def dying_apply(requests):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # the job is killed during the second batch
            return real_apply(requests)

        run.editor.apply = dying_apply
        with pytest.raises(KeyboardInterrupt):
            run.run(Tracker(out, s.logger, run_name="t", group="g", tags=[], config={}))
    with restored(model):  # a new process starts from the unedited model
        s.run.resume = True
        resumed_run = SequentialRun(s, model, tok, "tiny-llama-test", records, out)
        resumed = resumed_run.run(
            Tracker(out, s.logger, run_name="t", group="g", tags=[], config={}, resume_from_edits=4)
        )
    for key in ("efficacy", "generalization", "specificity"):
        assert resumed[key] == pytest.approx(full[key])
    assert resumed["he"] == pytest.approx(full["he"], rel=1e-6)
    rows = [json.loads(x)["n_edits"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == [0, 4, 8, 8]  # pre, batch 1 (before the kill), batch 2, final: nothing twice
