"""Batched decoding (greedy, or seeded top-k sampling): the text generation under the metrics that
read what the model writes (fluency and consistency, ``generation.py``'s evaluator; general ability,
``general.py``).

One primitive on top of Hugging Face ``generate``: prompts are sorted by token length and left-padded
in batches (left, so every row's next token sits at the last position), special tokens are added as
the tokenizer does for scoring, and the decoded continuation (without the prompt) comes back in the
input order. Sampling is seeded per call so two evaluations of the same model give the same texts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from editors.core.model_spec import input_device
from editors.core.progress import progress
from editors.core.tokens import Tokenizer
from sphere.evaluation.scoring import evaluating


def generate_texts(
    model,
    tok: Tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    top_k: int = 0,
    seed: int = 0,
    max_length: int | None = None,
    desc: str | None = None,
) -> list[str]:
    """The continuation of each prompt, decoded without special tokens.

    Args:
        max_new_tokens: tokens generated per prompt (the general-ability tasks' budget).
        top_k: 0 for greedy decoding; k > 0 samples from the top k (the reference's fluency
            test uses top-k 5), seeded with ``seed``.
        max_length: if set, the budget is ``max_length`` tokens *in total* per prompt (prompt
            included, the reference's ``max_out_len``); ``max_new_tokens`` is then an upper bound.
        desc: shown as progress (``editors.core.progress``), updated once per batch of prompts;
            ``None`` shows none.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [list(tok(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(encoded)
    device = input_device(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    pad = int(pad) if pad is not None else 0
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with evaluating(model), progress(len(order), desc or "", "prompt", disable=desc is None) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rows = [encoded[i] for i in idx]
            width = max(len(r) for r in rows)
            budget = max_new_tokens
            if max_length is not None:
                budget = max(1, min(max_new_tokens, max_length - width))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for b, r in enumerate(rows):
                ids[b, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[b, width - len(r) :] = 1
            kwargs: dict = {"do_sample": False}
            if top_k > 0:
                # torch's global RNG drives HF sampling; seed it from our own stream per batch.
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                kwargs = {"do_sample": True, "top_k": top_k, "top_p": 1.0, "temperature": 1.0}
            new = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=budget,
                pad_token_id=pad,
                **kwargs,
            )[:, width:]
            for i, row in zip(idx, new.cpu().tolist()):
                out[i] = tok.decode(row, skip_special_tokens=True)
            bar.update(len(idx))
    return out
