"""What a run needs before it runs: the memory and disk of a configuration, and whether it fits.

``sphere-edit ... run.plan=true`` prints this plan and exits without loading weights. A real run
computes it before loading the model and stops at start-up when it clearly cannot fit, instead of
running out of memory at its first batch, after the model was loaded and the statistics collected
(``check_fits``; ``run.plan_check=false`` skips the check).

The model is built on the ``meta`` device from its config (sphere/models/architecture.py): every
shape and the exact parameter count come from the class the run loads, and nothing is allocated.
Each item is tagged with *where* it lives (the model's device, host memory, disk) and *when* (a
phase). Peak memory = what lives throughout (``always``) + the largest phase, because the phases of
a batch (z optimisation, layer solves, SPHERE) run one after the other and free their workspaces.

This module only assembles the items and decides the fit. The items are declared by their owners:
the run's own (weights, statistics, W₀, checkpoints, files) in plan_items.py; the editor's by its
registry entry's ``footprint``, composed from the footprints its pieces declare next to their code
(editors/core/footprint.py); SPHERE's by ``sphere_footprint`` (sphere/method/placement.py). The
machine is probed in plan_probe.py, and the plan is printed by plan_render.py. Sizes are estimates
from shapes; activations depend on sequence lengths, estimated per dataset kind
(``PROMPT_TOKENS``). Evaluation forwards (no gradients, small batches) and the CUDA context
(~0.5 GiB) are not itemised. docs/plan.md shows an example.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from editors import get_editor
from editors.core.footprint import ALWAYS, LOAD, WHILE_TRANSFORMING, Footprint, PlanItem, ShapeInfo
from editors.core.model_spec import UnsupportedModelError, spec_for
from sphere.errors import ConfigError
from sphere.method.placement import sphere_footprint
from sphere.models.architecture import Architecture, load_architecture, meta_model
from sphere.run.config import Settings, check_against_model
from sphere.run.plan_items import (
    TRANSFORM_PHASES,
    Shape,
    checkpoints_written,
    model_shape,
    run_items,
    statistics_items,
    weight_items,
)
from sphere.run.plan_probe import (
    Budget,
    count_edits,
    free_disk,
    host_memory,
    resolve_plan_device,
    visible_memory,
)
from sphere.run.plan_render import format_table, human_bytes, plan_facts, plan_notes

log = logging.getLogger(__name__)

Item = PlanItem  # the plan's rows are the items pieces declare

# Longest prompt with its subject (BOS included) and target length in tokens, by dataset kind:
# the maxima over the bundled CounterFact and zsRE samples with the LLaMA-3 tokenizer (16 and 23
# prompt tokens, 2 and 10 target tokens; typically 1 and 3.3), rounded up. The z rows of a batch
# are padded to the longest, so the maxima set the width; logits are read at the typical length.
PROMPT_TOKENS = {"counterfact": (16, 2, 1), "zsre": (24, 10, 4)}  # (prompt max, target max, target typical)

# A real run stops at start-up when its estimated peak exceeds what is free by these factors: on a
# GPU by 10 % (the estimate's own error), in host memory (CPU runs) only beyond twice MemAvailable,
# since the kernel can reclaim caches and swap; closer calls are warnings.
DEVICE_FAIL_FACTOR = 1.1
HOST_FAIL_FACTOR = 2.0

__all__ = [
    "Budget",
    "DoesNotFitError",
    "Item",
    "Plan",
    "PlanUnavailable",
    "Shape",
    "check_fits",
    "checkpoints_written",
    "host_memory",
    "make_plan",
    "visible_memory",
]


class PlanUnavailable(ConfigError):
    """The model's config cannot be read, so there is no plan (a real run goes on: its loader
    reports the problem in its own words)."""


class DoesNotFitError(RuntimeError):
    """The configuration clearly does not fit the visible memory; ``table`` is the plan."""

    def __init__(self, message: str, table: str) -> None:
        super().__init__(message)
        self.table = table


@dataclass
class Plan:
    """The plan of one configuration: facts, items, totals, the visible memory, the verdict."""

    facts: list[tuple[str, str]]
    items: list[Item]
    device: str
    budget: Budget | None
    host_budget: Budget | None
    notes: list[str] = field(default_factory=list)

    def where(self, place: str) -> list[Item]:
        """Items on ``device`` or ``host``; on a CPU run the device *is* host memory."""
        places = {"device", "host"} if self.on_cpu and place in ("device", "host") else {place}
        return [i for i in self.items if i.where in places]

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    def peak(self, place: str) -> tuple[int, str]:
        """(bytes, phase): what lives ``always`` + the largest other phase; ``load`` stands alone."""
        items = self.where(place)
        always = sum(i.nbytes for i in items if ALWAYS in i.phases)
        load = sum(i.nbytes for i in items if LOAD in i.phases)
        phases = {p for i in items for p in i.phases} - {ALWAYS, LOAD}
        best, name = 0, ALWAYS
        for p in sorted(phases):
            size = sum(i.nbytes for i in items if p in i.phases)
            if size > best:
                best, name = size, p
        return (load, LOAD) if load > always + best else (always + best, name)

    @property
    def peak_device(self) -> int:
        return self.peak("device")[0]

    @property
    def peak_host(self) -> int:
        return self.peak("host")[0]

    @property
    def disk(self) -> int:
        return sum(i.nbytes * i.copies for i in self.items if i.where == "disk")

    @property
    def disk_written(self) -> int:
        return sum(max(i.written, i.nbytes) for i in self.items if i.where == "disk")

    def fits(self) -> bool | None:
        """Peak memory of the model's device against what is free there; None when unknown."""
        if self.budget is None:
            return None
        return (self.peak_host if self.on_cpu else self.peak_device) <= self.budget.free

    def biggest(self, place: str) -> Item:
        """The largest item counted in ``place``'s peak (what to shrink first)."""
        _, phase = self.peak(place)
        counted = [i for i in self.where(place) if {ALWAYS, phase} & set(i.phases)]
        return max(counted, key=lambda i: i.nbytes)

    def advice(self, place: str) -> str:
        """ "biggest: <item> (<size>): <what to change>", plus bfloat16 for a float32 model, which
        halves the weights and the activations whatever the biggest item is."""
        big = self.biggest(place)
        text = (
            f"biggest: {big.label} ({human_bytes(big.nbytes)}): {big.setting or 'change the configuration'}"
        )
        weights = next((i for i in self.items if i.label.startswith("model weights")), None)
        if weights is not None and weights is not big and "float32" in weights.label:
            text += "; or set model.dtype=bfloat16"
        return text

    def table(self) -> str:
        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "facts": dict(self.facts),
            "items": [_item_dict(i) for i in self.items],
            "device": self.device,
            "peak_device": self.peak_device,
            "peak_host": self.peak_host,
            "disk": self.disk,
            "disk_written": self.disk_written,
            "budget": None if self.budget is None else vars(self.budget),
            "fits": self.fits(),
        }


