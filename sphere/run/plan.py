"""What a run needs before it runs: the memory and disk of a configuration, and whether it fits.

``sphere-edit ... run.plan=true`` prints this plan and exits without loading weights. A real run
computes it before loading the model and stops at start-up when it clearly cannot fit, instead of
running out of memory at its first batch, after the model was loaded and the statistics collected
(``check_fits``; ``run.plan_check=false`` skips the check).

The model is built on the ``meta`` device from its config (sphere/models/architecture.py): every
shape and the exact parameter count come from the class the run loads, and nothing is allocated.
Everything else is sized from the code that allocates it, one function per item with the formula
in its docstring, and tagged with *where* it lives (the model's device, host memory, disk) and
*when* (a phase). Peak memory = what lives throughout (``always``) + the largest phase, because the
phases of a batch (z optimisation, layer solves, SPHERE) run one after the other and free their
workspaces. Sizes are estimates from shapes; activations depend on sequence lengths, which are
estimated per dataset kind (``PROMPT_TOKENS``). Evaluation forwards (no gradients, small batches)
and the CUDA context (~0.5 GiB) are not itemised. docs/plan.md shows an example.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from editors import get_editor
from editors.core.model_spec import UnsupportedModelError, get_module, num_layers, spec_for
from editors.core.solvers import GRAM_BLOCK_ROWS
from editors.core.templates import STARTERS
from editors.core.weights import weight_param
from sphere.errors import ConfigError
from sphere.method.placement import resolve_placement
from sphere.method.projection import FLOAT64_MAX_NUMEL
from sphere.models.architecture import Architecture, load_architecture, meta_model
from sphere.run.config import Settings, check_against_model

log = logging.getLogger(__name__)

# Phases: ``always`` coexists with each of the others; ``load`` (host) only precedes them.
ALWAYS, LOAD, SETUP, STATS, CHECKPOINT = "always", "load", "setup", "statistics", "checkpoint"
Z, SOLVE, TRANSFORM = "z-optimisation", "layer solve", "transform"
SPHERE_DIRS, SPHERE_PROJ = "SPHERE directions", "SPHERE projection"
EDIT_PHASES = (Z, SOLVE, SPHERE_DIRS, SPHERE_PROJ, TRANSFORM)

# Longest prompt with its subject (BOS included) and target length in tokens, by dataset kind:
# the maxima over the bundled CounterFact and zsRE samples with the LLaMA-3 tokenizer (16 and 23
# prompt tokens, 2 and 10 target tokens; typically 1 and 3.3), rounded up. The z rows of a batch
# are padded to the longest, so the maxima set the width; logits are read at the typical length.
# On a CPU check (a 12-block LLaMA, 20 requests) the z estimate was 5-15 % above the measured peak.
PROMPT_TOKENS = {"counterfact": (16, 2, 1), "zsre": (24, 10, 4)}  # (prompt max, target max, target typical)

# A real run stops at start-up when its estimated peak exceeds what is free by these factors: on a
# GPU by 10 % (the estimate's own error), in host memory (CPU runs) only beyond twice MemAvailable,
# since the kernel can reclaim caches and swap; closer calls are warnings.
DEVICE_FAIL_FACTOR = 1.1
HOST_FAIL_FACTOR = 2.0


class PlanUnavailable(ConfigError):
    """The model's config cannot be read, so there is no plan (a real run goes on: its loader
    reports the problem in its own words)."""


class DoesNotFitError(RuntimeError):
    """The configuration clearly does not fit the visible memory; ``table`` is the plan."""

    def __init__(self, message: str, table: str) -> None:
        super().__init__(message)
        self.table = table


@dataclass(frozen=True)
class Item:
    """One allocation: what, where (device | host | disk), when (phases), how big, what shrinks it.

    ``copies``: how many exist at the disk peak (a checkpoint is written next to the previous one
    and renamed over it); ``written``: total bytes written over the run, if more than ``nbytes``.
    """

    label: str
    where: str
    nbytes: int
    how: str
    phases: tuple[str, ...] = (ALWAYS,)
    setting: str = ""
    copies: int = 1
    written: int = 0


@dataclass(frozen=True)
class Budget:
    """Memory visible to the run: ``free`` bytes (of ``total``) on ``where``, measured by ``what``."""

    where: str
    free: int
    total: int | None
    what: str


@dataclass(frozen=True)
class Shape:
    """The numbers of the model the plan needs (from the meta model)."""

    n_params: int
    n_layers: int
    d_model: int
    d_ff: int
    vocab: int
    kv_dim: int
    model_class: str
    weight_name: str


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
        text = f"biggest: {big.label} ({_h(big.nbytes)}): {big.setting or 'change the configuration'}"
        weights = next((i for i in self.items if i.label.startswith("model weights")), None)
        if weights is not None and weights is not big and "float32" in weights.label:
            text += "; or set model.dtype=bfloat16"
        return text

    def table(self) -> str:
        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "facts": dict(self.facts),
            "items": [vars(i) | {"phases": list(i.phases)} for i in self.items],
            "device": self.device,
            "peak_device": self.peak_device,
            "peak_host": self.peak_host,
            "disk": self.disk,
            "disk_written": self.disk_written,
            "budget": None if self.budget is None else vars(self.budget),
            "fits": self.fits(),
        }


# ---------------------------------------------------------------------------------------------
# Building the plan


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
    items = [
        *weight_items(
            shape,
            dtype,
            len(layers),
            on_cuda=device != "cpu" and not s.model.device_map,
            on_cpu=device == "cpu",
        ),
        *statistics_items(s, shape, dtype),
        *editor_items(s, shape, dtype, layers),
        *sphere_items(s, shape, len(layers)),
        *run_items(s, shape, len(layers), n_edits, arch, on_cuda=device != "cpu"),
    ]
    plan = Plan(
        facts=plan_facts(s, arch, shape, dtype, device, layers, n_edits),
        items=[i for i in items if i.nbytes > 0],
        device=device,
        budget=budget,
        host_budget=host_memory(),
    )
    plan.notes = plan_notes(plan, s)
    return plan


def plan_model(s: Settings) -> tuple[Architecture, torch.nn.Module]:
    """The model's config and the model built from it on ``meta``; PlanUnavailable if unreadable."""
    try:
        arch = load_architecture(s.model, s.run.cache_dir)
        return arch, meta_model(arch, trust_remote_code=s.model.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - transformers raises anything for an unreadable config
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise PlanUnavailable(msg if isinstance(e, ConfigError) else f"{type(e).__name__}: {msg}") from None


def model_shape(model: torch.nn.Module, spec, layer: int) -> Shape:
    """Parameter count (shared tensors once) and the dimensions the plan's formulas use."""
    cfg: Any = cast(Any, model).config
    w = weight_param(model, spec, layer)
    d_model, d_ff = (w.shape[1], w.shape[0]) if spec.conv1d else tuple(w.shape)
    heads = _cfg_int(cfg, ("num_attention_heads", "n_head"), 1)
    head_dim = _cfg_int(cfg, ("head_dim",), d_model // heads)
    kv_heads = _cfg_int(cfg, ("num_key_value_heads",), heads)
    vocab = int(cast(torch.Tensor, get_module(model, spec.lm_head).weight).shape[0])
    return Shape(
        n_params=sum(p.numel() for p in model.parameters()),
        n_layers=num_layers(model),
        d_model=int(d_model),
        d_ff=int(d_ff),
        vocab=vocab,
        kv_dim=kv_heads * head_dim,
        model_class=type(model).__name__,
        weight_name=spec.mlp_out,
    )


def _cfg_int(cfg: Any, names: Sequence[str], default: int) -> int:
    """The first of ``names`` the config sets (GPT-2 and LLaMA name the same thing differently)."""
    for name in names:
        value = getattr(cfg, name, None)
        if value:
            return int(value)
    return int(default)


def model_dtype(name: str, arch: Architecture) -> torch.dtype:
    """``model.dtype``; ``auto`` is the stored dtype of hf models, float32 otherwise (as the loader)."""
    if name != "auto":
        return getattr(torch, name)
    return getattr(torch, arch.stored_dtype) if arch.stored_dtype else torch.float32


def resolve_plan_device(device: str) -> str:
    """The model's device as the loader resolves it, without failing when CUDA is absent here."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return "cuda:0" if device == "cuda" else device


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


def _n_templates(length_params: Sequence[Sequence[int]]) -> int:
    """Context templates an editor uses: the bare prompt + n // 5 per starter for each [length, n]
    (editors/core/templates.py), e.g. MEMIT's [[10, 5]] → 6, ROME's [[5, 10], [10, 10]] → 21."""
    per = len(STARTERS)
    return 1 + sum(max(1, n // per) * per for _, n in length_params)


# ---------------------------------------------------------------------------------------------
# Items


def weight_items(
    shape: Shape, dtype: torch.dtype, n_layers: int, *, on_cuda: bool, on_cpu: bool
) -> list[Item]:
    """The weights in the configured dtype; for non-float32 models the float32 master copies of the
    edited layers (editors/core/weights.py EditedWeights: small updates would vanish in bf16 steps);
    on CUDA the weights pass through host memory while loading (read on the CPU, then moved)."""
    b = dtype.itemsize
    layer = shape.d_model * shape.d_ff * 4
    items = [
        Item(
            f"model weights ({_dt(dtype)})",
            "device",
            shape.n_params * b,
            f"{shape.n_params:,} params × {b} B",
            setting="set model.dtype=bfloat16"
            if b == 4
            else ("use a GPU or more memory" if on_cpu else "shard it with model.device_map=auto"),
        )
    ]
    if dtype != torch.float32:
        items.append(
            Item(
                "float32 master copies of the edited layers",
                "device",
                n_layers * layer,
                f"{n_layers} × {shape.d_model}×{shape.d_ff} × 4 B",
                setting="use fewer editor.layers",
            )
        )
    if on_cuda:
        items.append(
            Item(
                "weights while loading (on the CPU, then moved)",
                "host",
                shape.n_params * b,
                f"{shape.n_params:,} params × {b} B",
                (LOAD,),
                "shard it with model.device_map=auto",
            )
        )
    return items


def statistics_items(s: Settings, shape: Shape, dtype: torch.dtype) -> list[Item]:
    """Key statistics C = E[k kᵀ], d_ff × d_ff float32 per layer, held in host memory for the run
    (the statistics cache keeps them: sphere/run/statistics.py); collecting them (unless cached
    under run.cache_dir or precomputed) keeps Σkkᵀ per layer on the device in ``model.stats.dtype``
    and runs forwards of model.stats.batch_size × max_length tokens up to the deepest layer,
    capturing each edited layer's input (editors/core/covariance.py)."""
    n = _c_layers(s)
    if n == 0:
        return []
    ff2, b = shape.d_ff**2, dtype.itemsize
    items = [
        Item(
            "key statistics C (kept by the statistics cache)",
            "host",
            n * ff2 * 4,
            f"{n} × {shape.d_ff}² × 4 B",
            setting="use fewer editor.layers",
        )
    ]
    if s.model.stats.precomputed:
        return items
    sb = 8 if s.model.stats.dtype == "float64" else 4
    tokens = s.model.stats.batch_size * s.model.stats.max_length
    items += [
        Item(
            "collecting C: running sums Σkkᵀ (+ one batch's)",
            "device",
            (n + 1) * ff2 * sb,
            f"({n} + 1) × {shape.d_ff}² × {sb} B, unless cached",
            (STATS,),
            "set model.stats.dtype=float32" if sb == 8 else "use fewer editor.layers",
        ),
        Item(
            "collecting C: one batch's forward",
            "device",
            tokens * (n * shape.d_ff * b + shape.d_ff * sb + b * (3 * shape.d_ff + 4 * shape.d_model)),
            f"{tokens:,} tokens × ({n} captured inputs + one block)",
            (STATS,),
            "lower model.stats.batch_size or model.stats.max_length",
        ),
    ]
    return items


def _c_layers(s: Settings) -> int:
    """How many layers' C the editor uses: all edited layers, ROME's one with mom2_adjustment."""
    if s.editor_name == "rome":
        return 1 if s.editor.mom2_adjustment else 0
    return len(s.editor.layers) if hasattr(s.editor, "mom2_update_weight") else 0


def editor_items(s: Settings, shape: Shape, dtype: torch.dtype, layers: Sequence[int]) -> list[Item]:
    """The editor's own memory: z optimisation, the layer loop's copies, its solve and state."""
    return [
        *z_items(s, shape, dtype, layers),
        *loop_items(s, shape, len(layers)),
        *solve_items(s, shape, len(layers)),
        *own_transform_items(s, shape),
    ]


def z_items(s: Settings, shape: Shape, dtype: torch.dtype, layers: Sequence[int]) -> list[Item]:
    """Activations and logits of the z optimisation (editors/core/values.py), on the device.

    Rows: every request of a batch is optimised together (ROME: one request at a time), with one
    row per context template plus the KL prompt. δ is added at the output of the last edited block
    L (MEMIT family; inside block L, at its MLP, for ROME), so autograd keeps the tensors of the
    blocks above it for ∂loss/∂δ; the blocks below run once and their output (T × d_model) is
    reused. Per token and block a LLaMA-style decoder with frozen weights keeps about
    b·(2·d_model + 2·kv + 3·d_ff) + 4·3·d_model bytes (q and the attention output, k and v, the MLP's
    gate, up and act(gate); RMSNorm's float32 upcasts), measured with saved-tensor hooks on
    transformers' Llama blocks (the formula is 5-10 % above). Add one block's forward/backward
    temporaries, b·(3·d_ff + 4·d_model) per token, and the final norm. Logits (float32, plus their
    log-softmax and its gradient) exist only at the target positions and the KL rows.
    """
    if not hasattr(s.editor, "context_template_length_params"):
        return []  # an editor from a plug-in without the reference's value knobs: unknown
    rome = s.editor_name == "rome"
    requests = 1 if rome else s.dataset.batch_size
    n_tpl = _n_templates(s.editor.context_template_length_params)
    max_rows = getattr(s.editor, "v_max_rows", 0)
    if max_rows:  # z runs in chunks of whole requests (editors/core/values.py): the peak is one chunk's
        requests = min(requests, max(1, max_rows // (n_tpl + 1)))
    max_tpl = max(length for length, _ in s.editor.context_template_length_params)
    prompt, target_max, target_typ = PROMPT_TOKENS.get(s.dataset.kind, PROMPT_TOKENS["zsre"])
    seq = max_tpl + prompt + target_max
    rows = requests * (n_tpl + 1)
    tokens = rows * seq
    grad_blocks = shape.n_layers - layers[-1] - (0 if rome else 1)
    b = dtype.itemsize
    per_block = b * (2 * shape.d_model + 2 * shape.kv_dim + 3 * shape.d_ff) + 12 * shape.d_model
    acts = tokens * (
        grad_blocks * per_block
        + b * (3 * shape.d_ff + 4 * shape.d_model)  # one block's temporaries
        + shape.d_model * (4 + b)  # final norm
        + 2 * shape.d_model * b  # the cached entry state and the first pass's captured output
    )
    slots = requests * (n_tpl * target_typ + 1)
    logits = slots * shape.vocab * (b + 12) + requests * shape.vocab * 4
    setting = (
        "use fewer templates (editor.context_template_length_params)"
        if rome
        else "set editor.v_max_rows (z in chunks of rows, same result) or lower dataset.batch_size"
    )
    return [
        Item(
            "z-optimisation activations",
            "device",
            acts,
            f"{rows:,} rows ({requests} × {n_tpl + 1}) × ~{seq} tokens × {grad_blocks} blocks × {per_block:,} B/token",
            (Z,),
            setting,
        ),
        Item(
            "z-optimisation logits at target positions",
            "device",
            logits,
            f"{slots:,} positions × {shape.vocab:,} vocab × ({b} + 12) B",
            (Z,),
            setting,
        ),
    ]


def loop_items(s: Settings, shape: Shape, n_layers: int) -> list[Item]:
    """Float32 copies the layer loop holds on the device: each edited layer's weights before the
    batch and its ΔW (editors/core/spread.py spread_residual; ROME: W and ΔW of its one layer);
    with ``run.on_nonfinite=skip`` a snapshot of the edited layers for the whole batch."""
    layer = shape.d_model * shape.d_ff * 4
    items = [
        Item(
            "layer loop: W before the batch and ΔW, float32",
            "device",
            2 * n_layers * layer,
            f"2 × {n_layers} × {shape.d_model}×{shape.d_ff} × 4 B",
            (SOLVE, SPHERE_DIRS, SPHERE_PROJ, TRANSFORM),
            "use fewer editor.layers",
        )
    ]
    if s.run.on_nonfinite == "skip":
        items.append(
            Item(
                "run.on_nonfinite=skip: snapshot of the edited layers",
                "device",
                n_layers * layer,
                f"{n_layers} × {shape.d_model}×{shape.d_ff} × 4 B",
                EDIT_PHASES,
                "set run.on_nonfinite=stop",
            )
        )
    return items


def _past_keys_items(s: Settings, d_ff: int, n_layers: int) -> list[Item]:
    """The editor's key cache Σkkᵀ of every edited key (editors/core/past_keys.py): AlphaEdit's
    C_past, or the MEMIT family's with ``past_edit_weight`` > 0; d_ff² float32 per layer in host
    memory, and in every checkpoint (``run_items``). Empty if the editor keeps none."""
    if s.editor_name == "alphaedit":
        label, setting = "AlphaEdit: key cache Σkkᵀ of edited keys", "use fewer editor.layers"
    elif getattr(s.editor, "past_edit_weight", 0) > 0:
        label = "MEMIT past_edit_weight: key cache Σkkᵀ of earlier edits"
        setting = "set editor.past_edit_weight=0 (the reference's MEMIT) or use fewer editor.layers"
    else:
        return []
    return [Item(label, "host", n_layers * d_ff**2 * 4, f"{n_layers} × {d_ff}² × 4 B", setting=setting)]


def solve_items(s: Settings, shape: Shape, n_layers: int) -> list[Item]:
    """The d_ff × d_ff solve of the largest layer (one layer at a time), and the editor's state.

    MEMIT, PRUNE, RECT (editors/core/solvers.py memit_delta), in ``editor.solver_dtype``: one
    matrix, A = λC + KᵀK built in place (KᵀK added GRAM_BLOCK_ROWS rows at a time), LU-factored in
    place and freed before ΔW is formed (in float32, counted with the layer loop); with
    ``past_edit_weight`` > 0 their key cache Σkkᵀ (d_ff² float32 per layer) stays in host memory and
    is added to A a block of rows at a time. AlphaEdit (alphaedit_delta), float32: P, C_past, KᵀK
    and their sum (4), then P, M = P(…) and M's LU (3). Its null-space projectors P and key cache Σkkᵀ (d_ff² float32 per layer) stay in
    host memory and go to the device one layer at a time; P comes from an eigh of C on the CPU
    (eigenvectors + LAPACK workspace ≈ 3 d_ff²). ROME: C⁻¹ in host memory (inverted once in
    float64: ≈ 3 d_ff² float64), moved to the device for each request.
    """
    ff2, ff = shape.d_ff**2, shape.d_ff
    if s.editor_name == "rome":
        if not s.editor.mom2_adjustment:
            return []
        return [
            Item("ROME: C⁻¹", "host", ff2 * 4, f"{ff}² × 4 B", setting="set editor.mom2_adjustment=false"),
            Item("ROME: C⁻¹ on the device", "device", ff2 * 4, f"{ff}² × 4 B", (SOLVE,)),
            Item("ROME: inverting C (float64)", "host", 3 * ff2 * 8, f"3 × {ff}² × 8 B", (SETUP,)),
        ]
    if s.editor_name == "alphaedit":
        return [
            Item(
                "AlphaEdit: null-space projectors P",
                "host",
                n_layers * ff2 * 4,
                f"{n_layers} × {ff}² × 4 B",
                setting="use fewer editor.layers",
            ),
            *_past_keys_items(s, ff, n_layers),
            Item("AlphaEdit: eigh of C for P", "host", 3 * ff2 * 4, f"3 × {ff}² × 4 B", (SETUP,)),
            Item(
                "solve workspace (float32): P, C_past, KᵀK, sum",
                "device",
                4 * ff2 * 4,
                f"4 × {ff}² × 4 B",
                (SOLVE,),
                "use a larger device (d_ff² is fixed by the model)",
            ),
        ]
    if not hasattr(s.editor, "solver_dtype"):
        return []
    sb = 8 if s.editor.solver_dtype == "float64" else 4
    rows = min(GRAM_BLOCK_ROWS, ff)
    return _past_keys_items(s, ff, n_layers) + [
        Item(
            f"solve workspace ({s.editor.solver_dtype}): A = λC + KᵀK in place",
            "device",
            ff2 * sb + rows * ff * sb,
            f"{ff}² × {sb} B + {rows}×{ff} × {sb} B",
            (SOLVE,),
            "set editor.solver_dtype=float32"
            if sb == 8
            else "use a larger device (d_ff² is fixed by the model)",
        )
    ]


def own_transform_items(s: Settings, shape: Shape) -> list[Item]:
    """RECT's mask (|ΔW/W|, its sorted copy for kthvalue, the product: ≈ 4 m×c float32) and PRUNE's
    restraint (an SVD of ΔW: its copy, U, Vᵀ, the product ≈ 4 m×c + min(m, c)² float32)."""
    mc = shape.d_model * shape.d_ff
    if s.editor_name == "rect":
        return [
            Item(
                "RECT mask workspace",
                "device",
                4 * mc * 4,
                f"4 × {shape.d_model}×{shape.d_ff} × 4 B",
                (TRANSFORM,),
            )
        ]
    if s.editor_name == "prune":
        k = min(shape.d_model, shape.d_ff)
        return [
            Item(
                "PRUNE restraint (SVD of ΔW)",
                "device",
                (4 * mc + k * k) * 4,
                f"(4 × {shape.d_model}×{shape.d_ff} + {k}²) × 4 B",
                (TRANSFORM,),
            )
        ]
    return []


def sphere_items(s: Settings, shape: Shape, n_layers: int) -> list[Item]:
    """SPHERE's workspace per edited matrix W (m × c = d_model × d_ff; sphere/method/projection.py).

    U comes from an eigh of the m × m Gram matrix (``method`` gram, auto when m < c) or of the
    c × c covariance (naive), in float64 for matrices up to FLOAT64_MAX_NUMEL entries, else
    float32: normalised rows X̂ (m × c), the matrix and its eigenvectors (with the flipped copy and
    the eigh workspace ≈ 4 k²), then U = X̂ᵀV/√(mλ) (c × r, scaled in place). r ≤ min(m, c)
    (``sphere.rank`` when set; β chooses it at run time, so the bound is used). Projecting,
    ΔW − (αΔW U)Uᵀ makes one m × c float32 product, overwritten by the projected update.
    With ``reference=pretrained`` U is computed once per layer and
    kept on the device, and W₀ is snapshotted in host memory (and saved in checkpoints).
    """
    if not s.sphere.enabled:
        return []
    reference = _sphere_reference(s)
    m, c = shape.d_model, shape.d_ff
    cb = 8 if m * c <= FLOAT64_MAX_NUMEL else 4
    method = s.sphere.method if s.sphere.method != "auto" else ("gram" if m < c else "naive")
    k = m if method == "gram" else c
    r = s.sphere.rank or min(m, c)
    n = len(s.sphere.layers) if s.sphere.layers is not None else n_layers
    items = [
        Item(
            f"SPHERE normalised rows ({_dt_bytes(cb)})",
            "device",
            m * c * cb,
            f"{m}×{c} × {cb} B",
            (SPHERE_DIRS,),
            "set sphere.method=gram" if method == "naive" else "",
        ),
        Item(
            f"SPHERE {method} eigh ({_dt_bytes(cb)}): matrix, vectors",
            "device",
            4 * k * k * cb,
            f"4 × {k}² × {cb} B",
            (SPHERE_DIRS,),
            "set sphere.method=gram" if method == "naive" else "",
        ),
        Item(
            f"SPHERE directions U (r ≤ {min(m, c)})",
            "device",
            c * r * cb + (c * r * 4 if cb != 4 else 0),
            f"{c}×{r} × {cb} B" + (f" + {c}×{r} × 4 B" if cb != 4 else ""),
            (SPHERE_DIRS, SPHERE_PROJ),
            "set a smaller sphere.rank",
        ),
        Item("SPHERE projection temporaries", "device", m * c * 4, f"{m}×{c} × 4 B", (SPHERE_PROJ,)),
    ]
    if reference == "pretrained":
        items += [
            Item("SPHERE: U kept per layer (pretrained)", "device", n * c * r * 4, f"{n} × {c}×{r} × 4 B"),
            Item("SPHERE: W₀ snapshots (pretrained)", "host", n * m * c * 4, f"{n} × {m}×{c} × 4 B"),
        ]
    return items


def run_items(
    s: Settings, shape: Shape, n_layers: int, n_edits: int | None, arch: Architecture, *, on_cuda: bool
) -> list[Item]:
    """W₀ in host memory; on disk the model files, caches, W₀ file, checkpoints and kept weights.

    A checkpoint (sphere/run/checkpoint.py) holds the edited layers in float32 and the editor's and
    transforms' tensors (AlphaEdit's key cache; SPHERE's W₀ snapshots with reference=pretrained).
    It is written every ``run.checkpoint_every`` batches and after the last (more often when
    ``run.checkpoint_minutes`` elapse), each time to a temporary file renamed over the previous
    one: one file on disk, two while writing. Writing stages the device tensors in host memory.
    ``run.keep_at`` keeps the evaluated layers at each listed number of edits, plus W₀ (edits_0).
    """
    layer = shape.d_model * shape.d_ff * 4
    layers_bytes = n_layers * layer
    state = sum(i.nbytes for i in _past_keys_items(s, shape.d_ff, n_layers))
    if s.sphere.enabled and _sphere_reference(s) == "pretrained":
        state += (len(s.sphere.layers) if s.sphere.layers is not None else n_layers) * layer
    ckpt = layers_bytes + state
    n_batches = math.ceil(n_edits / s.dataset.batch_size) if n_edits else None
    n_ckpt = checkpoints_written(n_batches, s.run.checkpoint_every)
    kept = (1 + sum(1 for k in set(s.run.keep_at) if n_edits is None or k <= n_edits)) if s.run.keep_at else 0
    lay = f"{n_layers} × {shape.d_model}×{shape.d_ff} × 4 B"
    items = [
        Item("W₀ of the edited layers (float32)", "host", layers_bytes, lay),
        Item(
            "model files",
            "disk",
            arch.file_bytes
            if arch.file_bytes is not None
            else (
                0 if s.model.source == "tiny" else shape.n_params * _itemsize(arch.stored_dtype or "float32")
            ),
            "the GGUF file"
            if arch.file_bytes is not None
            else f"Hub download ({arch.stored_dtype}), if not cached",
        ),
        Item("W₀ file (written once)", "disk", layers_bytes, lay),
        Item(
            "checkpoint",
            "disk",
            ckpt,
            f"layers {_h(layers_bytes)} + state {_h(state)}; {'?' if n_ckpt is None else n_ckpt}× written",
            setting="raise run.checkpoint_every (fewer writes)",
            copies=2,
            written=ckpt * (n_ckpt or 1),
        ),
        Item(
            f"kept weights (run.keep_at: {kept} points)",
            "disk",
            kept * layers_bytes,
            f"{kept} × {_h(layers_bytes)}",
        ),
    ]
    c = _c_layers(s)
    if c and not s.model.stats.precomputed:
        items.append(
            Item(
                "statistics cache (run.cache_dir)",
                "disk",
                c * shape.d_ff**2 * 4,
                f"{c} × {shape.d_ff}² × 4 B",
            )
        )
    if s.editor_name == "alphaedit":
        items.append(
            Item(
                "projector cache (run.cache_dir)",
                "disk",
                n_layers * shape.d_ff**2 * 4,
                f"{n_layers} × {shape.d_ff}² × 4 B",
            )
        )
    if on_cuda:
        items.append(
            Item("checkpoint: device tensors staged on the CPU", "host", layers_bytes, lay, (CHECKPOINT,))
        )
    if s.run.on_nonfinite == "skip" and state:
        items.append(Item("run.on_nonfinite=skip: editor state copy", "host", state, _h(state), EDIT_PHASES))
    return items


def _sphere_reference(s: Settings) -> str:
    return resolve_placement(s.sphere, get_editor(s.editor_name).placement(s.editor), s.editor_name)[1]


def checkpoints_written(n_batches: int | None, every: int) -> int | None:
    """Checkpoints by batch count: after every ``every``-th batch and after the last (0: the last only)."""
    if n_batches is None:
        return None
    if every == 0:
        return 1
    return n_batches // every + (1 if n_batches % every else 0)


# ---------------------------------------------------------------------------------------------
# Visible memory and the verdict


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
                f"does not fit: peak {place} memory {_h(peak)} > {_h(plan.budget.free)} free on "
                f"{plan.budget.where}; {plan.advice(place)} (run.plan=true prints the plan; "
                "run.plan_check=false skips this check)",
                plan.table(),
            )
        if peak > plan.budget.free:
            log.warning(
                "plan: peak %s memory %s may not fit the %s free on %s (run.plan=true shows why)",
                place,
                _h(peak),
                _h(plan.budget.free),
                plan.budget.where,
            )
    if not plan.on_cpu and plan.host_budget is not None and plan.peak_host > plan.host_budget.free:
        log.warning(
            "plan: peak host memory %s exceeds MemAvailable %s", _h(plan.peak_host), _h(plan.host_budget.free)
        )


def plan_notes(plan: Plan, s: Settings) -> list[str]:
    """The verdict lines under the table."""
    notes = []
    b = plan.budget
    if b is None:
        notes.append(f"visible: {plan.device} is not visible on this machine; fits: unknown")
    else:
        place = "host" if plan.on_cpu else "device"
        peak = plan.peak(place)[0]
        total = f" of {_h(b.total)}" if b.total else ""
        notes.append(f"visible: {b.where}: {_h(b.free)} free{total} ({b.what})")
        verdict = "yes" if plan.fits() else "no"
        if not plan.fits():
            verdict += f"; {plan.advice(place)}"
        notes.append(f"fits: {verdict} (peak {place} {_h(peak)} vs {_h(b.free)} free)")
    if not plan.on_cpu and plan.host_budget is not None:
        hb = plan.host_budget
        ok = "yes" if plan.peak_host <= hb.free else "no"
        notes.append(f"host: {_h(hb.free)} available ({hb.what}); fits: {ok}")
    try:
        free_disk = shutil.disk_usage(_existing_parent(Path(s.run.cache_dir))).free
        notes.append(f"disk: {_h(free_disk)} free where run.cache_dir is")
    except OSError:
        pass
    return notes


def _existing_parent(p: Path) -> Path:
    p = p.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


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
        ("model", f"{s.model.name} ({where}), {_dt(dtype)} on {device}"),
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


# ---------------------------------------------------------------------------------------------
# Printing


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
        lines.append(f"  {i.label:<50} {on:<6} {when:<20} {_h(i.nbytes):>10} {i.nbytes:>17,}  {i.how}")
    dev_peak, dev_phase = plan.peak("device")
    host_peak, host_phase = plan.peak("host")
    lines += [""]
    if plan.on_cpu:
        lines.append(f"  peak memory (cpu)   {_h(host_peak):>10} {host_peak:>17,}  always + {host_phase}")
    else:
        lines.append(
            f"  peak device memory  {_h(dev_peak):>10} {dev_peak:>17,}  always + {dev_phase} ({plan.device})"
        )
        lines.append(f"  peak host memory    {_h(host_peak):>10} {host_peak:>17,}  {_peak_words(host_phase)}")
    lines.append(
        f"  disk (peak in use)  {_h(plan.disk):>10} {plan.disk:>17,}  two checkpoints while one replaces the "
        f"other; {_h(plan.disk_written)} written over the run"
    )
    lines += [""] + [f"  {n}" for n in plan.notes]
    return "\n".join(lines)


def _peak_words(phase: str) -> str:
    return "while loading the model" if phase == LOAD else f"always + {phase}"


def _h(n: float) -> str:
    """Bytes in binary units (KiB, MiB, GiB, TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dt_bytes(nbytes: int) -> str:
    return "float64" if nbytes == 8 else "float32"


def _itemsize(name: str) -> int:
    return getattr(torch, name).itemsize
