"""Where metrics go: ``metrics.jsonl`` and ``summary.json`` in the run directory (always, the
source of truth) and Weights & Biases (offline when no credentials are set)."""

from __future__ import annotations

import json
import logging
import netrc
import os
from pathlib import Path
from typing import Any, cast

from sphere.io import atomic_write_json, atomic_write_text
from sphere.run.config import LoggerConfig

log = logging.getLogger(__name__)


def wandb_mode(cfg: LoggerConfig) -> str:
    """``auto`` → online if an API key is available (env or ~/.netrc), else offline."""
    if not cfg.wandb or cfg.mode == "disabled":
        return "disabled"
    if cfg.mode != "auto":
        return cfg.mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class Tracker:
    """Append-only metrics log keyed by number of edits, mirrored to W&B."""

    def __init__(
        self,
        out_dir: Path,
        cfg: LoggerConfig,
        *,
        run_name: str,
        group: str,
        tags: list[str],
        config: dict[str, Any],
        resume_from_edits: int | None = None,
    ):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = out_dir / "metrics.jsonl"
        if resume_from_edits is not None and self.metrics_path.exists():
            # Drop rows past the checkpoint: the resumed run will log them again.
            rows = [json.loads(x) for x in self.metrics_path.read_text().splitlines() if x.strip()]
            keep = [r for r in rows if r["n_edits"] <= resume_from_edits]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        elif resume_from_edits is None and self.metrics_path.exists():
            self.metrics_path.unlink()
        self.run = None
        mode = wandb_mode(cfg)
        if mode != "disabled":
            try:
                import wandb

                self.run = wandb.init(
                    project=cfg.project,
                    entity=cfg.entity,
                    group=cfg.group or group,
                    name=run_name,
                    tags=[*tags, *cfg.tags],
                    config=config,
                    dir=str(out_dir),
                    mode=cast(Any, mode),
                    resume="allow",
                    id=_run_id(out_dir),
                )
                self.run.define_metric("n_edits")
                self.run.define_metric("*", step_metric="n_edits")
            except Exception as e:  # W&B must never cost a run
                log.warning(
                    "W&B disabled for this run (%s: %s); local files are still written", type(e).__name__, e
                )
                self.run = None

    def log(self, row: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if isinstance(v, int | float)})

    def rows(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(x) for x in self.metrics_path.read_text().splitlines() if x.strip()]

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.out_dir / "summary.json", summary)
        if self.run is not None:
            flat = {k: v for k, v in summary.items() if isinstance(v, int | float)}
            flat.update(
                {f"pre/{k}": v for k, v in (summary.get("pre") or {}).items() if isinstance(v, int | float)}
            )
            self.run.summary.update(flat)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _run_id(out_dir: Path) -> str:
    """A W&B id stable for one run directory, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:12]