def _item_dict(i: Item) -> dict[str, Any]:
    """An item as ``to_dict`` lists it (``checkpointed`` is already counted in the checkpoint's size)."""
    return {k: v for k, v in vars(i).items() if k != "checkpointed"} | {"phases": list(i.phases)}


def make_plan(s: Settings, *, n_edits: int | None = None, budget: Budget | None | str = "probe") -> Plan:
    """The plan of validated settings ``s``; nothing is loaded (the model is built on ``meta``).

    ``n_edits``: the number of records edited (default: ``dataset.limit``, else the dataset is
    counted). ``budget``: the visible memory ("probe" asks the device; tests and docs pass one).

    Raises:
        PlanUnavailable: no config for the model.
        ConfigError: an unsupported architecture, or a setting the model refutes
            (``check_against_model``: layers out of range, SPHERE rank too large).
    """
    arch, model = plan_model(s)
    try:
        spec = spec_for(model)
    except UnsupportedModelError as e:
        raise ConfigError(str(e)) from None
    layers = list(s.editor.layers)
    check_against_model(s, model, spec, layers)
    shape = model_shape(model, spec, layers[0])
    dtype = model_dtype(s.model.dtype, arch)
    device = resolve_plan_device(s.model.device)
    n_edits = n_edits if n_edits is not None else count_edits(s)
    if isinstance(budget, str):  # "probe"
        budget = visible_memory(device, s.model.device_map)
    pieces, declared = pieces_footprint(s, shape_info(s, shape, dtype, layers))
    memory = [i for i in pieces.items if i.where != "disk"]
    items = [
        *weight_items(
            shape,
            dtype,
            len(layers),
            on_cuda=device != "cpu" and not s.model.device_map,
            on_cpu=device == "cpu",
        ),
        *statistics_items(s, shape, dtype, pieces.covariance_layers),
        *memory,
        *run_items(
            s,
            shape,
            arch,
            n_layers=len(layers),
            n_edits=n_edits,
            covariance_layers=pieces.covariance_layers,
            state=sum(i.nbytes for i in pieces.items if i.checkpointed),
            caches=[i for i in pieces.items if i.where == "disk"],
            on_cuda=device != "cpu",
        ),
    ]
    plan = Plan(
        facts=plan_facts(s, arch, shape, dtype, device, layers, n_edits),
        items=[i for i in items if i.nbytes > 0],
        device=device,
        budget=budget,
        host_budget=host_memory(),
    )
    unknown = (
        []
        if declared
        else [f"editor {s.editor_name} declares no memory footprint: its own memory is not counted"]
    )
    plan.notes = [*unknown, *plan_notes(plan, free_disk(s.run.cache_dir))]
    return plan


