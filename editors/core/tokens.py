"""Tokenization helpers every editor shares: right-padded batches, target ids, subject positions.

Positions are counted from the start of the sequence, so batches are always right-padded
(``padding_side`` is passed explicitly, never inherited from the tokenizer). BOS is handled by
token ids: targets are tokenized without special tokens and a leading BOS id is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from editors.core.requests import MalformedRequestError

FACT_TOKENS = ("subject_last", "last")


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the editors and evaluators use.

    Any ``PreTrainedTokenizer(Fast)`` fits; the protocol documents (and lets mypy check) what code
    here may rely on, so a tokenizer from another library can be adapted with a small wrapper.
    """

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    @property
    def pad_token_id(self) -> int | None: ...

    def __call__(self, text: Any, **kwargs: Any) -> Any:
        """Encode text(s); keyword arguments as ``PreTrainedTokenizer.__call__``."""
        ...

    def decode(self, ids: Any, **kwargs: Any) -> str: ...

    def batch_decode(self, ids: Any, **kwargs: Any) -> list[str]: ...

    def __len__(self) -> int: ...


def encode(
    tok: Tokenizer, texts: Sequence[str], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` for ``texts``."""
    enc = tok(list(texts), padding=True, return_tensors="pt", padding_side="right")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def target_ids(tok: Tokenizer, target: str) -> list[int]:
    """Token ids of a target continuation (e.g. " Paris"), without BOS."""
    ids = list(tok(target, add_special_tokens=False)["input_ids"])
    if ids and tok.bos_token_id is not None and ids[0] == tok.bos_token_id:
        ids = ids[1:]
    if not ids:
        raise MalformedRequestError(f"target {target!r} tokenizes to nothing; fix the record's target")
    return ids


def lookup_index(tok: Tokenizer, text_template: str, subject: str, fact_token: str = "subject_last") -> int:
    """Absolute position (BOS included) of the token whose representation an editor reads.

    ``text_template`` is the full text with ``{}`` for the subject. ``subject_last`` is the last
    subject token: len(tokens(prefix + subject)) − 1, as in the reference's repr_tools;
    ``last`` is the final token of the whole text.
    """
    if fact_token == "subject_last":
        prefix = text_template[: text_template.index("{}")]
        return len(tok(prefix + subject)["input_ids"]) - 1
    if fact_token == "last":
        return len(tok(text_template.format(subject))["input_ids"]) - 1
    raise ValueError(f"editor.fact_token={fact_token!r} is not supported; use one of {FACT_TOKENS}")


def gather_rows(hidden: torch.Tensor, index: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """hidden[i, index[i]] for every batch row i: (batch, seq, d) → (batch, d)."""
    idx = torch.as_tensor(index, device=hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
