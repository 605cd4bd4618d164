"""What the machine offers a run plan (sphere/run/plan.py): the model's device, the memory free
there and in host memory, the disk free under the cache, and how many records the dataset holds."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from sphere.run.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """Memory visible to the run: ``free`` bytes (of ``total``) on ``where``, measured by ``what``."""

    where: str
    free: int
    total: int | None
    what: str


def resolve_plan_device(device: str) -> str:
    """The model's device as the loader resolves it, without failing when CUDA is absent here."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return "cuda:0" if device == "cuda" else device


def visible_memory(device: str, device_map: str | None = None) -> Budget | None:
    """Free memory where the model goes: ``torch.cuda.mem_get_info`` (summed over the visible GPUs
    with ``model.device_map``), MemAvailable for the CPU; None when that device is not here."""
    if device == "cpu":
        return host_memory()
    if not torch.cuda.is_available():
        return None
    if device_map:
        infos = [torch.cuda.mem_get_info(i) for i in range(torch.cuda.device_count())]
        return Budget(
            f"{len(infos)} GPUs (model.device_map={device_map})",
            sum(f for f, _ in infos),
            sum(t for _, t in infos),
            "torch.cuda.mem_get_info",
        )
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        return None
    free, total = torch.cuda.mem_get_info(index)
    return Budget(
        f"cuda:{index} ({torch.cuda.get_device_name(index)})", free, total, "torch.cuda.mem_get_info"
    )


def host_memory() -> Budget | None:
    """MemAvailable and MemTotal from /proc/meminfo (Linux); None elsewhere."""
    try:
        info = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
        )
        return Budget(
            "cpu (host memory)",
            int(info["MemAvailable"].split()[0]) * 1024,
            int(info["MemTotal"].split()[0]) * 1024,
            "MemAvailable in /proc/meminfo",
        )
    except (OSError, KeyError, ValueError):
        return None


def free_disk(path: str | Path) -> int | None:
    """Bytes free on the file system that holds ``path`` (or its nearest existing parent)."""
    try:
        p = Path(path).resolve()
        while not p.exists() and p != p.parent:
            p = p.parent
        return shutil.disk_usage(p).free
    except OSError:
        return None


def count_edits(s: Settings) -> int | None:
    """``dataset.limit``, else the number of records in the dataset file (None if unreadable)."""
    if s.dataset.limit is not None:
        return s.dataset.limit
    from sphere.data import load_records

    try:
        return len(load_records(s.dataset.kind, s.dataset.path, skip_malformed=s.dataset.skip_malformed))
    except (OSError, ValueError) as e:
        log.warning("plan: cannot count the records of %s (%s)", s.dataset.path, e)
        return None
