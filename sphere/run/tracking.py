"""Where metrics go: ``metrics.jsonl`` and ``summary.json`` in the run directory (always, the
source of truth) and Weights & Biases (offline when no credentials are set): metrics against the
number of edits, the final tables, the run's figures as images, its small files as an artifact and,
on request, the edited layers as a patch artifact."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, cast

from editors.core.faults import kill_point
from sphere.files import atomic_write_json, atomic_write_text
from sphere.run.config import LoggerConfig
from sphere.run.rundir import METRICS_FILE, SUMMARY_FILE, is_pre_row, read_metrics

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_id"


def wandb_mode(cfg: LoggerConfig) -> str:
    """``auto`` → what W&B itself would do: ``WANDB_MODE`` when it is set, else online when W&B finds
    credentials for its host (``WANDB_API_KEY``, a settings file, or the ``.netrc`` entry of
    ``WANDB_BASE_URL``'s host: a self-hosted server too), else offline. Never raises."""
    if not cfg.wandb or cfg.mode == "disabled":
        return "disabled"
    if cfg.mode != "auto":
        return cfg.mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in _WANDB_ENV_MODES:
        return _WANDB_ENV_MODES[env]
    return "online" if has_wandb_credentials() else "offline"


# WANDB_MODE's values as wandb reads them ("dryrun" and "run" are its older spellings).
_WANDB_ENV_MODES = {
    "online": "online",
    "run": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}


def has_wandb_credentials() -> bool:
    """Whether wandb's own lookup finds an API key for its host, without prompting or contacting
    the server: ``wandb.login(prompt=False, verify=False)`` (wandb >= 0.2x), or the deprecated
    ``wandb.api.api_key`` of older releases. Any failure reads as "no credentials"."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        try:
            return bool(wandb.login(prompt=False, verify=False))
        except TypeError:  # an older wandb without ``prompt``: its lookup reads the same sources
            return bool(wandb.api.api_key)
    except Exception as e:  # noqa: BLE001 - a credentials check must never cost the run
        log.debug("no W&B credentials found (%s: %s)", type(e).__name__, e)
        return False


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
        job_type: str | None = None,
    ):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = out_dir / METRICS_FILE
        if resume_from_edits is not None and self.metrics_path.exists():
            # Keep what the checkpoint covers; the resumed run logs the rest again (a final row, or
            # a line cut short by a kill mid-append, is dropped too: nothing twice, nothing lost).
            keep = [r for r in self.rows() if r["n_edits"] <= resume_from_edits and not r.get("final")]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        elif resume_from_edits is None and self.metrics_path.exists():
            self.metrics_path.unlink()
        if resume_from_edits is None:
            (out_dir / WANDB_ID_FILE).unlink(missing_ok=True)  # a new run never continues an old id
        self.run = None
        mode = wandb_mode(cfg)
        if mode != "disabled":
            try:
                import wandb

                self.run = wandb.init(
                    project=cfg.project,
                    entity=cfg.entity,
                    group=cfg.group or group,
                    job_type=job_type,
                    name=run_name,
                    tags=[*tags, *cfg.tags],
                    config=config,
                    dir=str(out_dir),
                    mode=cast(Any, mode),
                    resume="allow",
                    id=wandb_run_id(out_dir, resume=resume_from_edits is not None),
                )
                # Every metric is plotted against the number of edits, not W&B's internal step,
                # so runs with different batch sizes line up in one panel.
                self.run.define_metric("n_edits")
                self.run.define_metric("*", step_metric="n_edits")
                self.run.define_metric("he/*", step_metric="n_edits", summary="last")
            except Exception as e:  # W&B must never cost a run
                log.warning(
                    "W&B disabled for this run (%s: %s); local files are still written", type(e).__name__, e
                )
                self.run = None

    def log(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, default=float) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            half = len(line) // 2
            f.write(line[:half])
            f.flush()
            kill_point("metrics.append")  # tests: a kill mid-line must not cost the run
            f.write(line[half:])
            f.flush()
            os.fsync(f.fileno())
        self._wandb(lambda run: run.log({k: v for k, v in row.items() if isinstance(v, int | float)}))

    def log_first(self, row: dict[str, Any]) -> None:
        """Write ``row`` as the first line of metrics.jsonl, in place of the unedited model's row if
        there is one (atomically: the file is rewritten), and mirror it to W&B. For an extended run
        (``sphere.run.extend``), whose unedited-model row is measured again after rows of later
        edit counts: readers that draw rows in file order then still start at 0 edits."""
        rest = [r for r in self.rows() if not is_pre_row(r)]
        text = "".join(json.dumps(r, default=float) + "\n" for r in [row, *rest])
        atomic_write_text(self.metrics_path, text)
        self._wandb(lambda run: run.log({k: v for k, v in row.items() if isinstance(v, int | float)}))

    def _wandb(self, call) -> None:
        """W&B is a mirror: if it raises, warn once and stop mirroring; the run goes on."""
        if self.run is None:
            return
        try:
            call(self.run)
        except Exception as e:  # noqa: BLE001 - any W&B failure, whatever its type
            log.warning("W&B failed (%s: %s); mirroring stops, local files continue", type(e).__name__, e)
            self.run = None

    def rows(self) -> list[dict[str, Any]]:
        """The rows logged so far; a last line cut short by a kill is ignored (``read_metrics``)."""
        return read_metrics(self.metrics_path)[0] if self.metrics_path.exists() else []

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.out_dir / SUMMARY_FILE, summary)
        flat = {k: v for k, v in summary.items() if isinstance(v, int | float)}
        flat.update(
            {f"pre/{k}": v for k, v in (summary.get("pre") or {}).items() if isinstance(v, int | float)}
        )
        self._wandb(lambda run: run.summary.update(flat))
        self._wandb(lambda run: run.log(self._tables(summary)))

    def _tables(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The final numbers as W&B tables (pre, post, ± per metric; HE per layer) and HE per layer
        against the number of edits as one multi-line chart: the run's comparison in one panel."""
        import wandb

        pre = summary.get("pre") or {}
        metrics = [
            [k, pre.get(k), v, summary.get(f"{k}_se")]
            for k, v in summary.items()
            if isinstance(v, int | float)
            and not isinstance(v, bool)
            and not k.endswith("_se")
            and k != "n_edits"
        ]
        he = summary.get("he") or {}
        he_rows = [
            [k, (summary.get("he_pre") or {}).get(k), v, (summary.get("he_change_pct") or {}).get(k)]
            for k, v in he.items()
        ]
        out: dict[str, Any] = {
            "final/metrics": wandb.Table(columns=["metric", "pre", "post", "se"], data=metrics),
            "final/he": wandb.Table(columns=["layer", "pre", "post", "change_pct"], data=he_rows),
        }
        rows = [r for r in self.rows() if any(k.startswith("he/") for k in r)]
        if rows and he:
            xs = [r["n_edits"] for r in rows]
            ys = [[r.get(f"he/layer_{k}", float("nan")) for r in rows] for k in he]
            out["he_per_layer"] = wandb.plot.line_series(
                xs=xs, ys=ys, keys=[f"layer {k}" for k in he], title="HE per layer", xname="n_edits"
            )
        return out

    def log_images(self, paths: list[Path]) -> None:
        """The run's figures (``plot_run``'s files) as W&B images, under ``figures/<file stem>``."""
        paths = [Path(p) for p in paths if Path(p).exists()]
        if not paths or self.run is None:
            return
        import wandb

        self._wandb(lambda run: run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in paths}))

    def log_artifact(self, kind: str, files: list[Path], *, metadata: dict[str, Any] | None = None) -> None:
        """``files`` (those that exist) as one W&B artifact of type ``kind``, named
        ``<kind>-<run id>`` so each run's artifact is its own (a resumed run adds a new version)."""
        files = [Path(f) for f in files if Path(f).is_file()]
        if not files or self.run is None:
            return

        def call(run) -> None:
            import wandb

            artifact = wandb.Artifact(f"{kind}-{run.id}", type=kind, metadata=metadata or {})
            for f in files:
                artifact.add_file(str(f), name=f.name)
            run.log_artifact(artifact)

        self._wandb(call)

    def finish(self) -> None:
        self._wandb(lambda run: run.finish())
        self.run = None


def wandb_run_id(out_dir: Path, *, resume: bool) -> str:
    """The W&B run id of the run in ``out_dir``: a new one for a new run, stored in the directory
    (``wandb_id``), and that stored one when the run continues, so W&B continues a run only when
    the run itself continues. (An id derived from the directory made a new run in a reused
    directory append to the old run's history.) A run directory from before the file existed
    continues under the id it was given then, the hash of its path."""
    import hashlib
    import secrets

    path = out_dir / WANDB_ID_FILE
    if resume:
        try:
            stored = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            stored = ""
        return stored or hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:12]
    new = secrets.token_hex(6)  # W&B ids: lowercase letters and digits
    atomic_write_text(path, new + "\n")
    return new
