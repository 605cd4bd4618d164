"""An edited model as something others can load: a full Hugging Face checkpoint, or a small
safetensors patch of the edited matrices that :func:`apply_patch` puts onto the base model.

A patch holds each edited parameter under its ``named_parameters`` name in the layout the model
stores it (so applying it is a ``copy_``, with no knowledge of this library needed), and a header
with the base model, the editor, SPHERE's settings, the number of edits and a digest of the base
matrices it replaces: applying it to a different base model is refused instead of silently wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sphere.files import atomic_write_json, load_tensors, tensors_digest
from sphere.run.patch import param_names, patch_info, save_patch, save_run_patch

__all__ = ["apply_patch", "export_run", "patch_info", "save_patch", "save_run_patch"]


def apply_patch(model, path: str | Path, *, check_base: bool = True) -> dict[str, Any]:
    """Copy a patch's tensors into ``model`` in place; returns the patch's info.

    Raises ValueError when a parameter is missing or has another shape, or (``check_base``) when the
    model's current values of those parameters are not the base the patch was made from.
    """
    tensors, meta = load_tensors(path)
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise ValueError(f"{path}: the model has no parameter {missing[0]}; is it the patch's base model?")
    for n, t in tensors.items():
        if tuple(params[n].shape) != tuple(t.shape):
            raise ValueError(
                f"{path}: {n} is {tuple(t.shape)} in the patch, {tuple(params[n].shape)} in the model"
            )
    if check_base and "base_digest" in meta:
        current = {n: params[n].detach().float() for n in tensors}
        if tensors_digest(current) != meta["base_digest"]:
            raise ValueError(
                f"{path}: the model's weights are not the base this patch was made from "
                "(another model or revision, or already edited); pass check_base=False to apply anyway"
            )
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t.to(device=params[n].device, dtype=params[n].dtype))
    return json.loads(meta.get("sphere_patch", "{}"))


def export_run(run_dir: str | Path, out: str | Path, *, at: str = "last", patch: bool = False) -> Path:
    """Write the run's edited model after ``at`` edits to ``out``: a Hugging Face checkpoint
    directory (``save_pretrained``, safetensors), or with ``patch`` the file ``out`` (a directory
    gets ``patch.safetensors``). Returns what was written."""
    from editors.core.weights import weight_param
    from sphere.run.reevaluate import rebuild
    from sphere.run.rundir import load_point, resolve_points

    run_dir, out = Path(run_dir), Path(out)
    (n_edits,) = resolve_points(run_dir, at)[-1:]
    runner, records = rebuild(run_dir)
    model, spec = runner.model, runner.spec
    names = param_names(model)
    # The base as the patch's parameters store it (float32 for the digest: dtype-independent).
    base = {
        names[id(weight_param(model, spec, layer))]: weight_param(model, spec, layer).detach().float().clone()
        for layer in runner.layers
    }
    view, _ = load_point(runner, records, run_dir, n_edits)
    info = patch_info(runner, n_edits, run_dir)
    with view:
        if patch:
            target = out / "patch.safetensors" if out.suffix != ".safetensors" else out
            return save_patch(model, {n: b for n, b in base.items()}, target, info)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        runner.tok.save_pretrained(out)
        atomic_write_json(out / "sphere_edit.json", info)
    return out
