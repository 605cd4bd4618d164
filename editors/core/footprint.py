"""What a piece of an editor costs in memory and disk: its plan items, declared next to its code.

``sphere-edit ... run.plan=true`` (sphere/run/plan.py) sizes a run before loading any weights. The
run's own allocations (weights, key statistics, checkpoints) are the plan's; everything an editor
allocates is declared by the piece that allocates it, as a ``Footprint`` of ``PlanItem`` s computed
from the model's shape (``ShapeInfo``) and the piece's settings: the MEMIT-family layer loop
(spread.py), the z optimisation (values.py), each solve, each transform, the past-keys cache. An
editor's registry entry composes the footprints of the pieces it is built from
(``register_editor(..., footprint=...)``), so the plan names no editor.

Plain data only (no torch): sizes are integers of bytes, formulas are the text the plan prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Where = Literal["device", "host", "disk"]

# The phases of a run. ``always`` coexists with each of the others; the others (one batch's, the
# set-up's, collecting statistics, writing a checkpoint) run one after the other and free their
# workspaces, so a peak is ``always`` + the largest phase; ``load`` (host memory while the model
# loads) only precedes them. Phase names are printed in the plan.
ALWAYS, LOAD, SETUP, STATS, CHECKPOINT = "always", "load", "setup", "statistics", "checkpoint"
Z, SOLVE, TRANSFORM = "z-optimisation", "layer solve", "transform"
WHILE_TRANSFORMING = "while transforming"
"""Not a phase of its own: an item that lives through every phase in which update transforms run
(the editor's own ``transform`` and those of transforms from outside, e.g. SPHERE's); the plan
expands it into those phases."""


@dataclass(frozen=True)
class PlanItem:
    """One allocation: what, where (device | host | disk), when (phases), how big, what shrinks it.

    Attributes:
        label: what it is, as the plan prints it (name the owner: "AlphaEdit: ...").
        where: the model's ``device``, ``host`` memory, or ``disk``.
        nbytes: its size in bytes.
        how: the formula with its numbers (printed next to the size).
        phases: when it exists (``ALWAYS`` for the whole run; ignored on disk).
        setting: the setting that shrinks it, named when it is the biggest item of a run that
            does not fit.
        copies: how many exist at the disk peak (a checkpoint is written next to the previous one
            and renamed over it).
        written: total bytes written over the run, if more than ``nbytes``.
        checkpointed: part of the piece's ``state_dict``, so also in every checkpoint (and copied
            with ``run.on_nonfinite=skip``).
    """

    label: str
    where: Where
    nbytes: int
    how: str
    phases: tuple[str, ...] = (ALWAYS,)
    setting: str = ""
    copies: int = 1
    written: int = 0
    checkpointed: bool = False


@dataclass
class Footprint:
    """A piece's plan items, and how many layers' key statistics C = E[kkᵀ] it reads (the run
    collects, caches and holds those: the plan sizes them from ``covariance_layers``)."""

    items: list[PlanItem] = field(default_factory=list)
    covariance_layers: int = 0

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint([*self.items, *other.items], max(self.covariance_layers, other.covariance_layers))


def combine(parts: Iterable[Footprint]) -> Footprint:
    """The footprints of an editor's pieces, in order (the plan prints their items in this order)."""
    total = Footprint()
    for part in parts:
        total = total + part
    return total


def footprint_of(piece: Any, shape: ShapeInfo) -> Footprint:
    """``piece.footprint(shape)``; a piece that declares none (a transform that scales its update)
    allocates nothing worth planning."""
    declare = getattr(piece, "footprint", None)
    return declare(shape) if declare is not None else Footprint()


@dataclass(frozen=True)
class ShapeInfo:
    """The numbers a footprint is computed from: the model's shape and the run's batch.

    Attributes:
        d_model, d_ff: the edited matrix is d_model × d_ff (nn.Linear's ``weight`` is d_model rows).
        n_layers: the model's blocks; ``layers``: the edited ones (ascending).
        vocab, kv_dim: LM-head rows; keys' and values' width per token (kv heads × head dim).
        dtype_bytes: bytes per element of the model's weights and activations (``model.dtype``).
        batch_size: requests per batch.
        prompt_tokens: (longest prompt with its subject, longest target, typical target) in tokens
            for the dataset's kind: the rows of a batch are padded to the longest.
    """

    d_model: int
    d_ff: int
    n_layers: int
    vocab: int
    kv_dim: int
    dtype_bytes: int
    layers: tuple[int, ...]
    batch_size: int
    prompt_tokens: tuple[int, int, int]

    @property
    def matrix(self) -> str:
        """The edited matrix's dimensions as the formulas print them: "d_model×d_ff"."""
        return f"{self.d_model}×{self.d_ff}"

    @property
    def layer_bytes(self) -> int:
        """One edited matrix in float32."""
        return self.d_model * self.d_ff * 4


def dtype_name(nbytes: int) -> str:
    """float64 or float32, by the bytes of a floating-point element."""
    return "float64" if nbytes == 8 else "float32"