def shape_info(s: Settings, shape: Shape, dtype: torch.dtype, layers: list[int]) -> ShapeInfo:
    """The numbers the pieces' footprints are computed from."""
    return ShapeInfo(
        d_model=shape.d_model,
        d_ff=shape.d_ff,
        n_layers=shape.n_layers,
        vocab=shape.vocab,
        kv_dim=shape.kv_dim,
        dtype_bytes=dtype.itemsize,
        layers=tuple(layers),
        batch_size=s.dataset.batch_size,
        prompt_tokens=PROMPT_TOKENS.get(s.dataset.kind, PROMPT_TOKENS["zsre"]),
    )


def pieces_footprint(s: Settings, shape: ShapeInfo) -> tuple[Footprint, bool]:
    """The editor's footprint (its registry entry's) + SPHERE's, items in their declared order, with
    ``WHILE_TRANSFORMING`` spelled out; and whether the editor declares a footprint at all."""
    entry = get_editor(s.editor_name)
    own = entry.footprint(shape, s.editor) if entry.footprint is not None else Footprint()
    total = own + sphere_footprint(s.sphere, entry.placement(s.editor), s.editor_name, shape)
    total.items = [_expand(i) for i in total.items]
    return total, entry.footprint is not None


def _expand(item: Item) -> Item:
    if WHILE_TRANSFORMING not in item.phases:
        return item
    phases = [p for ph in item.phases for p in (TRANSFORM_PHASES if ph == WHILE_TRANSFORMING else (ph,))]
    return replace(item, phases=tuple(phases))


def plan_model(s: Settings) -> tuple[Architecture, torch.nn.Module]:
    """The model's config and the model built from it on ``meta``; PlanUnavailable if unreadable."""
    try:
        arch = load_architecture(s.model, s.run.cache_dir)
        return arch, meta_model(arch, trust_remote_code=s.model.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - transformers raises anything for an unreadable config
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise PlanUnavailable(msg if isinstance(e, ConfigError) else f"{type(e).__name__}: {msg}") from None


def model_dtype(name: str, arch: Architecture) -> torch.dtype:
    """``model.dtype``; ``auto`` is the stored dtype of hf models, float32 otherwise (as the loader)."""
    if name != "auto":
        return getattr(torch, name)
    return getattr(torch, arch.stored_dtype) if arch.stored_dtype else torch.float32


def check_fits(plan: Plan) -> None:
    """Refuse a run that clearly cannot fit; warn when it is close or the host may be short.

    On a GPU: fail when the peak exceeds the free memory by ``DEVICE_FAIL_FACTOR``. On the CPU:
    fail only beyond ``HOST_FAIL_FACTOR`` × MemAvailable (caches are reclaimed, swap may exist;
    tiny and small CPU runs are never near it). Unknown memory never fails.

    Raises:
        DoesNotFitError: one line naming the peak, the budget, the biggest item and its setting.
    """
    if plan.budget is not None:
        place = "host" if plan.on_cpu else "device"
        peak, factor = plan.peak(place)[0], HOST_FAIL_FACTOR if plan.on_cpu else DEVICE_FAIL_FACTOR
        if peak > factor * plan.budget.free:
            raise DoesNotFitError(
                f"does not fit: peak {place} memory {human_bytes(peak)} > {human_bytes(plan.budget.free)} free "
                f"on {plan.budget.where}; {plan.advice(place)} (run.plan=true prints the plan; "
                "run.plan_check=false skips this check)",
                plan.table(),
            )
        if peak > plan.budget.free:
            log.warning(
                "plan: peak %s memory %s may not fit the %s free on %s (run.plan=true shows why)",
                place,
                human_bytes(peak),
                human_bytes(plan.budget.free),
                plan.budget.where,
            )
    if not plan.on_cpu and plan.host_budget is not None and plan.peak_host > plan.host_budget.free:
        log.warning(
            "plan: peak host memory %s exceeds MemAvailable %s",
            human_bytes(plan.peak_host),
            human_bytes(plan.host_budget.free),
        )
