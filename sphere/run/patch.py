"""A run's edited matrices as a small safetensors patch (``patch.safetensors``), written by the run
itself with ``logger.log_patch`` and by ``sphere-export --patch`` (``sphere.export``, which also
applies patches).

A patch holds each edited parameter under its ``named_parameters`` name in the layout the model
stores it, and a header with the base model, the editor, SPHERE's settings, the number of edits and
a digest of the base matrices it replaces (``patch_info``; ``sphere.export.apply_patch`` checks it).
Here, in the run layer, because the run writes one at its end from its live runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sphere.files import save_tensors, tensors_digest


def param_names(model) -> dict[int, str]:
    """``id(parameter)`` → its ``named_parameters`` name."""
    return {id(p): n for n, p in model.named_parameters()}


def save_patch(model, base: dict[str, torch.Tensor], path: Path, info: dict[str, Any]) -> Path:
    """Write the model's current values of the parameters in ``base`` (name → base value) as a patch."""
    params = dict(model.named_parameters())
    tensors = {name: params[name].detach() for name in base}
    meta = {"sphere_patch": json.dumps(info), "base_digest": tensors_digest(base)}
    save_tensors(path, tensors, meta)
    return path


def patch_info(runner, n_edits: int, run_dir: Path) -> dict[str, Any]:
    """A patch's header: base model, editor, SPHERE's settings, number of edits, layers, run."""
    s = runner.s
    return {
        "base_model": s.model.path or s.model.gguf_file or s.model.name,
        "model": s.model.name,
        "editor": s.editor_name,
        "sphere": {
            "enabled": s.sphere.enabled,
            "alpha": s.sphere.alpha,
            "beta": s.sphere.beta,
            "rank": s.sphere.rank,
        },
        "n_edits": n_edits,
        "dataset": s.dataset.kind,
        "layers": list(runner.layers),
        "run_dir": str(Path(run_dir).resolve()),
    }


def save_run_patch(runner, path: Path, n_edits: int) -> Path:
    """The patch of a run that has just finished, from its live runner (no rebuild): the evaluated
    weights of the edited layers (readout transforms applied), against the W₀ the runner snapshotted
    before the first edit (in the parameters' stored layout and dtype, as ``export_run``'s digest)."""
    from editors.core.weights import weight_param

    model, spec = runner.model, runner.spec
    names = param_names(model)
    base = {}
    for layer in runner.layers:
        param = weight_param(model, spec, layer)
        w0 = runner.ctx.pretrained(layer)
        base[names[id(param)]] = (w0.T if spec.conv1d else w0).to(param.dtype).float()
    with runner.evaluated_weights():
        return save_patch(model, base, path, patch_info(runner, n_edits, path.parent))
