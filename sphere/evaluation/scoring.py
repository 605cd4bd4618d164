"""Teacher-forced scoring of (prefix, target) continuations: the one primitive every metric is built on.

Why a single primitive: CounterFact's NLL/probability metrics, its ``*_correct`` argmax accuracy and ZsRE's
token accuracy are all functions of the same two quantities per target token — its log-probability and
whether it is the argmax — under teacher forcing. Computing them in one batched pass keeps the metrics
consistent with each other and the evaluation fast.

Why token ids are assembled here instead of re-tokenising ``prefix + " " + target``: BPE merges across the
boundary could shift positions, and BOS handling differs between tokenizers. The reference patches that up by
checking whether the model name contains "llama"; we instead tokenize the prefix normally (so LLaMA-3 gets its
BOS, Qwen/GPT-2 get none) and the target without special tokens, and concatenate the ids. The logit at
position ``len(prefix_ids) + j - 1`` then predicts target token ``j`` exactly, for any tokenizer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from editors.core.model_spec import input_device, output_device
from editors.core.progress import progress
from editors.core.tokens import Tokenizer


@dataclass(frozen=True)
class ContinuationScore:
    """Teacher-forced score of one target continuation.

    Attributes:
        nll: mean per-token negative log-likelihood of the target given the prefix (the reference's score
            ``s``; ``exp(-nll)`` is the per-token geometric-mean probability used for "magnitudes").
        token_correct: per target token, whether the model's argmax at the preceding position equals it.
        all_correct: every target token is the argmax (the reference's CounterFact ``*_correct``).
    """

    nll: float
    token_correct: list[bool]
    all_correct: bool

    @property
    def prob(self) -> float:
        """Per-token geometric-mean probability ``exp(-nll)``."""
        return math.exp(-self.nll)


def spaced(target: str) -> str:
    """The continuation text for ``target``: a leading space is added unless one is already there.

    Why: datasets store objects without the separating space ("Paris"), and the reference always scores
    ``" " + target``; a loader that already prepended the space must not get a double space.
    """
    return target if target[:1].isspace() else " " + target


def encode_pair(tok: Tokenizer, prefix: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prefix`` (with the tokenizer's special tokens) and of ``spaced(target)`` (without).

    The target loses a leading BOS id if the tokenizer adds one anyway (some LLaMA tokenizers ignore
    ``add_special_tokens=False``), which is the token-id form of the reference's llama-name special case.
    """
    prefix_ids = list(tok(prefix, add_special_tokens=True)["input_ids"])
    target_ids = list(tok(spaced(target), add_special_tokens=False)["input_ids"])
    bos = tok.bos_token_id
    if bos is not None and target_ids and target_ids[0] == bos:
        target_ids = target_ids[1:]
    if not prefix_ids:
        raise ValueError(
            f"prefix {prefix!r} tokenizes to no ids; nothing would predict the first target token"
        )
    if not target_ids:
        raise ValueError(f"target {target!r} tokenizes to no ids")
    return prefix_ids, target_ids


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    """Eval mode (dropout off) and no autograd for the block; the model's previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _pad_id(tok: Tokenizer) -> int:
    """Id used for right padding; its value never matters because padded positions are masked and unread."""
    for cand in (tok.pad_token_id, tok.eos_token_id):
        if cand is not None:
            return int(cand)
    return 0


def score_continuations(
    model,
    tok: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 32,
    *,
    desc: str | None = None,
) -> list[ContinuationScore]:
    """Score every ``(prefix, target)`` pair by teacher forcing, in mini-batches of right-padded sequences.

    Each sequence is ``ids(prefix) + ids(" " + target)``; the LM head runs only at the positions that predict
    some row's target tokens (``logits_to_keep``), and ``log_softmax`` only on the rows read (in fp32), so
    memory is ``O(batch · #positions kept · vocab)`` instead of ``O(batch · seq · vocab)``. Sequences are
    sorted by length before batching to minimise padding; results come back in the input order.

    The model is put in eval mode for the call (dropout off) and its previous mode restored afterwards.
    Works for any Hugging Face causal LM: inputs go to the device of its embedding (the first device
    of a model sharded by a device map).

    ``desc``: shown as progress (``editors.core.progress``), updated once per mini-batch; ``None``
    shows none.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [encode_pair(tok, prefix, target) for prefix, target in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    results: list[ContinuationScore | None] = [None] * len(encoded)
    device = input_device(model)
    # accelerate's hooks move a tensor argument to the model's first device, but the model indexes
    # the final hidden states (on the last device) with ``logits_to_keep``: a sharded model is given
    # the trailing window that holds the same positions, as an int.
    window = output_device(model) != device
    pad_id = _pad_id(tok)
    with evaluating(model), progress(len(order), desc or "", "prompt", disable=desc is None) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [encoded[i] for i in idx]
            for i, score in zip(idx, _score_batch(model, batch, pad_id, device, window)):
                results[i] = score
            bar.update(len(idx))
    return results  # type: ignore[return-value]  # every slot was filled above


def _score_batch(
    model, batch: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device, window: bool = False
) -> list[ContinuationScore]:
    """One forward over a right-padded batch; gathers only the target-predicting logit rows."""
    lengths = [len(p) + len(t) for p, t in batch]
    width = max(lengths)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows: list[int] = []
    cols: list[int] = []
    gold: list[int] = []
    for b, (prefix_ids, target_ids) in enumerate(batch):
        seq = prefix_ids + target_ids
        input_ids[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[b, : len(seq)] = 1
        # the logit at position len(prefix)+j-1 predicts target token j
        rows.extend([b] * len(target_ids))
        cols.extend(range(len(prefix_ids) - 1, len(prefix_ids) - 1 + len(target_ids)))
        gold.extend(target_ids)
    # The LM head runs only at the positions some row reads (``logits_to_keep``): the vocabulary
    # matmul and the B × T × V logits dominate evaluation time and memory (128k-token vocabularies).
    keep = sorted(set(cols))
    if window:
        keep = list(range(keep[0], width))
    at = {c: i for i, c in enumerate(keep)}
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        logits_to_keep=len(keep) if window else torch.tensor(keep, device=device),
    ).logits
    row_t = torch.tensor(rows, device=logits.device)
    col_t = torch.tensor([at[c] for c in cols], device=logits.device)
    gold_t = torch.tensor(gold, device=logits.device)
    picked = logits[row_t, col_t].float()  # (n_target_tokens, vocab)
    del logits
    token_logp = picked.log_softmax(dim=-1).gather(1, gold_t[:, None]).squeeze(1)
    token_hit = picked.argmax(dim=-1) == gold_t
    token_logp_l = token_logp.cpu().tolist()
    token_hit_l = token_hit.cpu().tolist()
    out: list[ContinuationScore] = []
    offset = 0
    for _, target_ids in batch:
        n = len(target_ids)
        logp = token_logp_l[offset : offset + n]
        hits = [bool(h) for h in token_hit_l[offset : offset + n]]
        offset += n
        out.append(ContinuationScore(nll=-sum(logp) / n, token_correct=hits, all_correct=all(hits)))
    return out
