"""Reading and writing the edited matrices in one layout, and the ``UpdateTransform`` protocol.

All edit math uses the nn.Linear layout W: key (d_ff) → value (d_model), shape (d_model × d_ff),
rows = neurons. GPT-2's ``Conv1D`` stores Wᵀ; the conversion happens only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, runtime_checkable

import torch
from torch import nn

from editors.core.model_spec import ModelSpec, get_module

TransformPoint = Literal["layer", "step", "readout"]


class NonFiniteUpdateError(FloatingPointError):
    """An editor produced NaN/Inf; nothing was written to the model."""


class UpdateTransform(Protocol):
    """A post-processing of a weight update ΔW, e.g. SPHERE's projection or RECT's mask.

    ``point`` says where the editor calls it: ``layer`` inside the multi-layer solve (later layers see
    the transformed update: AlphaEdit), ``step`` once per batch after the editor returns (ROME, MEMIT,
    RECT), ``readout`` on the accumulated W − W₀ of the weights that are evaluated, never fed back
    (PRUNE as in the reference).
    """

    point: TransformPoint

    def __call__(
        self, name: str, layer: int, reference: torch.Tensor, delta: torch.Tensor
    ) -> torch.Tensor: ...


@runtime_checkable
class StatefulTransform(Protocol):
    """A transform with state that must survive a restart (e.g. SPHERE's W₀ snapshots)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class MetricTransform(Protocol):
    """A transform that reports numbers about what it did (e.g. SPHERE's r per layer)."""

    def pop_metrics(self) -> dict[str, float]:
        """Metrics since the last call (then forgotten, so memory stays bounded over a run)."""
        ...


@dataclass
class LayerUpdate:
    """One matrix update of one batch: ``delta`` (d_model × d_ff, float32) to add at ``layer``."""

    layer: int
    name: str
    delta: torch.Tensor


def weight_param(model: nn.Module, spec: ModelSpec, layer: int) -> torch.Tensor:
    """The edited matrix's parameter itself (stored layout: Wᵀ for GPT-2's Conv1D)."""
    return cast(torch.Tensor, get_module(model, spec.weight_module_name(layer)).weight)


def weight_device(model: nn.Module, spec: ModelSpec, layer: int) -> torch.device:
    """The device of the edited matrix of ``layer``: where its keys, residuals, solves, updates and
    the update transforms live (on a model sharded by a device map, not the model's first device)."""
    return weight_param(model, spec, layer).device


class OffloadedWeightError(ValueError):
    """An edited matrix is offloaded (on the meta device): there is no tensor to edit in place."""


def check_editable(model: nn.Module, spec: ModelSpec, layers: Sequence[int]) -> None:
    """Refuse edited layers whose weights a device map offloaded to the CPU or to disk.

    accelerate keeps an offloaded parameter on the meta device and loads its value for each forward
    only, so an update written into it would be lost (and reading it fails). Checked at start-up.
    """
    for layer in layers:
        if weight_param(model, spec, layer).device.type == "meta":
            raise OffloadedWeightError(
                f"{spec.weight_name(layer)} (edited layer {layer}) is offloaded by the device map (its "
                "weights are loaded only for each forward), so it cannot be edited; model.device_map "
                "must keep the edited layers on a device (more GPU memory, or a map that puts them on one)"
            )


def read_weight(model: nn.Module, spec: ModelSpec, layer: int) -> torch.Tensor:
    """A float32 copy of the edited matrix of ``layer`` in (d_model × d_ff) layout."""
    w = weight_param(model, spec, layer).detach()
    return (w.T if spec.conv1d else w).float().clone()


def add_to_weight(model: nn.Module, spec: ModelSpec, layer: int, delta: torch.Tensor) -> None:
    """W += ΔW in place (cast to the model's dtype), after checking ΔW is finite."""
    check_finite(delta, spec.weight_name(layer))
    param = weight_param(model, spec, layer)
    with torch.no_grad():
        d = (delta.T if spec.conv1d else delta).to(device=param.device, dtype=param.dtype)
        param.add_(d)


def write_weight(model: nn.Module, spec: ModelSpec, layer: int, value: torch.Tensor) -> None:
    """W = value in place (value in d_model × d_ff layout)."""
    check_finite(value, spec.weight_name(layer))
    param = weight_param(model, spec, layer)
    with torch.no_grad():
        param.copy_((value.T if spec.conv1d else value).to(device=param.device, dtype=param.dtype))


def check_finite(t: torch.Tensor, name: str) -> None:
    """Refuse NaN/Inf before anything is written (the run layer adds which settings to change)."""
    if not torch.isfinite(t).all():
        raise NonFiniteUpdateError(f"non-finite values in the update of {name}; nothing was written")


def apply_transforms(
    transforms: Sequence[UpdateTransform],
    point: TransformPoint,
    name: str,
    layer: int,
    reference: torch.Tensor,
    delta: torch.Tensor,
) -> torch.Tensor:
    """Apply, in order, the transforms registered for ``point``."""
    for t in transforms:
        if t.point == point:
            delta = t(name, layer, reference, delta)
    return delta


def accumulated_view(
    transforms: Sequence[UpdateTransform],
    point: TransformPoint,
    name: str,
    layer: int,
    w0: torch.Tensor,
    w: torch.Tensor,
) -> torch.Tensor:
    """W₀ + T(W − W₀): the ``point`` transforms applied to the whole edit accumulated since W₀.

    The one definition of PRUNE's view: the run evaluates it at ``readout`` (never fed back), PRUNE
    with feedback writes it back at ``step``.
    """
    return w0 + apply_transforms(transforms, point, name, layer, w0, w - w0)


class EditedWeights:
    """The edited matrices' source of truth, read and written in the (d_model × d_ff) layout.

    For a float32 model that is the model itself. For a bfloat16/float16 model a float32 master copy
    of each edited layer is kept (created from the model on first access; the edited layers are a
    small part of the model) and written *rounded* into the model after every change: a bf16 step is
    2⁻⁸ of the value, so an update entry below half of it would otherwise vanish when added, batch
    after batch, and a long run would silently stop accumulating small edits.
    """

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        self.model, self.spec = model, spec
        self._master: dict[int, torch.Tensor] = {}

    def _uses_master(self, layer: int) -> bool:
        return weight_param(self.model, self.spec, layer).dtype != torch.float32

    def read(self, layer: int) -> torch.Tensor:
        """A float32 copy of W (from the master copy when one is kept)."""
        if layer in self._master:
            return self._master[layer].clone()
        return read_weight(self.model, self.spec, layer)

    def write(self, layer: int, value: torch.Tensor) -> None:
        """W = value (checked finite first; nothing is written otherwise)."""
        check_finite(value, self.spec.weight_name(layer))
        if self._uses_master(layer):  # kept with the layer's weight, wherever ``value`` comes from
            where = weight_device(self.model, self.spec, layer)
            self._master[layer] = value.detach().to(device=where, dtype=torch.float32, copy=True)
        write_weight(self.model, self.spec, layer, value)

    def add(self, layer: int, delta: torch.Tensor) -> None:
        """W += ΔW; with a master copy the sum is formed in float32, then rounded into the model."""
        if not self._uses_master(layer):
            add_to_weight(self.model, self.spec, layer, delta)
            return
        check_finite(delta, self.spec.weight_name(layer))
        base = self.read(layer)
        self.write(layer, base + delta.to(device=base.device, dtype=torch.float32))
