"""Benchmark: target values z for a batch of requests, optimised together vs one request at a time
(the reference's loop), in the same run, on the same model. Prints the ratio and the max |Δz|.

    python scripts/bench_values.py model=tiny-llama n=8
    python scripts/bench_values.py model=llama3-8b editor=memit n=100      # on a GPU
"""

from __future__ import annotations

import sys
import time

import torch

from editors.core.model_spec import spec_for
from editors.core.templates import generate_context_templates
from editors.core.values import ValueOptions, compute_target_values
from sphere.data import load_records
from sphere.models import load_model
from sphere.run.config import validate
from sphere.run.schema import compose_config


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main(argv: list[str]) -> None:
    n = int(next((a.split("=")[1] for a in argv if a.startswith("n=")), 8))
    overrides = [a for a in argv if not a.startswith("n=")]
    s = validate(compose_config(overrides))
    model, tok = load_model(s.model)
    spec, hp = spec_for(model), s.editor
    requests = [r.request for r in load_records(s.dataset.kind, s.dataset.path, limit=n)]
    templates = generate_context_templates(
        model, tok, hp.context_template_length_params, seed=0, flat=False
    ).flat
    block, opts = spec.block_name(hp.layers[-1]), ValueOptions.from_hparams(hp)
    (z_batch, _), t_batch = timed(
        lambda: compute_target_values(model, tok, spec, requests, block, templates, opts)
    )
    z_loop, t_loop = timed(
        lambda: torch.cat(
            [compute_target_values(model, tok, spec, [r], block, templates, opts)[0] for r in requests]
        )
    )
    print(
        f"{s.model.name}, {n} requests, {len(templates)} templates, device {next(model.parameters()).device}"
    )
    print(
        f"one request at a time: {t_loop:.2f} s   batched: {t_batch:.2f} s   speed-up {t_loop / t_batch:.2f}x"
    )
    print(f"max |z_batch - z_loop| = {float((z_batch - z_loop).abs().max()):.2e}")


if __name__ == "__main__":
    main(sys.argv[1:])
