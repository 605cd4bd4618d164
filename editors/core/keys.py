"""Keys: inputs of the edited matrix at the subject's last token, averaged over context templates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from editors.core.model_spec import ModelSpec, input_device
from editors.core.nethook import capture, run_until_stop
from editors.core.requests import EditRequest
from editors.core.templates import ContextTemplates
from editors.core.tokens import Tokenizer, encode, gather_rows, lookup_index
from editors.core.weights import weight_device


def fill(template: str, value: str) -> str:
    """Replace the one ``{}`` of ``template`` (str.format would choke on other braces)."""
    return template.replace("{}", value, 1)


@torch.no_grad()
def read_at_subject(
    model: nn.Module,
    tok: Tokenizer,
    items: Sequence[tuple[str, str]],
    modules: Sequence[str],
    *,
    inputs: bool,
    fact_token: str = "subject_last",
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Representations of ``modules`` at the fact token of each (text template, subject) item.

    Returns {module name: (len(items), d) float32}, each on the device the module's input or
    output is on. The forward stops after the deepest module.
    """
    device = input_device(model)
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    deepest = max(modules, key=lambda n: order[n])
    out: dict[str, list[torch.Tensor]] = {m: [] for m in modules}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        idx = [lookup_index(tok, t, s, fact_token) for t, s in chunk]
        batch = encode(tok, [fill(t, s) for t, s in chunk], device)
        with capture(model, modules, inputs=inputs, stop_after=deepest) as store:
            run_until_stop(model, **batch)
        for m in modules:
            out[m].append(gather_rows(store[m], idx).float())
    return {m: torch.cat(v) for m, v in out.items()}


def compute_keys(
    model: nn.Module,
    tok: Tokenizer,
    spec: ModelSpec,
    requests: Sequence[EditRequest],
    layers: Sequence[int],
    templates: ContextTemplates,
    *,
    fact_token: str = "subject_last",
    batch_size: int = 64,
) -> dict[int, torch.Tensor]:
    """Keys k (n × d_ff) per layer: mean over each template group, then over groups (MEMIT §1.5).

    Each layer's keys are on the device of its edited matrix (they meet it in the solve).
    """
    items = [(fill(t, r.prompt), r.subject) for r in requests for g in templates.groups for t in g]
    names = [spec.weight_module_name(layer) for layer in layers]
    reps = read_at_subject(
        model, tok, items, names, inputs=True, fact_token=fact_token, batch_size=batch_size
    )
    sizes = [len(g) for g in templates.groups]
    keys = {}
    for layer, name in zip(layers, names):
        per_req = reps[name].view(len(requests), sum(sizes), -1)
        groups = torch.split(per_req, sizes, dim=1)
        keys[layer] = torch.stack([g.mean(1) for g in groups]).mean(0).to(weight_device(model, spec, layer))
    return keys


def subject_outputs(
    model: nn.Module,
    tok: Tokenizer,
    module: str,
    requests: Sequence[EditRequest],
    *,
    fact_token: str = "subject_last",
    batch_size: int = 64,
) -> torch.Tensor:
    """Output of ``module`` at the fact token of each bare prompt (n × d), e.g. MEMIT's H_L."""
    items = [(r.prompt, r.subject) for r in requests]
    return read_at_subject(
        model, tok, items, [module], inputs=False, fact_token=fact_token, batch_size=batch_size
    )[module]
