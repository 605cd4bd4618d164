"""Second moments of keys, C = E[k kᵀ], per edited layer (reference §1.7).

All edited layers are collected in one pass on the unedited model (the reference runs one pass per
layer, lazily, and can collect layers 5..8 on a partially edited model). Caching on disk and
loading precomputed statistics is the run's business (``sphere/run/covariance.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from editors.core.faults import kill_point
from editors.core.model_spec import ModelSpec, input_device, offloaded_value
from editors.core.nethook import capture, run_until_stop
from editors.core.progress import progress
from editors.core.weights import weight_device, weight_param

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CovarianceOptions:
    """How C is estimated. ``corpus`` is an id that names the texts (part of the cache key)."""

    corpus: str
    n_samples: int
    max_length: int
    batch_size: int = 8
    dtype: str = "float32"
    seed: int = 0  # which texts a sampled corpus draws: part of the cache key like everything else


def weights_digest(model: nn.Module, spec: ModelSpec, layers: Sequence[int]) -> str:
    """A cheap fingerprint of the weights C depends on (strided samples of a few matrices)."""
    h = hashlib.sha256()
    modules: list[Any] = [cast(Any, model).get_input_embeddings()]
    modules += [model.get_submodule(spec.weight_module_name(layer)) for layer in layers]
    for module in modules:
        # A layer a device map offloaded (to the CPU or disk) is read from where accelerate keeps it.
        t = offloaded_value(module, "weight") if module.weight.device.type == "meta" else module.weight
        if t is None:
            raise ValueError(f"{type(module).__name__} weight is on the meta device and not offloaded")
        flat = t.detach().reshape(-1)
        h.update(flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def collect_second_moments(
    model: nn.Module,
    tok,
    spec: ModelSpec,
    layers: Sequence[int],
    texts: Iterable[str],
    opts: CovarianceOptions,
    *,
    shard: tuple[int, int] = (0, 1),
) -> dict[int, tuple[torch.Tensor, int]]:
    """One pass over ``texts``: {layer: (Σ k kᵀ, token count)} for the edited-matrix inputs.

    The texts taken are the first ``opts.n_samples`` non-empty ones. ``shard=(rank, world)`` runs
    only the ``rank``-th of every ``world`` of them through the model (text i goes to rank
    i mod world), so the ``world`` shards' sums and counts add up to the whole pass's
    (data-parallel collection: ``sphere.covariance``). Every shard still reads the whole draw. A shard
    left without text (``n_samples < world``) returns zero sums and count 0.
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard={shard} must be (rank, world) with 0 <= rank < world")
    device = input_device(model)  # the texts'; each layer's sums live with its captured inputs
    dtype = getattr(torch, opts.dtype)
    names = {layer: spec.weight_module_name(layer) for layer in layers}
    deepest = names[max(layers)]
    sums: dict[int, torch.Tensor] = {}
    # One batch's kᵀk per device, reused by every layer and batch: ``sums + kᵀk`` would allocate a
    # new d_ff² matrix next to the old sum and the product (at LLaMA3-8B's d_ff, 822 MB each), and an
    # in-place ``addmm_`` would round differently from adding the finished product.
    scratch: dict[tuple[torch.device, int], torch.Tensor] = {}
    count, seen = 0, 0
    batch: list[str] = []
    bar = progress(
        len(range(rank, opts.n_samples, world)),
        desc="key statistics" if world == 1 else f"key statistics (rank {rank}/{world})",
        unit="text",
        leave=False,
        disable=rank != 0,
    )

    def flush() -> None:
        nonlocal count
        enc = tok(
            batch,
            truncation=True,
            max_length=opts.max_length,
            padding=True,
            return_tensors="pt",
            padding_side="right",
        ).to(device)
        with capture(model, list(names.values()), inputs=True, stop_after=deepest) as store:
            run_until_stop(model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        mask = enc["attention_mask"].bool()
        for layer, name in names.items():
            x = store.pop(name)
            a = x[mask.to(x.device)].to(dtype)  # (tokens, d_ff), padding dropped
            del x
            if layer not in sums:
                sums[layer] = a.T @ a
                continue
            key = (a.device, a.shape[1])
            if key not in scratch:
                scratch[key] = torch.empty_like(sums[layer])
            s = torch.mm(a.T, a, out=scratch[key])
            sums[layer].add_(s)  # the same additions as ``sums[layer] + a.T @ a``, in place
        count += int(mask.sum())
        kill_point("covariance.collect")  # tests: killed while collecting the covariance

    for text in texts:
        if not text.strip():
            continue
        mine = seen % world == rank
        seen += 1
        if mine:
            batch.append(text)
        if len(batch) == opts.batch_size:
            flush()
            bar.update(len(batch))
            batch = []
        if seen >= opts.n_samples:
            break
    if batch:
        flush()
        bar.update(len(batch))
    bar.close()
    if seen == 0 or (count == 0 and world == 1):
        raise ValueError(
            f"covariance corpus {opts.corpus!r} yielded no text; point covariance.corpus at a text file"
        )
    for layer in layers:  # a shard left without text adds nothing
        if layer not in sums:
            w = weight_param(model, spec, layer)
            d = w.shape[0] if spec.conv1d else w.shape[1]
            sums[layer] = torch.zeros(d, d, dtype=dtype, device=weight_device(model, spec, layer))
    if seen < opts.n_samples and rank == 0:
        log.warning(
            "covariance corpus %s has only %d texts (covariance.n_samples=%d)",
            opts.corpus,
            seen,
            opts.n_samples,
        )
    return {layer: (s, count) for layer, s in sums.items()}
