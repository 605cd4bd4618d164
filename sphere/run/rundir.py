"""The run directory's contract: what ``sphere-edit`` writes into it, under which names, and how to
read it back. One module owns it so that the writer (the run) and the readers (``sphere-eval``,
``sphere-export``, the report) cannot drift apart: a file is named, built and read through here.

    config.yaml                  the resolved config (``CONFIG_FILE``)
    metrics.jsonl                one row per measurement (``METRICS_FILE``; ``sphere.run.tracking``)
    summary.json, summary.txt    the final metrics, the run's identity and timings, and the table a
                                 person reads (``build_summary``, ``format_summary``)
    outcomes.jsonl               every edited record's results at the end (``sphere.run.outcomes``)
    checkpoint/                  checkpoint.safetensors and w0.safetensors (``sphere.run.checkpoint``)
    kept/edits_<n>.safetensors   the evaluated weights kept at ``run.keep_at`` (``sphere.run.saved``)
    reeval/<overrides>.json      ``sphere-eval``'s results (``sphere.run.reevaluate``)
    patch.safetensors            the edited matrices, with ``logger.log_patch`` (``sphere.run.patch``)
    extended/at-<n>/             the files of the run as it stood when it was extended after n
                                 edits to a longer stream (``EXTENDED_DIR``; ``sphere.run.extend``)

The pieces live in the modules named above; this one gathers their names and readers, and adds the
summary's own two files. What a new run deletes, and what marks a directory as holding results, is
``RUN_OUTPUTS`` and ``RESULTS`` (``sphere.run.identity``, the resume policy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sphere.files import atomic_write_text
from sphere.run.checkpoint import CHECKPOINT_DIR, load_checkpoint
from sphere.run.checkpoint import FILENAME as CHECKPOINT_FILE
from sphere.run.checkpoint import W0_FILENAME as W0_FILE
from sphere.run.identity import RESULTS, RUN_OUTPUTS
from sphere.run.outcomes import OUTCOMES_FILE, read_outcomes, write_outcomes
from sphere.run.saved import (
    KEPT_DIR,
    kept_path,
    load_kept,
    load_point,
    resolve_points,
    save_kept,
    saved_points,
)
from sphere.run.summary import PER_LAYER_HE, build_summary, format_summary, shown_metrics, split_per_layer

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EXTENDED_DIR",
    "KEPT_DIR",
    "METRICS_FILE",
    "OUTCOMES_FILE",
    "PATCH_FILE",
    "PER_LAYER_HE",
    "REEVAL_DIR",
    "RESULTS",
    "RUN_OUTPUTS",
    "SUMMARY_FILE",
    "SUMMARY_TEXT_FILE",
    "UPDATE_NORM_PREFIX",
    "W0_FILE",
    "build_summary",
    "format_summary",
    "is_pre_row",
    "kept_path",
    "layer_key",
    "load_checkpoint",
    "load_kept",
    "load_point",
    "read_layer_weights",
    "read_metrics",
    "read_outcomes",
    "read_summary",
    "resolve_points",
    "save_kept",
    "saved_points",
    "shown_metrics",
    "split_per_layer",
    "write_outcomes",
    "write_summary_text",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"  # written last: its presence marks a finished run
SUMMARY_TEXT_FILE = "summary.txt"
REEVAL_DIR = "reeval"
EXTENDED_DIR = "extended"  # one of identity.RUN_OUTPUTS: a run started over deletes it
PATCH_FILE = "patch.safetensors"
# metrics.jsonl: the Frobenius norm of the update applied to edited layer <l>, one column per layer of
# every batch row. The runner logs it (it sees the update; no evaluator does); the report's early
# warning reads it under this prefix.
UPDATE_NORM_PREFIX = "update_norm/layer_"


def is_pre_row(row: dict[str, Any]) -> bool:
    """The unedited model's row of metrics.jsonl (a batch skipped before any edit also has 0 edits)."""
    return int(row.get("n_edits", -1)) == 0 and "skipped_batch" not in row


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """metrics.jsonl's rows and the number of lines that are not one (unparseable, or not a row
    with ``n_edits``): a run killed mid-append leaves a cut last line, which is skipped, not fatal."""
    rows, bad = [], 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict) and "n_edits" in row:
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of a finished run."""
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))


def write_summary_text(run_dir: Path, summary: dict[str, Any]) -> str:
    """Write summary.txt (``format_summary``'s table, atomically) and return the table for printing."""
    text = format_summary(summary)
    atomic_write_text(Path(run_dir) / SUMMARY_TEXT_FILE, text + "\n")
    return text


def read_layer_weights(run_dir: Path, layer: str | None) -> tuple[str, Any, Any]:
    """(layer, final W, W₀) of one edited layer of the run in ``run_dir``, from its resume
    checkpoint, read lazily: only these two tensors are read (a checkpoint also holds the editor's
    state, gigabytes for a 7-8B model), so the whole-file checksum of ``load_checkpoint`` is not
    verified here; an unreadable file raises. ``layer`` None: the middle edited layer. W and W₀
    are float64 numpy arrays."""
    from safetensors import safe_open  # imported here: torch is only needed when there are checkpoints

    ckpt = Path(run_dir) / CHECKPOINT_DIR
    with safe_open(str(ckpt / CHECKPOINT_FILE), framework="pt") as f:
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
    with safe_open(str(ckpt / W0_FILE), framework="pt") as f:
        if layer not in set(f.keys()):
            raise KeyError(f"has no W₀ of layer {layer} in {W0_FILE}")
        w0 = f.get_tensor(layer).double().numpy()
    return layer, w, w0


def layer_key(s: str) -> tuple[int, int, str]:
    """Sort order of edited-layer names: numbers numerically, then names."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
