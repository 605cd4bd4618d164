"""``sphere-covariance``: the key covariance C for later runs, on one process or data-parallel under torchrun.

    torchrun --nproc-per-node 8 -m sphere.covariance model=llama3-8b model.covariance.corpus=wikipedia \\
        model.covariance.n_samples=100000
    python -m sphere.covariance model=smollm2-135m          # one process; `sphere-covariance` is the same
    sphere-covariance --force model=tiny-llama              # recompute layers already cached

Overrides are ``sphere-edit``'s; the files land in ``run.cache_dir`` under the key a ``sphere-edit``
with the same model, ``model.covariance``, ``run.seed`` and ``editor.layers`` reads (docs/distributed.md).

The command lives here, below ``sphere.cli``, because ``python -m sphere.covariance`` (and
``torchrun -m sphere.covariance``) runs it and a lower layer never imports ``sphere.cli``;
``sphere.cli.covariance`` names it for the ``sphere-covariance`` console script (``sphere-stats``,
its old name, is ``sphere.cli.stats``: an alias that warns).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sphere-covariance", description=__doc__.splitlines()[0])
    p.add_argument(
        "overrides", nargs="*", help="sphere-edit's key=value overrides (model=..., model.covariance.*)"
    )
    p.add_argument("--force", action="store_true", help="recompute layers whose statistics are cached")
    args = p.parse_intermixed_args(argv)
    from sphere.covariance import Ranks, precompute_covariance

    ranks = Ranks.from_env()
    logging.basicConfig(
        level=logging.INFO if ranks.rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s %(name)s{f' [rank {ranks.rank}]' if ranks.distributed else ''}: "
        "%(message)s",
    )
    from hydra.errors import HydraException

    from sphere.errors import ConfigError
    from sphere.files import CorruptFileError

    bad = [o for o in args.overrides if "=" not in o]
    try:
        if bad:
            raise ConfigError(f"{bad[0]!r} is not key=value")
        result = precompute_covariance(args.overrides, force=args.force, ranks=ranks)
    except (ConfigError, HydraException) as e:
        print(f"sphere-covariance: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, CorruptFileError) as e:
        print(f"sphere-covariance: {e}", file=sys.stderr)
        return 1
    if ranks.rank != 0:
        return 0
    if result.cached:
        print(f"already cached (layers {result.cached}; --force recomputes)")
    if result.written:
        s = max(result.seconds, 1e-9)
        print(
            f"key statistics of layers {sorted(result.written)}: {result.texts} texts, {result.tokens} tokens "
            f"in {result.seconds:.1f} s on {result.world} process(es) ({result.device}): "
            f"{result.texts / s:.1f} texts/s, {result.tokens / s:.0f} tokens/s"
        )
        for layer, path in sorted(result.written.items()):
            print(f"written: {path}  (layer {layer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
