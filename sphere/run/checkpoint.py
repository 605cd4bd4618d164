"""Checkpoints of a sequential run: the edited layers, W₀, editor and transform state, progress.

One safetensors file (tensors) with a JSON header (everything else), written atomically, so a run
killed at any point resumes from its last complete checkpoint with the same results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sphere.io import atomic_write

FILENAME = "checkpoint.safetensors"


def _split(prefix: str, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Move tensors of a (flat) state dict into ``tensors``; return the JSON-able rest."""
    rest = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            tensors[f"{prefix}/{k}"] = v.detach().cpu().contiguous()
        else:
            rest[k] = v
    return rest


def save_checkpoint(path: Path, *, weights, w0, editor_state, transform_states, progress) -> None:
    tensors: dict[str, torch.Tensor] = {}
    meta = {
        "editor": _split("editor", editor_state, tensors),
        "transforms": [_split(f"transform{i}", s, tensors) for i, s in enumerate(transform_states)],
        "progress": progress,
    }
    for name, w in weights.items():
        tensors[f"weight/{name}"] = w.detach().cpu().contiguous()
    for name, w in w0.items():
        tensors[f"w0/{name}"] = w.detach().cpu().contiguous()
    atomic_write(path / FILENAME, lambda tmp: save_file(tensors, tmp, metadata={"state": json.dumps(meta)}))


def checkpoint_progress(path: Path) -> dict[str, Any] | None:
    """The progress record of a checkpoint, read from its header alone (no tensors loaded)."""
    f = path / FILENAME
    if not f.exists():
        return None
    with safe_open(str(f), framework="pt") as sf:
        return json.loads(sf.metadata()["state"])["progress"]


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    f = path / FILENAME
    if not f.exists():
        return None
    with safe_open(str(f), framework="pt") as sf:
        meta = json.loads(sf.metadata()["state"])
        tensors = {k: sf.get_tensor(k) for k in sf.keys()}  # noqa: SIM118 (safe_open has no __iter__)

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    return {
        "weights": group("weight"),
        "w0": group("w0"),
        "editor": {**meta["editor"], **group("editor")},
        "transforms": [{**s, **group(f"transform{i}")} for i, s in enumerate(meta["transforms"])],
        "progress": meta["progress"],
    }
