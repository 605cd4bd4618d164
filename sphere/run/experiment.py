"""One experiment from a validated config: records, model, run, tracker, summary (and the figures
its caller draws: the run layer draws nothing itself)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from sphere.errors import ConfigError
from sphere.files import atomic_write_text
from sphere.run.build import edit_stream
from sphere.run.config import Settings, validate
from sphere.run.identity import Decision, clear_outputs, decide
from sphere.run.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    OUTCOMES_FILE,
    PATCH_FILE,
    SUMMARY_FILE,
    format_summary,
    load_checkpoint,
    read_summary,
    write_summary_text,
)

# Draws a run's figures from its directory and returns their files (the report's ``plot_run``).
DrawFigures = Callable[[Path], list[Path]]

log = logging.getLogger(__name__)


def run_experiment(cfg: DictConfig, out_dir: Path, draw: DrawFigures | None = None) -> dict[str, Any]:
    """Validate, load, edit, evaluate; returns the summary (also written to ``out_dir``).

    ``draw``: with ``run.plots``, called on ``out_dir`` once summary.txt is written and before the
    W&B run is finished, so that its figures go into the run as images; ``sphere.api.run_config``
    passes the report's ``plot_run``. Without it no figures are drawn (the run layer draws nothing).

    With ``run.plan`` only the memory and disk plan is printed (nothing is loaded or written); a
    real run checks the same plan before loading the model (``run.plan_check``). With
    ``run.prepare`` the model is loaded and the editor set up (filling the caches), and nothing more.
    What happens to a run already in ``out_dir`` (continue it, skip it as finished, refuse it as
    another configuration's, start over) is ``run.resume``'s policy, ``sphere.run.identity``.
    """
    import torch

    from sphere.data import check_tokenizable
    from sphere.models import load_model, model_id
    from sphere.run.patch import save_run_patch
    from sphere.run.runner import SequentialRun
    from sphere.run.tracking import Tracker

    s: Settings = validate(cfg)
    if s.run.plan:
        return _print_plan(s)
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    # Decided before anything is loaded: a run directory of another configuration is refused here.
    decision = None if s.run.prepare else _decide(s, out_dir, config_text)
    if decision is not None and decision.action == "finished":  # summary.json is written last
        summary = read_summary(out_dir)
        print(f"\n{format_summary(summary)}\nrun directory: {out_dir} (finished earlier; not re-run)")
        return summary
    records = edit_stream(s)
    if s.run.plan_check:
        _check_plan(s, len(records))
    if decision is not None and decision.action == "extend":
        _extend(s, out_dir, records)  # checked first: a run that cannot be extended is left as it was
    if decision is not None:
        if decision.clear:
            log.info("starting over in %s (%s): its previous outputs are deleted", out_dir, decision.why)
            clear_outputs(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / CONFIG_FILE, config_text)
    torch.manual_seed(s.run.seed)
    model, tok = load_model(s.model, s.run.cache_dir)
    check_tokenizable(records, tok, source=s.dataset.path)  # empty targets fail here, not mid-run
    runner = SequentialRun(s, model, tok, model_id(s.model), records, out_dir)
    if s.run.prepare:
        start = time.monotonic()
        runner.editor.setup()  # statistics, templates, projectors: what the first batch would compute
        print(
            f"prepared {s.model.name} for {s.editor_name} in {time.monotonic() - start:.0f} s "
            f"(cache: {s.run.cache_dir}); nothing was edited"
        )
        return {"prepared": True}
    state = None
    if decision is not None and decision.action in ("resume", "extend"):
        state = load_checkpoint(out_dir / CHECKPOINT_DIR)  # decide() saw it; a damaged one raises
        if state is not None:
            n = int(state["progress"]["n_edits"])
            if decision.action == "extend":
                log.info("extending %s after %d edits to %d (%s)", out_dir, n, len(records), decision.why)
            else:
                log.info("resuming from %s after %d edits (same configuration)", out_dir, n)
    job = f"{s.editor_name}{'+sphere' if s.sphere.enabled else ''}"
    sweep = _hydra_sweep()
    tracker = Tracker(
        out_dir,
        s.logger,
        run_name=run_name(s, sweep),
        job_type=job,  # baseline vs +SPHERE: W&B groups and colours runs by it
        # One group per sweep, so its runs compare at a glance; a single run groups by setting.
        group=sweep["group"]
        if sweep
        else f"{s.model.name}-{s.dataset.kind}-{len(records)}x{s.dataset.batch_size}",
        tags=[
            s.model.name,
            s.editor_name,
            "sphere" if s.sphere.enabled else "base",
            s.dataset.kind,
            *([sweep["preset"]] if sweep and sweep["preset"] else []),
        ],
        config={
            **cast(dict, OmegaConf.to_container(cfg, resolve=True)),
            **(sweep["config"] if sweep else {}),
        },
        resume_from_edits=None if state is None else int(state["progress"]["n_edits"]),
    )
    try:
        summary = runner.run(tracker, state)
        if records.skipped:
            summary["skipped_records"] = records.skipped
        tracker.write_summary(summary)
        text = write_summary_text(out_dir, summary)
        # Drawn before the W&B run is finished, so that the figures go into it as images.
        tracker.log_images(draw(out_dir) if s.run.plots and draw is not None else [])
        tracker.log_artifact("run", [out_dir / f for f in RUN_ARTIFACT_FILES])
        if s.logger.log_patch and tracker.run is not None:
            patch = save_run_patch(runner, out_dir / PATCH_FILE, int(summary["n_edits"]))
            tracker.log_artifact("patch", [patch], metadata={"n_edits": summary["n_edits"]})
    finally:
        tracker.finish()
    print("\n" + text + f"\nrun directory: {out_dir}")
    return summary


# The run's small files, uploaded as one W&B artifact at the end (the checkpoint is not: too big).
RUN_ARTIFACT_FILES = (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, OUTCOMES_FILE)


def run_name(s: Settings, sweep: dict[str, Any] | None) -> str:
    """The W&B run name: the preset, the job's swept values (each key's last component, editor and
    sphere always) and the seed, e.g. ``table1_llama3 editor=memit sphere=on alpha=0.8 seed=1``;
    unique within a sweep, since jobs differ in their swept values."""
    swept = dict(sweep["swept"]) if sweep else {}
    parts = [sweep["preset"] if sweep and sweep["preset"] else s.model.name]
    shown: dict[str, str] = {"editor": s.editor_name, "sphere": "on" if s.sphere.enabled else "off"}
    for key, value in swept.items():
        if key in ("editor", "sphere", "run.seed") or not _shown_in_name(key, value):
            continue
        short = key.rsplit(".", 1)[-1]
        shown[short if short not in shown else key] = value
    parts += [f"{k}={v}" for k, v in shown.items()]
    return " ".join([*parts, f"seed={s.run.seed}"])


def _shown_in_name(key: str, value: str) -> bool:
    """Overrides that say what a job computes (not paths, Hydra, W&B or resume settings)."""
    from sphere.run.sweep import NOT_IN_NAME

    return not f"{key}=".startswith(NOT_IN_NAME) and "/" not in value and key != "run.objective"


def objective(cfg: DictConfig, result: dict[str, Any]) -> float | None:
    """``run.objective``'s value in the run's summary, returned by the Hydra task for a search
    sweeper to optimise; None when no objective is asked for (or for a plan or prepare run)."""
    key = OmegaConf.select(cfg, "run.objective")
    if key is None or "plan" in result or "prepared" in result:
        return None
    value = result.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        numeric = sorted(
            k for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)
        )
        raise ConfigError(f"run.objective={key} is not a number of the summary; one of: {', '.join(numeric)}")
    return float(value)


def _extend(s: Settings, out_dir: Path, records) -> None:
    """Check that the run in ``out_dir`` continues exactly as the longer ``s`` (``check_extension``),
    then archive it and make its directory the longer run's (``start_extension``)."""
    import yaml

    from sphere.run.checkpoint import read_progress
    from sphere.run.extend import check_extension, start_extension

    old_config = yaml.safe_load((out_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    progress = read_progress(out_dir / CHECKPOINT_DIR)
    if progress is None:  # decide() saw one: removed since
        raise ConfigError(f"{out_dir} has no checkpoint to extend the run from")
    check_extension(s, records, old_config, progress)
    start_extension(out_dir, progress)


def _decide(s: Settings, out_dir: Path, config_text: str) -> Decision:
    """``run.resume`` applied to ``out_dir`` (sphere/run/identity.py); raises ConfigError for a
    directory that holds another configuration's run."""
    import yaml

    sweep = _hydra_sweep() is not None
    return decide(
        out_dir,
        yaml.safe_load(config_text),  # read back like the stored config.yaml, so types compare alike
        s.run.resume,
        in_sweep=sweep,
        dir_key="hydra.sweep.dir" if sweep else "hydra.run.dir",
    )


def plan_config(cfg: DictConfig) -> dict[str, Any]:
    """``run.plan=true`` outside Hydra's run machinery (``sphere-edit`` calls it for a single run,
    so that no run directory is created): validate and print the plan."""
    return _print_plan(validate(cfg))


def _print_plan(s: Settings) -> dict[str, Any]:
    """``run.plan=true``: the plan, printed; nothing is loaded or written."""
    from sphere.run.plan import make_plan

    plan = make_plan(s)
    print(plan.table())
    return {"plan": plan.to_dict()}


def _check_plan(s: Settings, n_edits: int) -> None:
    """Before loading the model: stop a run that clearly cannot fit (raises DoesNotFitError).

    A plan that cannot be made (the model's config is unreadable) is only a warning: loading the
    model reports that problem with its own message.
    """
    from sphere.run.plan import PlanUnavailable, check_fits, make_plan

    try:
        plan = make_plan(s, n_edits=n_edits)  # settings the model refutes raise ConfigError here
    except PlanUnavailable as e:
        log.warning("no memory plan: %s", e)
        return
    check_fits(plan)
    place = "host" if plan.on_cpu else "device"
    log.info(
        "plan: peak %s memory %.1f GiB, host %.1f GiB, disk %.1f GiB (run.plan=true prints the table)",
        "cpu" if plan.on_cpu else plan.device,
        plan.peak(place)[0] / 2**30,
        plan.peak_host / 2**30,
        plan.disk / 2**30,
    )


def _hydra_sweep() -> dict[str, Any] | None:
    """In a Hydra multirun: the W&B group (the preset and the sweep directory), the preset
    (``+experiment=...``), the job's overrides (``swept``) and the same as config columns
    (``swept/<key>``); None for a single run or outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    swept = {k.lstrip("+~"): v for k, v in (o.split("=", 1) for o in hc.overrides.task if "=" in o)}
    preset = swept.pop("experiment", None)
    return {
        # The preset and the sweep directory's date and time: one group per invocation of a preset.
        "group": f"{preset or 'sweep'}-" + "_".join(Path(hc.sweep.dir).parts[-2:]),
        "preset": preset,
        "swept": swept,
        "config": {
            **{f"swept/{k}": v for k, v in swept.items()},
            **({"swept/experiment": preset} if preset else {}),
        },
    }
