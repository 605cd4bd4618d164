"""Timing and memory measurement for the benchmark: medians of repeats, peak RSS and GPU memory."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


@contextmanager
def peak_memory(interval_s: float = 0.005) -> Iterator[dict[str, int]]:
    """Peak RSS (sampled every ``interval_s`` by a thread) and peak CUDA memory inside the block.

    ``ru_maxrss`` only ever grows over the process's life, so a stage's own peak needs sampling.
    """
    out = {"peak_rss": rss_bytes(), "peak_gpu": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak_rss"] = max(out["peak_rss"], rss_bytes())
            stop.wait(interval_s)

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out["peak_rss"] = max(out["peak_rss"], rss_bytes())
        if torch.cuda.is_available():
            out["peak_gpu"] = int(torch.cuda.max_memory_allocated())


@contextmanager
def patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Replace ``getattr(obj, name)`` by ``fn`` for each (obj, name, fn) for the duration of the
    block, and put every original back afterwards, also when the block raises."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, fn in patches:
            setattr(obj, name, fn)
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class Timing:
    """Wall times of ``repeats`` runs after ``warmup`` runs; the median is what ratios use."""

    times: list[float]
    peak_rss: int
    peak_gpu: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def measure(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[Timing, Any]:
    """Median-of-``repeats`` timing of ``fn`` and its last result, with the peak memory of all runs."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    with peak_memory() as mem:
        for _ in range(repeats):
            _sync()
            t0 = time.perf_counter()
            out = fn()
            _sync()
            times.append(time.perf_counter() - t0)
    return Timing(times, mem["peak_rss"], mem["peak_gpu"]), out


@dataclass
class StageResult:
    """One row of the benchmark: ours vs the reference-style path on the same inputs."""

    stage: str
    shape: str
    ours: Timing
    reference: Timing | None
    agreement: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.reference.median / self.ours.median if self.reference else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ours"]["median"] = self.ours.median
        if self.reference:
            d["reference"]["median"] = self.reference.median
        d["ratio"] = self.ratio
        return d


def environment() -> dict[str, Any]:
    """What the numbers depend on: device, threads, versions."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "device": dev,
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
