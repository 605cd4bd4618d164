"""The target-value (z) optimiser: batched over requests == one request at a time."""

from __future__ import annotations

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
