"""This process's place in a data-parallel job (torchrun's environment) and its model's device.

``torchrun --nproc-per-node N -m sphere.covariance ...`` starts N processes, each with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set; a plain ``python -m sphere.covariance`` is one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sphere.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only when a device is chosen
    from sphere.models.config import ModelConfig

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
