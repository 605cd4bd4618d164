"""sphere: sequential knowledge editing with SPHERE's hyperspherical projection.

The public Python surface (imported lazily, so ``import sphere`` stays cheap):

- ``sphere.edit(model, tok, requests, editor="alphaedit", sphere={"alpha": 0.5, "beta": 0.5})``
  edits a model you hold and returns the updates (``sphere/api.py``);
- ``sphere.SphereProjection``, ``sphere.principal_directions``, ``sphere.project_update``: the
  projection on its own, on any ΔW (``sphere/method/projection.py``);
- ``sphere.hyperspherical_energy`` (``sphere/method/energy.py``);
- ``sphere.load_model``, ``sphere.load_records``, ``sphere.EditRequest``.

Sub-packages: ``method`` (the paper's contribution), ``models``, ``data``, ``evaluation``,
``run`` (the experiment), ``report``, ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "edit": "sphere.api",
    "EditResult": "sphere.api",
    "SphereProjection": "sphere.method.projection",
    "principal_directions": "sphere.method.projection",
    "project_update": "sphere.method.projection",
    "hyperspherical_energy": "sphere.method.energy",
    "SphereConfig": "sphere.method.placement",
    "load_model": "sphere.models",
    "load_records": "sphere.data",
    "EditRequest": "editors.core.requests",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sphere' has no attribute {name!r}")
