"""Checkpoints of a sequential run: the edited layers, editor and transform state, progress; W₀.

One safetensors file (tensors) with a JSON header (everything else), written atomically, so a run
killed at any point resumes from its last complete checkpoint with the same results. W₀ never
changes, so it lives in its own file (``w0.safetensors``), written once: for LLaMA3-8B's five
edited layers that is 1.2 GB not rewritten at every checkpoint (AlphaEdit's key cache, 4.1 GB, is
state and is rewritten; how often is ``run.checkpoint_every`` / ``run.checkpoint_minutes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sphere.files import CorruptFileError, load_tensors, save_tensors

CHECKPOINT_DIR = "checkpoint"  # under the run directory: the two files below
FILENAME = "checkpoint.safetensors"
W0_FILENAME = "w0.safetensors"


def _split(prefix: str, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Move tensors of a (flat) state dict into ``tensors``; return the JSON-able rest."""
    rest = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            tensors[f"{prefix}/{k}"] = v
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
    tensors.update({f"weight/{name}": w for name, w in weights.items()})
    write_w0(path, w0)  # before the state that needs it: a kill between leaves W₀ only
    # save_tensors detaches, moves to the CPU and makes contiguous, once for all of them.
    save_tensors(path / FILENAME, tensors, {"state": json.dumps(meta)})


def write_w0(path: Path, w0: dict[str, torch.Tensor], *, force: bool = False) -> None:
    """Write W₀ to ``path/w0.safetensors`` unless that file already holds these layers (or ``force``)."""
    w0_file = path / W0_FILENAME
    if force or _keys(w0_file) != set(w0):
        save_tensors(w0_file, dict(w0))


def map_w0(path: Path) -> dict[str, torch.Tensor]:
    """W₀ from ``path/w0.safetensors`` as tensors over the file's pages: safetensors maps the file
    (privately: writes stay in this process), so a page is read from disk when a tensor is first
    used and the kernel can drop it again, and untouched pages cost no process memory. Not
    checksummed (that would read every page): for a file this run has just written or verified."""
    from safetensors import safe_open

    with safe_open(str(path / W0_FILENAME), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, state) of the checkpoint in ``path``, None if there is none; a damaged file is
    reported with what to do, never loaded (the run's weights cannot be recomputed from it)."""
    f = path / FILENAME
    if not f.exists():
        return None
    try:
        tensors, meta = load_tensors(f)
        return tensors, json.loads(meta["state"])
    except (CorruptFileError, KeyError, json.JSONDecodeError) as e:
        raise CorruptFileError(
            f"checkpoint {f} is damaged ({e}); delete {path} to start the run again from the beginning"
        ) from None


def _keys(f: Path) -> set[str] | None:
    """The tensor names in a safetensors file (header only), None if missing or unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(f), framework="pt") as h:
            return set(h.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    found = _read(path)
    if found is None:
        return None
    tensors, meta = found
    w0_file = path / W0_FILENAME
    if w0_file.exists():
        try:
            tensors.update({f"w0/{k}": v for k, v in load_tensors(w0_file)[0].items()})
        except CorruptFileError as e:
            raise CorruptFileError(
                f"W₀ file {w0_file} is damaged ({e}); delete {path} to start the run again from the beginning"
            ) from None

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    return {
        "weights": group("weight"),
        "w0": group("w0"),
        "editor": {**meta["editor"], **group("editor")},
        "transforms": [{**s, **group(f"transform{i}")} for i, s in enumerate(meta["transforms"])],
        "progress": meta["progress"],
    }


def read_progress(path: Path) -> dict[str, Any] | None:
    """The progress of the checkpoint in ``path`` from its header alone (no tensor is read: a
    LLaMA3-8B + AlphaEdit checkpoint is ~5 GB); None if there is none. Not checksummed: the run
    that continues loads it whole (``load_checkpoint``), which is."""
    from safetensors import SafetensorError, safe_open

    f = path / FILENAME
    if not f.exists():
        return None
    try:
        with safe_open(str(f), framework="pt") as h:
            return json.loads((h.metadata() or {})["state"])["progress"]
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise CorruptFileError(
            f"checkpoint {f} is damaged ({e}); delete {path} to start the run again from the beginning"
        ) from None


def set_progress(path: Path, progress: dict[str, Any]) -> None:
    """Rewrite the checkpoint in ``path`` with ``progress`` in place of its own, the tensors and the
    rest of the state unchanged (atomically, as every checkpoint): how an extended run
    (``sphere.run.extend``) records, before anything else changes, that its unedited-model
    measurement must be taken again on the longer stream."""
    found = _read(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {path}")
    tensors, meta = found
    save_tensors(path / FILENAME, tensors, {"state": json.dumps({**meta, "progress": progress})})
