#!/usr/bin/env python
"""What Gemma 2/3's post-MLP norm does to an edit (docs/tuning.md, "Gemma-3-270M"): per edited layer,
the norm of the down_proj output, of that output after ``post_feedforward_layernorm``, and of the
residual stream, and how much a small change at the down_proj output is scaled on its way to the
residual (median over the tokens of a few CounterFact prompts).

    python scripts/post_mlp_norm.py .cache/sphere/models/gemma-3-270m-q4_k_m.float32.* --layers 2 3 4

The directory is the de-quantized copy a run caches (``sphere-edit model=gemma3-270m run.prepare=true``).
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from editors.core.model_spec import get_module, spec_for
from editors.core.nethook import capture

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Danielle Darrieux's mother tongue is",
    "Toko Yasuda plays the instrument",
    "The capital of Japan is Tokyo, which lies on",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args(argv)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    spec = spec_for(model)
    if spec.post_mlp_norm is None:
        print(f"error: {args.model_dir} ({spec.arch}) has no post-MLP norm (not Gemma 2/3)", file=sys.stderr)
        return 2
    outs = {layer: spec.weight_module_name(layer) for layer in args.layers}
    blocks = {layer: spec.block_name(layer) for layer in args.layers}
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad(), capture(model, [*outs.values(), *blocks.values()]) as store:
        model(**enc)
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        for layer in args.layers:
            norm = get_module(model, spec.post_mlp_norm.format(layer))
            x, h = store[outs[layer]][mask], store[blocks[layer]][mask]
            d = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
            d = d / d.norm(dim=1, keepdim=True) * 0.1 * x.norm(dim=1, keepdim=True)  # a change of 10 %
            gain = (norm(x + d) - norm(x)).norm(dim=1) / d.norm(dim=1)
            print(
                f"layer {layer}: down_proj output {x.norm(dim=1).median():.1f}, after the norm "
                f"{norm(x).norm(dim=1).median():.1f}, residual stream {h.norm(dim=1).median():.1f}, "
                f"a 10 % change scaled by {gain.median():.1f} on its way to the residual"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
