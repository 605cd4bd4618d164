"""One experiment from a validated config: records, model, run, tracker, summary, plots."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from sphere.io import atomic_write_text
from sphere.run.config import Settings, validate

log = logging.getLogger(__name__)


def run_experiment(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Validate, load, edit, evaluate; returns the summary (also written to ``out_dir``)."""
    import torch

    from sphere.data import load_records
    from sphere.models import load_model, model_id
    from sphere.report.plots import plot_run
    from sphere.report.summary import format_summary
    from sphere.run.runner import SequentialRun
    from sphere.run.tracking import Tracker

    s: Settings = validate(cfg)
    records = load_records(
        s.dataset.kind,
        s.dataset.path,
        limit=None if s.dataset.shuffle else s.dataset.limit,
        skip_malformed=s.dataset.skip_malformed,
        zsre_target=s.dataset.zsre_target,
    )
    if s.dataset.shuffle:
        random.Random(s.run.seed).shuffle(records)
        records = records[: s.dataset.limit] if s.dataset.limit else records
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(s.run.seed)
    model, tok = load_model(s.model)
    runner = SequentialRun(s, model, tok, model_id(s.model), records, out_dir)
    tracker = Tracker(
        out_dir,
        s.logger,
        run_name=f"{s.editor_name}{'+sphere' if s.sphere.enabled else ''}",
        group=f"{s.model.name}-{s.dataset.kind}-{len(records)}x{s.dataset.batch_size}",
        tags=[s.model.name, s.editor_name, "sphere" if s.sphere.enabled else "base", s.dataset.kind],
        config=cast(dict, OmegaConf.to_container(cfg, resolve=True)),
        resume_from_edits=_resumed_edits(out_dir) if s.run.resume else None,
    )
    try:
        summary = runner.run(tracker)
        tracker.write_summary(summary)
    finally:
        tracker.finish()
    text = format_summary(summary)
    atomic_write_text(out_dir / "summary.txt", text + "\n")
    if s.run.plots:
        plot_run(out_dir)
    print("\n" + text + f"\nrun directory: {out_dir}")
    return summary


def _resumed_edits(out_dir: Path) -> int | None:
    from sphere.run.checkpoint import checkpoint_progress

    progress = checkpoint_progress(out_dir / "checkpoint")
    return None if progress is None else int(progress["n_edits"])
