"""The run plan (sphere/run/plan.py) as text: the facts, one row per item, the peaks, the verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from editors import get_editor
from editors.core.footprint import LOAD
from sphere.method.placement import resolve_placement
from sphere.models.architecture import Architecture
from sphere.run.config import Settings

if TYPE_CHECKING:
    from sphere.run.plan import Plan
    from sphere.run.plan_items import Shape


def plan_facts(
    s: Settings,
    arch: Architecture,
    shape: Shape,
    dtype: torch.dtype,
    device: str,
    layers: Sequence[int],
    n_edits: int | None,
) -> list[tuple[str, str]]:
    """The lines above the table: what was planned, from which config."""
    where = s.model.path or s.model.gguf_file or "tiny"
    sphere = "off"
    if s.sphere.enabled:
        point, ref = resolve_placement(s.sphere, get_editor(s.editor_name).placement(s.editor), s.editor_name)
        sel = f"rank {s.sphere.rank}" if s.sphere.rank else f"β {s.sphere.beta}"
        sphere = f"on (α {s.sphere.alpha}, {sel}, point {point}, reference {ref})"
    n_batches = math.ceil(n_edits / s.dataset.batch_size) if n_edits else None
    stream = (
        f"{n_edits:,} edits in batches of {s.dataset.batch_size} → {n_batches:,} batches"
        if n_edits
        else f"unknown number of edits (dataset.limit=null, {s.dataset.path} unreadable) in batches of {s.dataset.batch_size}"
    )
    return [
        ("model", f"{s.model.name} ({where}), {dtype_text(dtype)} on {device}"),
        ("config", arch.source),
        (
            "shape",
            f"{shape.model_class}: {shape.n_layers} layers, d_model {shape.d_model}, d_ff {shape.d_ff}, "
            f"vocab {shape.vocab:,}, {shape.n_params:,} parameters",
        ),
        ("editor", f"{s.editor_name}, layers {list(layers)} ({shape.weight_name.format('{l}')})"),
        ("SPHERE", sphere),
        ("stream", stream),
    ]


def plan_notes(plan: Plan, disk_free: int | None) -> list[str]:
    """The verdict lines under the table (``disk_free``: bytes free where run.cache_dir is)."""
    notes = []
    b = plan.budget
    if b is None:
        notes.append(f"visible: {plan.device} is not visible on this machine; fits: unknown")
    else:
        place = "host" if plan.on_cpu else "device"
        peak = plan.peak(place)[0]
        total = f" of {human_bytes(b.total)}" if b.total else ""
        notes.append(f"visible: {b.where}: {human_bytes(b.free)} free{total} ({b.what})")
        verdict = "yes" if plan.fits() else "no"
        if not plan.fits():
            verdict += f"; {plan.advice(place)}"
        notes.append(f"fits: {verdict} (peak {place} {human_bytes(peak)} vs {human_bytes(b.free)} free)")
    if not plan.on_cpu and plan.host_budget is not None:
        hb = plan.host_budget
        ok = "yes" if plan.peak_host <= hb.free else "no"
        notes.append(f"host: {human_bytes(hb.free)} available ({hb.what}); fits: {ok}")
    if disk_free is not None:
        notes.append(f"disk: {human_bytes(disk_free)} free where run.cache_dir is")
    return notes


def format_table(plan: Plan) -> str:
    """The plan as text: facts, one row per item (where, phase, size, bytes, formula), totals."""
    lines = ["sphere-edit plan (no weights loaded: the model is built on the meta device)"]
    lines += [f"  {k:<8} {v}" for k, v in plan.facts]
    head = f"  {'item':<50} {'on':<6} {'when':<20} {'size':>10} {'bytes':>17}  formula"
    lines += ["", head, "  " + "-" * (len(head) + 20)]
    order = {"device": 0, "host": 1, "disk": 2}
    for i in sorted(plan.items, key=lambda i: order[i.where]):
        on = "cpu" if plan.on_cpu and i.where == "device" else i.where
        when = (
            "" if i.where == "disk" else i.phases[0] + (f" +{len(i.phases) - 1}" if len(i.phases) > 1 else "")
        )
        lines.append(
            f"  {i.label:<50} {on:<6} {when:<20} {human_bytes(i.nbytes):>10} {i.nbytes:>17,}  {i.how}"
        )
    dev_peak, dev_phase = plan.peak("device")
    host_peak, host_phase = plan.peak("host")
    lines += [""]
    if plan.on_cpu:
        lines.append(
            f"  peak memory (cpu)   {human_bytes(host_peak):>10} {host_peak:>17,}  always + {host_phase}"
        )
    else:
        lines.append(
            f"  peak device memory  {human_bytes(dev_peak):>10} {dev_peak:>17,}  always + {dev_phase} ({plan.device})"
        )
        lines.append(
            f"  peak host memory    {human_bytes(host_peak):>10} {host_peak:>17,}  {_peak_words(host_phase)}"
        )
    lines.append(
        f"  disk (peak in use)  {human_bytes(plan.disk):>10} {plan.disk:>17,}  two checkpoints while one "
        f"replaces the other; {human_bytes(plan.disk_written)} written over the run"
    )
    lines += [""] + [f"  {n}" for n in plan.notes]
    return "\n".join(lines)


def _peak_words(phase: str) -> str:
    return "while loading the model" if phase == LOAD else f"always + {phase}"


def human_bytes(n: float) -> str:
    """Bytes in binary units (KiB, MiB, GiB, TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def dtype_text(dtype: torch.dtype) -> str:
    """ "bfloat16" for torch.bfloat16."""
    return str(dtype).removeprefix("torch.")
