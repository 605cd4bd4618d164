"""Collect and cache the key covariance C = E[k kᵀ] of a run's edited layers, on one process or
data-parallel under torchrun: every process reads the same corpus draw and runs its shard of the
texts through its own copy of the model; the sums are added up (``all_reduce``) and rank 0 writes
C = sum / count where ``sphere-edit`` looks for it (``sphere.run.covariance``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sphere.covariance.processes import TIMEOUT, Ranks, rank_device
from sphere.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class CovarianceResult:
    """What ``precompute_covariance`` did (on rank 0; other ranks get the same layers and no paths)."""

    layers: list[int]
    written: dict[int, Path] = field(default_factory=dict)  # layer → file (rank 0)
    cached: list[int] = field(default_factory=list)  # layers found already cached (nothing done)
    texts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    world: int = 1
    device: str = "cpu"


class _Counted:
    """The texts, counting the non-empty ones taken (``collect_second_moments`` takes n of them)."""

    def __init__(self, texts: Iterable[str]):
        self._texts = texts
        self.n = 0

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            if text.strip():
                self.n += 1
            yield text


def precompute_covariance(
    overrides: Sequence[str] = (), *, force: bool = False, ranks: Ranks | None = None
) -> CovarianceResult:
    """Collect and cache the key statistics of ``sphere-edit <overrides>``'s edited layers.

    Under torchrun (``WORLD_SIZE`` set) joins the process group (NCCL on CUDA, gloo on CPU), shards
    the texts over the processes and sums their accumulators; without it, one process does all.
    Layers already cached (or found in ``model.covariance.precomputed``) are skipped unless ``force``.
    """
    import torch
    import torch.distributed as dist

    from editors.core.covariance import collect_second_moments, weights_digest
    from editors.core.model_spec import input_device, num_layers, spec_for
    from sphere.models import load_model, model_id
    from sphere.run.compose import compose_config
    from sphere.run.config import check_against_model, validate
    from sphere.run.covariance import covariance_cache, covariance_corpus, covariance_options

    ranks = ranks or Ranks.from_env()
    s = validate(compose_config(list(overrides)))
    if ranks.world > 1 and s.model.device_map:
        raise ConfigError(
            f"model.device_map={s.model.device_map!r} spreads one model over several GPUs, but each "
            "torchrun process holds a whole model; unset it (model.device_map=null)"
        )
    device = rank_device(s.model, ranks)
    model_cfg = dataclasses.replace(s.model, device=device)
    if device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(device))
    if ranks.distributed:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world, timeout=TIMEOUT)
    try:
        layers = sorted(set(s.editor.layers))
        model, tok = load_model(model_cfg, s.run.cache_dir)
        on = input_device(model)  # where the count lives ("auto" resolved); sums live with their layers
        result = CovarianceResult(layers=layers, world=ranks.world, device=str(on))
        spec = spec_for(model)
        check_against_model(s, model, spec, layers)
        mid = model_id(s.model)
        opts = covariance_options(s.model.covariance, s.run.seed)
        cache = covariance_cache(s.run.cache_dir, s.model.covariance)
        digest = weights_digest(model, spec, range(num_layers(model)))
        modules = {layer: spec.weight_module_name(layer) for layer in layers}

        # Rank 0 decides what is missing (other ranks may not see its disk) and tells the others.
        todo: list[Any] = [None]
        if ranks.rank == 0:
            found = (
                set()
                if force
                else {i for i in layers if cache.lookup(mid, digest, modules[i], opts) is not None}
            )
            if s.model.covariance.precomputed:
                log.warning(
                    "model.covariance.precomputed=%s is set: runs read statistics from there first",
                    s.model.covariance.precomputed,
                )
            todo = [[layer for layer in layers if layer not in found]]
        if ranks.distributed:
            dist.broadcast_object_list(todo, src=0)
        missing: list[int] = todo[0]
        result.cached = [layer for layer in layers if layer not in missing]
        if not missing:
            return result

        draw = covariance_corpus(opts)
        texts = _Counted(draw)
        start = time.perf_counter()
        raw = collect_second_moments(model, tok, spec, missing, texts, opts, shard=(ranks.rank, ranks.world))
        count = torch.tensor([raw[missing[0]][1]], dtype=torch.int64, device=on)
        if ranks.distributed:
            for layer in missing:
                dist.all_reduce(raw[layer][0], op=dist.ReduceOp.SUM)
            dist.all_reduce(count, op=dist.ReduceOp.SUM)
        if on.type == "cuda":
            torch.cuda.synchronize(on)
        result.seconds = time.perf_counter() - start
        result.texts, result.tokens = texts.n, int(count.item())

        # Rank 0 writes; the others wait for it and learn whether it succeeded.
        status: list[Any] = [None]
        if ranks.rank == 0:
            try:
                for layer in missing:  # each Σkkᵀ dropped once stored: never all sums and all Cs
                    total = raw.pop(layer)[0]
                    cache.store(mid, digest, modules[layer], opts, total, result.tokens, draw)
                    del total
                    path = cache.path(mid, digest, modules[layer], opts)
                    assert path is not None
                    result.written[layer] = path
            except Exception as e:  # noqa: BLE001 - reported to every rank, then re-raised here
                status = [f"{type(e).__name__}: {e}"]
                if ranks.distributed:
                    dist.broadcast_object_list(status, src=0)
                raise
        if ranks.distributed:
            dist.broadcast_object_list(status, src=0)
        if status[0] is not None:
            raise RuntimeError(f"rank 0 could not write the statistics ({status[0]})")
        return result
    finally:
        if ranks.distributed and dist.is_initialized():
            dist.destroy_process_group()
