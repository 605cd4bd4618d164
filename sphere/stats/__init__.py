"""Key statistics computed ahead of a run, data-parallel over processes with ``torch.distributed``.

    torchrun --nproc-per-node 8 -m sphere.stats model=llama3-8b model.stats.corpus=wikipedia \\
        model.stats.n_samples=100000
    python -m sphere.stats model=smollm2-135m          # one process (no torchrun): the same files

The overrides are ``sphere-edit``'s: the statistics written are those a ``sphere-edit`` with the same
``model``, ``model.stats``, ``run.seed``, ``run.cache_dir`` and edited layers (``editor.layers``)
reads, under the same cache key (``sphere.run.statistics``), so that run finds them and collects
nothing. Each of the ``world`` processes reads the same corpus draw and runs every ``world``-th text
through its own copy of the model (``collect_second_moments(shard=(rank, world))``); the sums
Σ k kᵀ and the token counts are summed over processes (``all_reduce``) and rank 0 writes C = sum /
count, atomically, where the runner looks. See docs/distributed.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sphere.errors import ConfigError

if TYPE_CHECKING:  # torch and the model loaders are imported only when statistics are computed
    from sphere.models.config import ModelConfig

log = logging.getLogger(__name__)

# The longest a process waits for the others at a collective (model loading, rank 0's cache lookup
# and its writes happen between collectives).
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: torchrun's RANK / LOCAL_RANK / WORLD_SIZE, or one process."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    distributed: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ranks:
        env = dict(os.environ if env is None else env)
        if "WORLD_SIZE" not in env:
            return cls()
        return cls(
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            world=int(env["WORLD_SIZE"]),
            distributed=True,
        )


@dataclass
class StatsResult:
    """What ``precompute_stats`` did (on rank 0; other ranks get the same layers and no paths)."""

    layers: list[int]
    written: dict[int, Path] = field(default_factory=dict)  # layer → file (rank 0)
    cached: list[int] = field(default_factory=list)  # layers found already cached (nothing done)
    texts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    world: int = 1
    device: str = "cpu"


def rank_device(cfg: ModelConfig, ranks: Ranks) -> str:
    """The device of this process's model: ``cuda:LOCAL_RANK`` under torchrun when the model is to
    run on CUDA (``model.device`` auto with a GPU, or cuda[:n]), else ``model.device``."""
    if not ranks.distributed:
        return cfg.device
    import torch

    wants_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    if not wants_cuda:
        return cfg.device
    if not torch.cuda.is_available():
        raise ConfigError(f"model.device={cfg.device!r} but CUDA is not available; use model.device=cpu")
    if ranks.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK={ranks.local_rank} but only {torch.cuda.device_count()} CUDA devices are visible; "
            "lower --nproc-per-node"
        )
    return f"cuda:{ranks.local_rank}"


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


def precompute_stats(
    overrides: Sequence[str] = (), *, force: bool = False, ranks: Ranks | None = None
) -> StatsResult:
    """Collect and cache the key statistics of ``sphere-edit <overrides>``'s edited layers.

    Under torchrun (``WORLD_SIZE`` set) joins the process group (NCCL on CUDA, gloo on CPU), shards
    the texts over the processes and sums their accumulators; without it, one process does all.
    Layers already cached (or found in ``model.stats.precomputed``) are skipped unless ``force``.
    """
    import torch
    import torch.distributed as dist

    from editors.core.covariance import collect_second_moments, weights_digest
    from editors.core.model_spec import input_device, num_layers, spec_for
    from sphere.models import load_model, model_id
    from sphere.run.config import check_against_model, validate
    from sphere.run.schema import compose_config
    from sphere.run.statistics import stats_cache, stats_corpus, stats_options

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
        result = StatsResult(layers=layers, world=ranks.world, device=str(on))
        spec = spec_for(model)
        check_against_model(s, model, spec, layers)
        mid = model_id(s.model)
        opts = stats_options(s.model.stats, s.run.seed)
        cache = stats_cache(s.run.cache_dir, s.model.stats)
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
            if s.model.stats.precomputed:
                log.warning(
                    "model.stats.precomputed=%s is set: runs read statistics from there first",
                    s.model.stats.precomputed,
                )
            todo = [[layer for layer in layers if layer not in found]]
        if ranks.distributed:
            dist.broadcast_object_list(todo, src=0)
        missing: list[int] = todo[0]
        result.cached = [layer for layer in layers if layer not in missing]
        if not missing:
            return result

        draw = stats_corpus(opts)
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
