"""Peak memory of one whole run, phase by phase: host RSS and GPU memory while the model loads, the
key statistics are collected, the editor sets up, the model is evaluated, z is optimised, the rest of
each edit runs (key reads, layer solves, SPHERE, commit) and checkpoints are written.

    python -m sphere.bench.memory OUT.json model=smollm2-135m editor=memit sphere=on dataset.limit=40 ...

Arguments after OUT.json are ``sphere-edit`` overrides. The run happens in this process, which
should be a fresh one (``sphere-bench --stages memory`` and the wide-model test start one): a
process's peak is its whole history. Unless ``run.cache_dir`` is given, the run gets an empty cache
directory, so the statistics are collected and measured.

Peaks are exact where Linux lets a process reset its high-water mark (writing 5 to
``/proc/self/clear_refs`` resets VmHWM): each phase boundary reads VmHWM and resets it. Elsewhere a
thread samples the RSS every 5 ms. GPU peaks come from ``torch.cuda.max_memory_allocated`` (tensors
only; the CUDA context and the allocator's cache come on top).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sphere.bench.harness import patched, rss_bytes

# Phases in the order a run meets them; "run" is everything not in another phase (building the
# editor, the weights digest, templates are in "editor setup", summaries, ...).
PHASES = (
    "load",
    "statistics",
    "editor setup",
    "evaluation",
    "z optimisation",
    "keys",
    "layer solve",
    "SPHERE",
    "edit",
    "checkpoint",
    "run",
)
PHASE_NOTES = {
    "load": "reading the weights (GGUF: de-quantizing), moving them to the device",
    "statistics": "C = E[kkᵀ] of the edited layers: collected and stored, or read from the cache",
    "editor setup": "context templates, projectors (statistics excluded)",
    "evaluation": "the evaluators before, during and after editing",
    "z optimisation": "target values z of each batch (editors/core/values.py)",
    "keys": "keys K and outputs at the last edited layer, per layer of each batch",
    "layer solve": "the d_ff × d_ff solve of each layer (MEMIT/PRUNE/RECT, AlphaEdit)",
    "SPHERE": "principal directions of W and the projected update",
    "edit": "the rest of each batch: the layer loop's copies, transforms, commit",
    "checkpoint": "checkpoints and kept weights",
    "run": "everything else: building the editor, the weights digest, summaries",
}


def _vm_hwm() -> int | None:
    """This process's RSS high-water mark (bytes) since start or the last reset; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class HighWater:
    """The peak RSS since the last ``take()``: exact (VmHWM, reset at each take) where the kernel
    allows it, else sampled by a thread every ``interval_s``."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.exact = _vm_hwm() is not None and _reset_hwm()
        self._peak = rss_bytes()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, args=(interval_s,), daemon=True)
            self._thread.start()

    def _sample(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            self._stop.wait(interval_s)

    def take(self) -> int:
        """The peak since the previous take (or construction), and start a new interval."""
        if self.exact:
            peak = _vm_hwm() or 0
            _reset_hwm()
            return peak
        peak, self._peak = max(self._peak, rss_bytes()), rss_bytes()
        return peak

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class PhaseStats:
    """One phase's own peaks (nested phases excluded), its time and how often it ran."""

    peak_rss: int = 0
    peak_gpu: int = 0
    seconds: float = 0.0
    calls: int = 0


class PhaseMeter:
    """Attributes every interval of the run to the innermost phase running then.

    A phase boundary closes the current interval: its peak RSS (and GPU peak) goes to the phase on
    top of the stack, and a new interval starts. A phase's peak is therefore its own (a nested
    phase's peak is the nested phase's), and the run's peak is the largest of them.
    """

    def __init__(self) -> None:
        self.hw = HighWater()
        self.stack = ["run"]
        self.phases: dict[str, PhaseStats] = {}
        self._t = time.perf_counter()
        self.weights_bytes = 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def _close(self) -> None:
        st = self.phases.setdefault(self.stack[-1], PhaseStats())
        st.peak_rss = max(st.peak_rss, self.hw.take())
        if torch.cuda.is_available():
            st.peak_gpu = max(st.peak_gpu, int(torch.cuda.max_memory_allocated()))
            torch.cuda.reset_peak_memory_stats()
        now = time.perf_counter()
        st.seconds += now - self._t
        self._t = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._close()
        self.stack.append(name)
        self.phases.setdefault(name, PhaseStats()).calls += 1
        try:
            yield
        finally:
            self._close()
            self.stack.pop()

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)

        return wrapped

    def finish(self) -> dict[str, Any]:
        self._close()
        self.hw.close()
        phases = {name: asdict(self.phases[name]) for name in PHASES if name in self.phases}
        return {
            "exact": self.hw.exact,
            "peak_rss": max(p["peak_rss"] for p in phases.values()),
            "peak_gpu": max(p["peak_gpu"] for p in phases.values()),
            "weights_bytes": self.weights_bytes,
            "phases": phases,
        }


