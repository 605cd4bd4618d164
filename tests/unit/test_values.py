"""The target-value (z) optimiser: batched over requests == one request at a time."""

from __future__ import annotations

import pytest
import torch

from editors.core.model_spec import spec_for
from editors.core.requests import EditRequest
from editors.core.values import ValueOptions, compute_target_values

REQUESTS = [
    EditRequest(0, "The mother tongue of {} is", "Danielle Darrieux", "English"),
    EditRequest(1, "{} plays the", "Toko Yasuda", "piano"),
    EditRequest(2, "The headquarters of {} is in", "Apple A5", "Washington, D.C."),  # multi-token target
]
TEMPLATES = ["{}", "Because of the rain. {}", "I think. {}"]


def test_batched_z_equals_per_request(tiny_llama):
    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=8, v_lr=0.5, v_weight_decay=0.01, clamp_norm_factor=4, kl_factor=0.0625
    )
    block = spec.block_name(2)
    z_batch, h0_batch = compute_target_values(model, tok, spec, REQUESTS, block, TEMPLATES, opts)
    for i, r in enumerate(REQUESTS):
        z_one, h0_one = compute_target_values(model, tok, spec, [r], block, TEMPLATES, opts)
        torch.testing.assert_close(h0_batch[i], h0_one[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(z_batch[i], z_one[0], rtol=1e-3, atol=1e-4)
    assert (z_batch - h0_batch).norm(dim=1).min() > 0  # something was optimised


def test_z_respects_clamp(tiny_llama):
    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=6, v_lr=5.0, v_weight_decay=0.0, clamp_norm_factor=0.5, kl_factor=0.0
    )
    z, h0 = compute_target_values(model, tok, spec, REQUESTS[:2], spec.block_name(1), TEMPLATES, opts)
    assert torch.all((z - h0).norm(dim=1) <= 0.5 * h0.norm(dim=1) * (1 + 1e-5))


def test_z_lowers_target_nll(tiny_llama):
    """z, written into the hidden state, makes the new target more likely than before."""
    from editors.core.nethook import edit_output
    from editors.core.tokens import encode, lookup_index, target_ids

    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=15, v_lr=0.5, v_weight_decay=0.001, clamp_norm_factor=10, kl_factor=0.0625
    )
    block = spec.block_name(1)
    z, h0 = compute_target_values(model, tok, spec, REQUESTS[:1], block, ["{}"], opts)
    r = REQUESTS[0]
    tgt = target_ids(tok, r.target)
    enc = encode(tok, [r.text])
    idx = lookup_index(tok, r.prompt, r.subject)

    def nll(vec):
        def put(h):
            h = h.clone()
            h[0, idx] = vec
            return h

        with torch.no_grad(), edit_output(model, block, put):
            logp = torch.log_softmax(model(**enc).logits[0, -1].float(), -1)
        return -float(logp[tgt[0]])

    assert nll(z[0]) < nll(h0[0]) - 0.1


@pytest.mark.parametrize(("arch", "where"), [("llama", "block"), ("qwen2", "mlp"), ("gemma3", "block")])
def test_starting_at_the_edited_block_equals_the_full_forward(arch, where):
    """Reusing the lower blocks' output (computed once) gives the z of full forwards at every step,
    for δ on a block's output (MEMIT) and on an MLP's output (ROME), on each decoder family."""
    from dataclasses import replace

    from helpers import tiny

    model, tok = tiny(arch, layers=4)
    spec = spec_for(model)
    assert spec.embeds_enter_blocks
    opts = ValueOptions(
        v_num_grad_steps=6, v_lr=0.5, v_weight_decay=0.01, clamp_norm_factor=4, kl_factor=0.0625
    )
    module = spec.block_name(2) if where == "block" else spec.mlp_name(2)
    calls: list[str] = []
    hooks = [
        m.register_forward_hook(lambda *_a, n=n: calls.append(n))
        for n, m in ((spec.mlp_name(i), model.get_submodule(spec.mlp_name(i))) for i in range(4))
    ]
    try:
        z_fast, h0_fast = compute_target_values(model, tok, spec, REQUESTS, module, TEMPLATES, opts)
        fast_calls = list(calls)
        calls.clear()
        z_full, h0_full = compute_target_values(
            model, tok, spec, REQUESTS, module, TEMPLATES, replace(opts, reuse_lower_layers=False)
        )
    finally:
        for h in hooks:
            h.remove()
    torch.testing.assert_close(h0_fast, h0_full)
    torch.testing.assert_close(z_fast, z_full, rtol=1e-5, atol=1e-6)
    # The full path computes every block at every step; the fast one computes blocks 0 and 1 in the
    # first pass only (an identity afterwards), blocks 2 and 3 at every step.
    steps = calls.count(spec.mlp_name(3))
    assert steps > 1 and calls.count(spec.mlp_name(0)) == steps
    assert fast_calls.count(spec.mlp_name(0)) == fast_calls.count(spec.mlp_name(1)) == 1
    assert fast_calls.count(spec.mlp_name(2)) == fast_calls.count(spec.mlp_name(3)) == steps


def test_gpt2_keeps_the_full_forward():
    from helpers import tiny

    model, tok = tiny("gpt2", layers=3)
    spec = spec_for(model)
    assert not spec.embeds_enter_blocks  # GPT-2 adds position embeddings to inputs_embeds
    opts = ValueOptions(v_num_grad_steps=3, v_lr=0.5, v_weight_decay=0.01, clamp_norm_factor=4, kl_factor=0.0)
    z, h0 = compute_target_values(model, tok, spec, REQUESTS[:1], spec.block_name(1), TEMPLATES, opts)
    assert torch.isfinite(z).all()


