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
    blocks = model.model.layers
    if not hasattr(blocks[0], "post_feedforward_layernorm"):
        print(f"error: {args.model_dir} has no post_feedforward_layernorm (not Gemma 2/3)", file=sys.stderr)
        return 2
    store: dict[tuple[str, int], torch.Tensor] = {}
    for layer in args.layers:
        blocks[layer].mlp.down_proj.register_forward_hook(
            lambda m, i, o, k=("out", layer): store.update({k: o})
        )
        blocks[layer].register_forward_hook(
            lambda m, i, o, k=("h", layer): store.update({k: o[0] if isinstance(o, tuple) else o})
        )
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        model(**enc)
        mask = enc["attention_mask"].bool()
        for layer in args.layers:
            norm = blocks[layer].post_feedforward_layernorm
            x, h = store[("out", layer)][mask], store[("h", layer)][mask]
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
