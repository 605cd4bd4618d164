"""``sphere-edit``: sequential knowledge editing from the command line (a Hydra main).

    sphere-edit model=llama3-8b editor=memit sphere=on dataset=counterfact dataset.limit=2000 \\
        dataset.batch_size=100 sphere.alpha=0.8 sphere.beta=0.5

Writes into the Hydra run directory: config.yaml (resolved), metrics.jsonl, summary.json,
summary.txt, plots and checkpoint/ (edited layers only).
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sphere.config import ConfigError, Settings, validate
from sphere.io import atomic_write_text

log = logging.getLogger("sphere")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Validate, load, edit, evaluate; returns the summary (also written to ``out_dir``)."""
    import torch

    from sphere.data import load_records
    from sphere.models import load_model, model_id
    from sphere.report import plot_run
    from sphere.runner import SequentialRun, format_summary
    from sphere.tracking import Tracker

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
    sphere_tag = "sphere" if s.sphere.enabled else "base"
    tracker = Tracker(
        out_dir,
        s.logger,
        run_name=f"{s.editor_name}{'+sphere' if s.sphere.enabled else ''}",
        group=f"{s.model.name}-{s.dataset.kind}-{len(records)}x{s.dataset.batch_size}",
        tags=[s.model.name, s.editor_name, sphere_tag, s.dataset.kind],
        config=OmegaConf.to_container(cfg, resolve=True),
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
    from sphere.checkpoint import checkpoint_progress

    progress = checkpoint_progress(out_dir / "checkpoint")
    return None if progress is None else int(progress["n_edits"])


@hydra.main(config_path=CONFIG_DIR, config_name="edit", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as e:
        print(f"sphere-edit: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        print(f"sphere-edit: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        if type(e).__name__ == "OutOfMemoryError":
            print(
                "sphere-edit: out of memory; lower dataset.batch_size, run.forward_batch_size or "
                "model.stats.batch_size, or use model.dtype=bfloat16",
                file=sys.stderr,
            )
            sys.exit(3)
        raise


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _main()


if __name__ == "__main__":
    main()