@contextlib.contextmanager
def instrumented(meter: PhaseMeter) -> Iterator[None]:
    """Route a run's phases through ``meter`` by wrapping the functions that run them (restored on
    exit, as ``stages.reference_mode`` does)."""
    import editors.alphaedit as alphaedit_mod
    import editors.core.spread as spread_mod
    import editors.memit as memit_mod
    import editors.rome as rome_mod
    import sphere.method.projection as projection_mod
    import sphere.models as models_mod
    import sphere.run.covariance as covariance_mod
    import sphere.run.runner as runner_mod

    def load(*args, **kwargs):
        model, tok = load_model(*args, **kwargs)
        tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}  # tied: once
        meter.weights_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        return model, tok

    load_model = models_mod.load_model
    run_cls = runner_mod.SequentialRun
    cache_cls = covariance_mod.CovarianceCache
    init = run_cls.__init__

    def run_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.editor.setup = meter.wrap("editor setup", self.editor.setup)
        self.editor.apply = meter.wrap("edit", self.editor.apply)

    sphere_call = meter.wrap("SPHERE", projection_mod.SphereProjection.__call__)
    patches = [
        (models_mod, "load_model", meter.wrap("load", load)),
        (cache_cls, "get", meter.wrap("statistics", cache_cls.get)),
        (spread_mod, "compute_target_values", meter.wrap("z optimisation", spread_mod.compute_target_values)),
        (rome_mod, "compute_target_values", meter.wrap("z optimisation", rome_mod.compute_target_values)),
        (spread_mod, "compute_keys", meter.wrap("keys", spread_mod.compute_keys)),
        (spread_mod, "subject_outputs", meter.wrap("keys", spread_mod.subject_outputs)),
        (memit_mod, "memit_delta", meter.wrap("layer solve", memit_mod.memit_delta)),
        (alphaedit_mod, "alphaedit_delta", meter.wrap("layer solve", alphaedit_mod.alphaedit_delta)),
        (projection_mod.SphereProjection, "__call__", sphere_call),
        (runner_mod, "save_checkpoint", meter.wrap("checkpoint", runner_mod.save_checkpoint)),
        (run_cls, "_keep", meter.wrap("checkpoint", run_cls._keep)),
        (run_cls, "measure", meter.wrap("evaluation", run_cls.measure)),
        (run_cls, "__init__", run_init),
    ]
    with patched(patches):
        yield


def measure_run(overrides: list[str], out_dir: Path | None = None) -> dict[str, Any]:
    """One ``sphere-edit <overrides>`` run in this process, with its peak memory per phase."""
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    meter = PhaseMeter()
    with contextlib.ExitStack() as stack:
        if out_dir is None:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sphere-memory-")))
        extra = ["logger=none", "run.plots=false"]
        if not any(o.startswith("run.cache_dir=") for o in overrides):
            extra.append(f"run.cache_dir={out_dir / 'cache'}")  # statistics are collected, and measured
        cfg = compose_config([*extra, *overrides])
        t0 = time.perf_counter()
        with instrumented(meter):
            summary = run_experiment(cfg, out_dir / "run")
        seconds = time.perf_counter() - t0
        ckpt = out_dir / "run" / "checkpoint"
        files = (
            {f.name: f.stat().st_size for f in sorted(ckpt.glob("*.safetensors"))} if ckpt.is_dir() else {}
        )
    result = meter.finish()
    result.update(
        seconds=seconds,
        overrides=overrides,
        checkpoint_files=files,
        metrics={k: summary[k] for k in ("efficacy", "generalization", "specificity") if k in summary},
        threads=torch.get_num_threads(),
    )
    return result


def human(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def phase_table(result: dict[str, Any]) -> str:
    """Markdown table of a ``measure_run`` result: phase, peak RSS (× weights), peak GPU, time."""
    w = result.get("weights_bytes") or 0
    gpu = any(p["peak_gpu"] for p in result["phases"].values())
    lines = [
        "| phase | peak RSS | × weights | " + ("peak GPU | " if gpu else "") + "time (s) | calls |",
        "|---|---:|---:|" + ("---:|" if gpu else "") + "---:|---:|",
    ]
    for name, p in result["phases"].items():
        ratio = f"{p['peak_rss'] / w:.2f}" if w else "–"
        g = f"{human(p['peak_gpu'])} | " if gpu else ""
        lines.append(
            f"| {name} | {human(p['peak_rss'])} | {ratio} | {g}{p['seconds']:.1f} | {p['calls'] or ''} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    out, overrides = Path(argv[0]), argv[1:]
    result = measure_run(overrides)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(phase_table(result))
    print(
        f"peak RSS {human(result['peak_rss'])}, weights {human(result['weights_bytes'])}; pid {os.getpid()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
