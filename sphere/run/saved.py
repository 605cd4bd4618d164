"""The edited model a run saved, at each number of edits it can be rebuilt for.

Two sources: ``kept/edits_<n>.safetensors`` (``run.keep_at``; the weights *as evaluated*, readout
transforms applied, plus ``edits_0`` = W₀, the reference's ``edit_0.pth``) and the resume checkpoint
(live weights + editor state, at its last number of edits; the evaluated view is rebuilt through
the runner, so PRUNE's readout restraint is applied exactly as in the run). ``sphere-eval`` and
``sphere-export`` read both through :func:`load_point`.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from sphere.files import load_tensors, read_metadata, save_tensors
from sphere.run.checkpoint import CHECKPOINT_DIR, FILENAME, load_checkpoint

KEPT_DIR = "kept"
_KEPT = re.compile(r"edits_(\d+)\.safetensors$")


def kept_path(run_dir: Path, n_edits: int) -> Path:
    return Path(run_dir) / KEPT_DIR / f"edits_{n_edits}.safetensors"


def save_kept(run_dir: Path, n_edits: int, weights: dict[int, torch.Tensor], names: dict[int, str]) -> Path:
    """Write the evaluated weights of the edited layers after ``n_edits`` edits (atomic, checksummed)."""
    path = kept_path(run_dir, n_edits)
    save_tensors(
        path,
        {f"weight/{layer}": w for layer, w in weights.items()},
        {"n_edits": str(n_edits), "weight_names": json.dumps({str(k): v for k, v in names.items()})},
    )
    return path


def load_kept(path: Path) -> dict[int, torch.Tensor]:
    tensors, _ = load_tensors(path)
    return {int(k.split("/", 1)[1]): v for k, v in tensors.items() if k.startswith("weight/")}


def saved_points(run_dir: Path) -> dict[int, str]:
    """{number of edits: "kept" | "checkpoint"} this run can be rebuilt at (kept files win)."""
    run_dir = Path(run_dir)
    points: dict[int, str] = {}
    ckpt = run_dir / CHECKPOINT_DIR / FILENAME
    if ckpt.exists():
        meta = read_metadata(ckpt)
        points[int(json.loads(meta["state"])["progress"]["n_edits"])] = "checkpoint"
    for f in sorted((run_dir / KEPT_DIR).glob("edits_*.safetensors")):
        m = _KEPT.search(f.name)
        if m:
            points[int(m.group(1))] = "kept"
    return dict(sorted(points.items()))


def resolve_points(run_dir: Path, at: str) -> list[int]:
    """``at``: ``all``, ``last`` or comma-separated numbers of edits; unknown numbers are a one-line error."""
    points = saved_points(run_dir)
    if not points:
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint/ and no kept/ weights; was it written by sphere-edit "
            "(with run.checkpoint_every >= 0)?"
        )
    if at == "all":
        return list(points)
    if at == "last":
        return [max(points)]
    try:
        wanted = [int(x) for x in at.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--at {at!r}: expected all, last or numbers of edits like 5000,15000") from None
    missing = [n for n in wanted if n not in points]
    if missing:
        raise ValueError(
            f"{run_dir} has no weights saved at {missing} edits; saved: {list(points)} "
            "(keep more with run.keep_at=[...] when editing)"
        )
    return wanted


def load_point(runner: Any, records: list, run_dir: Path, n_edits: int) -> tuple[Any, list]:
    """Put the run's weights after ``n_edits`` edits into the runner's model (a ``SequentialRun``
    rebuilt from the run's config); returns a context manager under which the model is the
    evaluated one, and the records edited by then."""
    run_dir = Path(run_dir)
    kept = kept_path(run_dir, n_edits)
    if kept.exists():
        for layer, w in load_kept(kept).items():
            runner.ctx.weights.write(layer, w)
        return contextlib.nullcontext(), list(records[:n_edits])
    state = load_checkpoint(run_dir / CHECKPOINT_DIR)
    if state is None or int(state["progress"]["n_edits"]) != n_edits:
        raise FileNotFoundError(f"{run_dir}: no weights saved at {n_edits} edits")
    progress = runner.restore(state)
    bs = runner.s.dataset.batch_size
    batches = [records[i : i + bs] for i in range(0, len(records), bs)]
    return runner.evaluated_weights(), runner.edited_records(batches, progress)
