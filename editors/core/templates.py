"""Context templates: short random prefixes that make keys and values robust to context.

Generated once per run from the *unedited* model (top-k sampling, k = 5, as in the reference) and
then reused for every batch. Unlike the reference, generation is seeded, so two runs with the same
seed use the same templates, and special tokens are not decoded into the text (the reference keeps
a literal "<|begin_of_text|>" that re-tokenizes into a second BOS for LLaMA-3).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editors.core.model_spec import input_device, model_devices
from editors.core.tokens import Tokenizer

STARTERS = ("The", "Therefore", "Because", "I", "You")


@dataclass(frozen=True)
class ContextTemplates:
    """Groups of templates, each containing one ``{}`` for the request prompt.

    Keys are averaged within a group, then across groups (MEMIT: [["{}"], [5 generated]] gives the
    bare prompt half the weight); ROME uses a single flat group.
    """

    groups: tuple[tuple[str, ...], ...]

    @property
    def flat(self) -> list[str]:
        return [t for g in self.groups for t in g]

    def to_list(self) -> list[list[str]]:
        return [list(g) for g in self.groups]

    @classmethod
    def from_state(cls, state: dict) -> ContextTemplates | None:
        """Templates saved in an editor's ``state_dict`` under "templates" (None if absent)."""
        groups = state.get("templates")
        return cls(tuple(tuple(g) for g in groups)) if groups else None


def generate_context_templates(
    model,
    tok: Tokenizer,
    length_params: Sequence[Sequence[int]],
    *,
    seed: int,
    flat: bool,
    starters: Sequence[str] = STARTERS,
) -> ContextTemplates:
    """Sample templates: for each (max_length, n) pair, n // len(starters) continuations per starter.

    ``max_length`` counts all tokens, prompt (and BOS) included, like the reference's generate_fast.
    ``flat=False`` gives MEMIT's [["{}"], generated]; ``flat=True`` gives ROME's [["{}", *generated]].
    """
    device = input_device(model)
    generated: list[str] = []
    # Sampling draws on the device of the logits (the last one of a sharded model); every CUDA
    # device the model is on gets its generator state back afterwards.
    devices = [d for d in model_devices(model) if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for length, n in length_params:
            per_starter = max(1, n // len(starters))
            for starter in starters:
                enc = tok([starter] * per_starter, return_tensors="pt").to(device)
                out = model.generate(
                    **enc,
                    do_sample=True,
                    top_k=5,
                    top_p=1.0,
                    temperature=1.0,
                    max_length=max(length, enc["input_ids"].shape[1] + 1),
                    pad_token_id=tok.pad_token_id,
                )
                for text in tok.batch_decode(out, skip_special_tokens=True):
                    text = unicodedata.normalize("NFKD", text).replace("\n\n", " ")
                    generated.append(text.replace("{", " ").replace("}", " ") + ". {}")
    if flat:
        return ContextTemplates(groups=(("{}", *generated),))
    return ContextTemplates(groups=(("{}",), tuple(generated)))
