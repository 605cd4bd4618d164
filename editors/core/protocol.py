"""The editor contract: what the runner, the registry and the Python API may call on an editor.

An editor is any object with these members; nothing inherits from anything. Shared behaviour lives
in plain functions and small composed objects in ``editors/core`` (the MEMIT-family layer loop in
``spread.py``, the commit functions in ``context.py``), never in a base class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from editors.core.requests import EditRequest
from editors.core.weights import LayerUpdate, TransformPoint, UpdateTransform

Reference = Literal["current", "pretrained"]


@dataclass(frozen=True)
class Placement:
    """Where an editor calls update transforms, and which weights it offers them as reference.

    Attributes:
        points: every point at which the editor (or, for ``readout``, the run on its behalf) calls
            transforms. ``readout`` is always possible: the run applies it to the evaluated weights.
        default_point: where a transform added from outside (e.g. SPHERE) goes unless the user
            says otherwise: the reference implementation's choice for this editor.
        default_reference: the weights an outside transform should derive its state from by
            default: ``current`` (the live weights before this update) or ``pretrained`` (W₀).
    """

    points: frozenset[TransformPoint]
    default_point: TransformPoint
    default_reference: Reference = "current"

    def __post_init__(self) -> None:
        if self.default_point not in self.points:
            raise ValueError(f"default point {self.default_point!r} is not among {sorted(self.points)}")


@runtime_checkable
class Editor(Protocol):
    """One editing algorithm bound to one model (through its ``EditContext``).

    Lifecycle: built by its registry entry from (hyperparameters, context); ``setup`` once on the
    unedited model (templates, statistics, projectors); ``apply`` once per batch; ``state_dict`` /
    ``load_state_dict`` carry whatever must survive a restart (sequential state such as AlphaEdit's
    cache of past keys).
    """

    layers: list[int]
    """The layers whose edited matrix this editor changes (ascending)."""

    transforms: list[UpdateTransform]
    """The editor's own transforms first, then the context's (e.g. "RECT then SPHERE")."""

    def setup(self) -> None:
        """Work that must see the unedited model; idempotent."""

    def apply(self, requests: Sequence[EditRequest]) -> list[LayerUpdate]:
        """Edit the model in place with one batch; return the update of every changed layer."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Tensors and JSON-able values that restore this editor after a restart."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``."""
