"""The run's own items of a plan (sphere/run/plan.py): the model's numbers, its weights, the key
statistics, W₀, checkpoints and the files a run writes. The editor's and SPHERE's items are their
own (``footprint`` next to their code; editors/core/footprint.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from editors.core.footprint import CHECKPOINT, LOAD, SOLVE, STATS, TRANSFORM, PlanItem, Z
from editors.core.model_spec import get_module, num_layers
from editors.core.weights import weight_param
from sphere.method.placement import SPHERE_PHASES
from sphere.models.architecture import Architecture
from sphere.run.config import Settings
from sphere.run.plan_render import dtype_text, human_bytes

# Every phase in which update transforms run (an item in ``WHILE_TRANSFORMING`` lives through
# them all), and the phases of one batch.
TRANSFORM_PHASES = (*SPHERE_PHASES, TRANSFORM)
EDIT_PHASES = (Z, SOLVE, *TRANSFORM_PHASES)

Item = PlanItem


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


def weight_items(
    shape: Shape, dtype: torch.dtype, n_layers: int, *, on_cuda: bool, on_cpu: bool
) -> list[Item]:
    """The weights in the configured dtype; for non-float32 models the float32 master copies of the
    edited layers (editors/core/weights.py EditedWeights: small updates would vanish in bf16 steps);
    on CUDA the weights pass through host memory while loading (read on the CPU, then moved)."""
    b = dtype.itemsize
    items = [
        Item(
            f"model weights ({dtype_text(dtype)})",
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
                n_layers * shape.d_model * shape.d_ff * 4,
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


def statistics_items(s: Settings, shape: Shape, dtype: torch.dtype, n: int) -> list[Item]:
    """Key statistics C = E[k kᵀ] of the ``n`` layers the editor reads, d_ff × d_ff float32 each,
    held in host memory for the run (the statistics cache keeps them: sphere/run/covariance.py);
    collecting them (unless cached under run.cache_dir or precomputed) keeps Σkkᵀ per layer on the
    device in ``model.covariance.dtype`` and runs forwards of model.covariance.batch_size × max_length tokens
    up to the deepest layer, capturing each edited layer's input (editors/core/covariance.py)."""
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
    if s.model.covariance.precomputed:
        return items
    sb = 8 if s.model.covariance.dtype == "float64" else 4
    tokens = s.model.covariance.batch_size * s.model.covariance.max_length
    items += [
        Item(
            "collecting C: running sums Σkkᵀ (+ one batch's)",
            "device",
            (n + 1) * ff2 * sb,
            f"({n} + 1) × {shape.d_ff}² × {sb} B, unless cached",
            (STATS,),
            "set model.covariance.dtype=float32" if sb == 8 else "use fewer editor.layers",
        ),
        Item(
            "collecting C: one batch's forward",
            "device",
            tokens * (n * shape.d_ff * b + shape.d_ff * sb + b * (3 * shape.d_ff + 4 * shape.d_model)),
            f"{tokens:,} tokens × ({n} captured inputs + one block)",
            (STATS,),
            "lower model.covariance.batch_size or model.covariance.max_length",
        ),
    ]
    return items


def run_items(
    s: Settings,
    shape: Shape,
    arch: Architecture,
    *,
    n_layers: int,
    n_edits: int | None,
    covariance_layers: int,
    state: int,
    caches: Sequence[Item],
    on_cuda: bool,
) -> list[Item]:
    """W₀ in host memory; on disk the model files, caches, W₀ file, checkpoints and kept weights.

    A checkpoint (sphere/run/checkpoint.py) holds the edited layers in float32 and the editor's and
    transforms' ``state`` (their ``checkpointed`` items: a key cache of past edits; SPHERE's W₀
    snapshots with reference=pretrained). It is written every ``run.checkpoint_every`` batches and
    after the last (more often when ``run.checkpoint_minutes`` elapse), each time to a temporary
    file renamed over the previous one: one file on disk, two while writing. Writing stages the
    device tensors in host memory. ``run.keep_at`` keeps the evaluated layers at each listed number
    of edits, plus W₀ (edits_0). ``caches``: the pieces' files (listed after the statistics cache).
    With ``run.on_nonfinite=skip`` the edited layers are snapshotted on the device for each batch
    and the state copied in host memory (sphere/run/runner.py).
    """
    layer = shape.d_model * shape.d_ff * 4
    layers_bytes = n_layers * layer
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
            f"layers {human_bytes(layers_bytes)} + state {human_bytes(state)}; "
            f"{'?' if n_ckpt is None else n_ckpt}× written",
            setting="raise run.checkpoint_every (fewer writes)",
            copies=2,
            written=ckpt * (n_ckpt or 1),
        ),
        Item(
            f"kept weights (run.keep_at: {kept} points)",
            "disk",
            kept * layers_bytes,
            f"{kept} × {human_bytes(layers_bytes)}",
        ),
    ]
    if covariance_layers and not s.model.covariance.precomputed:
        items.append(
            Item(
                "statistics cache (run.cache_dir)",
                "disk",
                covariance_layers * shape.d_ff**2 * 4,
                f"{covariance_layers} × {shape.d_ff}² × 4 B",
            )
        )
    items += caches
    if on_cuda:
        items.append(
            Item("checkpoint: device tensors staged on the CPU", "host", layers_bytes, lay, (CHECKPOINT,))
        )
    if s.run.on_nonfinite == "skip":
        items.append(
            Item(
                "run.on_nonfinite=skip: snapshot of the edited layers",
                "device",
                layers_bytes,
                lay,
                EDIT_PHASES,
                "set run.on_nonfinite=stop",
            )
        )
        if state:
            items.append(
                Item(
                    "run.on_nonfinite=skip: editor state copy", "host", state, human_bytes(state), EDIT_PHASES
                )
            )
    return items


def checkpoints_written(n_batches: int | None, every: int) -> int | None:
    """Checkpoints by batch count: after every ``every``-th batch and after the last (0: the last only)."""
    if n_batches is None:
        return None
    if every == 0:
        return 1
    return n_batches // every + (1 if n_batches % every else 0)


def _itemsize(name: str) -> int:
    return getattr(torch, name).itemsize
