"""``sphere-edit``: sequential knowledge editing from the command line (a Hydra main).

    sphere-edit model=llama3-8b editor=memit sphere=on dataset=counterfact dataset.limit=2000 \\
        dataset.batch_size=100 sphere.alpha=0.8 sphere.beta=0.5
    sphere-edit --describe editor=alphaedit model=llama3-8b    # every knob: value, default, help
    sphere-edit model=llama3-8b editor=alphaedit run.plan=true  # memory, disk, fits? nothing loaded

Writes into the Hydra run directory: config.yaml (resolved), metrics.jsonl, summary.json,
summary.txt, plots and checkpoint/ (edited layers only). The work is ``sphere.api.run_config``;
this file only maps failures to one-line messages and exit codes (2: configuration, 3: does not
fit or out of memory, 4: disk full, 1: other failures).
"""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sphere.errors import ConfigError
from sphere.run.schema import CONFIG_DIR, register_schemas

log = logging.getLogger("sphere")

# What to change when an edit goes numerically wrong or does not fit: the one place where failures
# are translated into config keys (editors and the runner raise neutral errors).
NON_FINITE_HINT = (
    "lower editor.v_lr, raise editor.mom2_update_weight (MEMIT family) or editor.L2 (AlphaEdit), "
    "or keep editor.solver_dtype=float64"
)
OOM_HINT = (
    "lower dataset.batch_size, run.forward_batch_size or model.stats.batch_size, or use model.dtype=bfloat16"
)


@hydra.main(config_path=CONFIG_DIR, config_name="edit", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from editors.core.weights import NonFiniteUpdateError
    from sphere.api import run_config
    from sphere.io import CorruptFileError
    from sphere.run.plan import DoesNotFitError

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_config(cfg, out_dir)
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
            f"intact: free space and continue with run.resume=true hydra.run.dir={out_dir}",
            4,
        )
    except Exception as e:
        if type(e).__name__ == "OutOfMemoryError":
            _fail(f"out of memory; {OOM_HINT}", 3)
        raise


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
    if "--describe" in sys.argv[1:]:
        from sphere.cli.describe import describe_main

        sys.exit(describe_main([a for a in sys.argv[1:] if a != "--describe"]))
    _main()


if __name__ == "__main__":
    main()
