"""``sphere-edit``: sequential knowledge editing from the command line (a Hydra main).

    sphere-edit model=llama3-8b editor=memit sphere=on dataset=counterfact dataset.limit=2000 \\
        dataset.batch_size=100 sphere.alpha=0.8 sphere.beta=0.5
    sphere-edit --describe editor=alphaedit model=llama3-8b    # every knob: value, default, help
    sphere-edit model=llama3-8b editor=alphaedit run.plan=true  # memory, disk, fits? nothing loaded

Writes into the Hydra run directory: config.yaml (resolved), metrics.jsonl, summary.json,
summary.txt, plots and checkpoint/ (edited layers only). The work is ``sphere.api.run_config``;
this file only maps failures to one-line messages and exit codes (2: configuration, 3: does not
fit or out of memory, 4: disk full, 1: other failures). Hydra's own errors (a mistyped group option
or key, a value of the wrong type) are raised, not printed, and worded by ``sphere.cli.overrides``.
A single ``run.plan=true`` run is composed without Hydra's run machinery: it creates no directory.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sphere.errors import ConfigError
from sphere.extras import check_launcher, check_sweeper
from sphere.run.compose import CONFIG_DIR, register_schemas

log = logging.getLogger("sphere")
T = TypeVar("T")

# What to change when an edit goes numerically wrong or does not fit: the one place where failures
# are translated into config keys (editors and the runner raise neutral errors).
NON_FINITE_HINT = (
    "lower editor.v_lr, raise editor.mom2_update_weight (MEMIT family) or editor.L2 (AlphaEdit), "
    "or keep editor.solver_dtype=float64"
)
OOM_HINT = (
    "lower dataset.batch_size, run.forward_batch_size or model.covariance.batch_size, "
    "or use model.dtype=bfloat16"
)


@hydra.main(config_path=CONFIG_DIR, config_name="edit", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    """The Hydra task. Its return value is what a search sweeper (``hydra/sweeper=optuna``)
    optimises: ``run.objective``'s value in the summary, or None when that is null."""
    from sphere.api import run_config
    from sphere.run.experiment import objective

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    return _reported(lambda: objective(cfg, run_config(cfg, out_dir)), out_dir)


def _reported(call: Callable[[], T], out_dir: Path | None) -> T | None:
    """Run ``call``, mapping the project's failures to one line and an exit code (module docstring);
    returns what ``call`` returns."""
    from editors.core.weights import NonFiniteUpdateError
    from sphere.files import CorruptFileError
    from sphere.run.plan import DoesNotFitError

    try:
        return call()
    except DoesNotFitError as e:
        print(e.table, file=sys.stderr)
        _fail(str(e), 3)
    except ConfigError as e:
        _fail(f"config error: {e}", 2)
    except NonFiniteUpdateError as e:
        _fail(f"{e}; {NON_FINITE_HINT}", 1)
    except CorruptFileError as e:
        _fail(str(e), 1)
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        _fail(f"{type(e).__name__}: {e}", 1)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        _fail(
            f"no space left on the device writing {e.filename or 'an output'}; the last checkpoint is "
            f"intact: free space and run the same command again (hydra.run.dir={out_dir})",
            4,
        )
    except Exception as e:
        if type(e).__name__ == "OutOfMemoryError":
            _fail(f"out of memory; {OOM_HINT}", 3)
        raise
    return None  # not reached: _fail exits or raises


def _plan(overrides: list[str]) -> None:
    """``run.plan=true`` in a single run, composed without Hydra's run machinery: Hydra creates
    the run directory (and .hydra/ in it) before the job starts, and a plan writes nothing."""
    from sphere.run.compose import compose_config
    from sphere.run.experiment import plan_config

    cfg = compose_config(overrides)
    _reported(lambda: plan_config(cfg), None)


class JobFailed(Exception):
    """One job of a multirun failed: Hydra records it (the sweep index marks it failed) and runs
    the other jobs; the multirun exits non-zero at the end."""


def _fail(message: str, code: int) -> None:
    print(f"sphere-edit: {message}", file=sys.stderr)
    if HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
        raise JobFailed(message)
    sys.exit(code)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    register_schemas()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sphere.cli.overrides import (
        check_overrides,
        command_overrides,
        hydra_raises,
        one_line,
        plan_requested,
    )

    argv = sys.argv[1:]
    user_full_error = bool(os.environ.get("HYDRA_FULL_ERROR"))  # then Hydra's own report is wanted
    try:
        if "--describe" in argv:
            from sphere.cli.describe import describe_main

            with hydra_raises():
                sys.exit(describe_main([a for a in argv if a != "--describe"]))
        overrides = command_overrides(argv)
        check_launcher(overrides)  # a submitit launcher without the slurm extra: one line, exit 2
        check_sweeper(overrides)  # the Optuna sweeper (or a preset that uses it) without the optuna extra
        check_overrides(overrides)
        with hydra_raises():
            if plan_requested(overrides) and not {"-m", "--multirun"} & set(argv) and _runs(argv):
                _plan(overrides)
            else:
                _main()
    except JobFailed:
        sys.exit(1)  # a multirun with a failed job: each failure printed its line when it failed
    except ConfigError as e:
        print(f"sphere-edit: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException) as e:
        if user_full_error:
            raise
        print(f"sphere-edit: config error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


def _runs(argv: list[str]) -> bool:
    """Whether the command line runs the task (not --help, --cfg, --info ...)."""
    return not any(a.startswith("-") for a in argv)


if __name__ == "__main__":
    main()