def test_z_in_chunks_of_rows_equals_all_at_once(tiny_llama):
    """v_max_rows splits a batch's requests into forward/backward chunks; the gradients add up to the
    whole batch's, so z (and the early stopping) is the same."""
    from dataclasses import replace

    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=6, v_lr=0.5, v_weight_decay=0.01, clamp_norm_factor=4, kl_factor=0.0625
    )
    block = spec.block_name(2)
    z_all, h0_all = compute_target_values(model, tok, spec, REQUESTS, block, TEMPLATES, opts)
    rows_per_request = len(TEMPLATES) + 1
    for max_rows in (1, rows_per_request, 2 * rows_per_request):  # < one request: one request per chunk
        z, h0 = compute_target_values(
            model, tok, spec, REQUESTS, block, TEMPLATES, replace(opts, max_rows=max_rows)
        )
        torch.testing.assert_close(h0, h0_all)
        # float differences only (other batch widths), the tolerance of the batched-vs-one-by-one test
        torch.testing.assert_close(z, z_all, rtol=1e-3, atol=1e-4)


def test_z_optimisation_reports_progress_in_a_log(tiny_llama, monkeypatch, caplog):
    """In a non-terminal log (a SLURM job) the z optimisation writes plain progress lines with the
    requests done and the loss; the phase threshold (10 s) is lowered so a tiny model shows it."""
    import functools
    import logging

    import editors.core.values as values
    from editors.core.progress import progress

    monkeypatch.setattr(values, "progress", functools.partial(progress, mode="log", interval=0))
    monkeypatch.setattr(values, "progress", _no_min(values.progress))
    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=3, v_lr=0.5, v_weight_decay=0.01, clamp_norm_factor=4, kl_factor=0.0625
    )
    with caplog.at_level(logging.INFO, logger="editors.progress"):
        compute_target_values(model, tok, spec, REQUESTS[:2], spec.block_name(2), TEMPLATES, opts)
    lines = [r.getMessage() for r in caplog.records if r.name == "editors.progress"]
    assert lines and all("\r" not in line for line in lines)
    assert lines[0].startswith("z optimisation (2 requests): 0/3 steps")
    assert any("loss=" in line and "done=" in line for line in lines)


def _no_min(make):
    """The progress factory with ``min_s`` forced to 0."""

    def build(*args, **kwargs):
        kwargs["min_s"] = 0.0
        return make(*args, **kwargs)

    return build


def test_bfloat16_passes_keep_z_close_and_float32_untouched(tiny_llama):
    """``v_compute_dtype=bfloat16``: the passes run under autocast (and the math attention kernel
    on a CPU), z stays float32 and close to the float32 optimum, the same first-pass h₀ up to
    bfloat16 rounding; float32 is the reference path, bit for bit the default."""
    import dataclasses

    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=8, v_lr=0.5, v_weight_decay=0.01, clamp_norm_factor=4, kl_factor=0.0625
    )
    block = spec.block_name(2)
    z32, h32 = compute_target_values(model, tok, spec, REQUESTS, block, TEMPLATES, opts)
    again, _ = compute_target_values(
        model, tok, spec, REQUESTS, block, TEMPLATES, dataclasses.replace(opts, compute_dtype="float32")
    )
    assert torch.equal(z32, again)
    z16, h16 = compute_target_values(
        model, tok, spec, REQUESTS, block, TEMPLATES, dataclasses.replace(opts, compute_dtype="bfloat16")
    )
    assert z16.dtype == torch.float32 and not torch.equal(z16, z32)  # the option took effect
    torch.testing.assert_close(h16, h32, rtol=2e-2, atol=2e-2)
    moved = (z32 - h32).norm(dim=1)
    assert torch.all((z16 - z32).norm(dim=1) < 0.25 * moved)


def test_compute_dtype_is_checked():
    from editors.memit import MEMITHParams

    with pytest.raises(ValueError, match="v_compute_dtype='float16' must be one of"):
        MEMITHParams(v_compute_dtype="float16")


def test_weights_cast_once_match_autocast_and_are_put_back(tiny_llama, monkeypatch):
    """On a CPU the bfloat16 path casts the blocks' linear weights once (``linear_weights_cast``)
    instead of at every call: the same z bit for bit as autocast's own casts, and every weight is
    the same float32 tensor afterwards."""

    from editors.core import values

    model, tok = tiny_llama
    spec = spec_for(model)
    opts = ValueOptions(
        v_num_grad_steps=5,
        v_lr=0.5,
        v_weight_decay=0.01,
        clamp_norm_factor=4,
        kl_factor=0.0625,
        compute_dtype="bfloat16",
    )
    block = spec.block_name(2)
    before = {k: (v, v.clone()) for k, v in model.state_dict(keep_vars=True).items()}
    z_once, h_once = compute_target_values(model, tok, spec, REQUESTS, block, TEMPLATES, opts)
    assert values.cast_blocks(model, spec, torch.bfloat16)  # on a CPU: every block
    with monkeypatch.context() as m:  # autocast's own per-call casts
        m.setattr(values, "cast_blocks", lambda *a: [])
        z_each, h_each = compute_target_values(model, tok, spec, REQUESTS, block, TEMPLATES, opts)
    assert torch.equal(z_once, z_each) and torch.equal(h_once, h_each)
    for name, p in model.state_dict(keep_vars=True).items():
        assert p.dtype == torch.float32 and torch.equal(p, before[name][1]), name
    with pytest.raises(RuntimeError, match="boom"), values.linear_weights_cast([model], torch.bfloat16):
        raise RuntimeError("boom")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # put back on an error too
