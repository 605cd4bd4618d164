"""Several devices on one CPU, for testing code that must work on a model sharded by a device map.

A CPU has one device, so a tensor on the "wrong" device goes unnoticed there. ``VirtualDevices``
is a ``TorchFunctionMode`` that gives tensors a virtual device ``cpu:k`` and enforces the rules a
multi-GPU run enforces:

* ``t.device`` answers the virtual device; ``t.to(d)``, ``t.cpu()`` and factories with ``device=``
  move a tensor (a copy, as between GPUs); every other result is on its inputs' device;
* an operation whose tensors are on two devices raises, except where CUDA allows it: 0-dim host
  tensors (scalars), host integer/bool indices in indexing, and ``copy_`` (a cross-device copy).

``split`` lays a model out the way ``accelerate.dispatch_model`` does — an ``AlignDevicesHook`` on
every module of the map (moving its inputs to its device) and one on the whole model (inputs to
the first device, outputs back to the caller's) — and puts each mapped module's parameters and
buffers on its virtual device. Only the placement of the tensors is virtual (accelerate would copy
them to a real ``cpu:1``, which is the CPU again); the hooks are accelerate's own.
"""

from __future__ import annotations

import torch
from accelerate.hooks import AlignDevicesHook, add_hook_to_module
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

HOST = torch.device("cpu")
_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}


class DeviceMismatch(RuntimeError):
    """Tensors on two (virtual) devices met in one operation."""


class VirtualDevices(TorchFunctionMode):
    """Track a virtual device per tensor and refuse operations that mix devices (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._at = WeakTensorKeyDictionary()

    def place(self, t: torch.Tensor, device: torch.device) -> None:
        self._at[t] = device

    def where(self, t: torch.Tensor) -> torch.device:
        return self._at.get(t, HOST)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "__get__":  # a tensor property: .device answers, .grad/.data/.T inherit
            owner, prop = args[0], getattr(getattr(func, "__self__", None), "__name__", "")
            if prop == "device" and owner.device == HOST:
                return self.where(owner)
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and owner in self._at:
                self._at[out] = self._at[owner]
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        target = self._target(name, args, kwargs)
        if target is None:
            target = self._common(name, args, inputs)
        out = func(*args, **kwargs)
        if name in ("to", "cpu") and out is args[0] and self.where(out) != target:
            out = out.clone()  # .to(same real device) returns self; a move between devices copies
        seen = {id(t) for t in inputs}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in seen:  # in-place results keep theirs
                if target == HOST:
                    self._at.pop(t, None)
                else:
                    self._at[t] = target
        return out

    @staticmethod
    def _target(name: str, args, kwargs) -> torch.device | None:
        """The device an explicit move or a factory asks for (None: follow the inputs)."""
        if name == "to" and args and isinstance(args[0], torch.Tensor):
            device = torch._C._nn._parse_to(*args[1:], **{k: v for k, v in kwargs.items() if k != "copy"})[0]
        elif name == "cpu":
            device = HOST
        else:
            device = kwargs.get("device")
        if device is None:
            return None
        return torch.device("cpu", device) if isinstance(device, int) else torch.device(device)

    def _common(self, name: str, args, inputs: list[torch.Tensor]) -> torch.device:
        if name == "copy_":
            return self.where(args[0])
        devices = set()
        for i, t in enumerate(inputs):
            d = self.where(t)
            if d == HOST and t.dim() == 0:
                continue  # a host scalar goes with anything
            if d == HOST and name in _INDEXING and i > 0 and not t.is_floating_point():
                continue  # host indices index a tensor on any device
            devices.add(d)
        if len(devices) > 1:
            raise DeviceMismatch(f"{name} on tensors of {sorted(map(str, devices))}")
        return devices.pop() if devices else HOST


class _Hook(AlignDevicesHook):
    """accelerate's hook without its placement (parameters are placed virtually instead)."""

    def init_hook(self, module):
        return module


def split(model: torch.nn.Module, device_map: dict[str, torch.device]) -> VirtualDevices:
    """Hook ``model`` as ``dispatch_model(model, device_map)`` would and place its tensors virtually;
    the first device of the map is the main one. Enter the returned mode to run the model."""
    vd = VirtualDevices()
    add_hook_to_module(model, _Hook(execution_device=next(iter(device_map.values())), io_same_device=True))
    for name, device in device_map.items():
        module = model.get_submodule(name)
        add_hook_to_module(module, _Hook(execution_device=device))
        for t in (*module.parameters(), *module.buffers()):
            vd.place(t, device)
    return vd
