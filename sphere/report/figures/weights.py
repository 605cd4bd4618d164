"""The edited weights a figure needs from a run directory: the final W and the unedited W₀ of one
edited layer. The only place the report reads tensors: :func:`read_layer_weights` opens the run's
resume checkpoint by the names :mod:`sphere.run.checkpoint` gives its folder and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_layer_weights(run_dir: Path, layer: str | None) -> tuple[str, np.ndarray, np.ndarray]:
    """(layer, final W, W₀) of one edited layer of the run in ``run_dir``, from its resume
    checkpoint, read lazily: only these two tensors are read (a checkpoint also holds the editor's
    state, gigabytes for a 7-8B model), so the whole-file checksum of ``load_checkpoint`` is not
    verified here; an unreadable file raises. ``layer`` None: the middle edited layer."""
    from safetensors import safe_open  # imported here: torch is only needed when there are checkpoints

    from sphere.run.checkpoint import CHECKPOINT_DIR, FILENAME, W0_FILENAME

    ckpt = Path(run_dir) / CHECKPOINT_DIR
    with safe_open(str(ckpt / FILENAME), framework="pt") as f:
        keys = set(f.keys())
        layers = sorted((k.split("/", 1)[1] for k in keys if k.startswith("weight/")), key=layer_key)
        if not layers:
            raise ValueError("holds no edited weights")
        if layer is None:
            layer = layers[len(layers) // 2]
        if f"weight/{layer}" not in keys:
            raise KeyError(f"has no layer {layer} (edited layers: {', '.join(layers)})")
        w = f.get_tensor(f"weight/{layer}").double().numpy()
        if f"w0/{layer}" in keys:  # checkpoints written before W₀ had its own file
            return layer, w, f.get_tensor(f"w0/{layer}").double().numpy()
    with safe_open(str(ckpt / W0_FILENAME), framework="pt") as f:
        if layer not in set(f.keys()):
            raise KeyError(f"has no W₀ of layer {layer} in {W0_FILENAME}")
        w0 = f.get_tensor(layer).double().numpy()
    return layer, w, w0


def layer_key(s: str) -> tuple[int, int, str]:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
