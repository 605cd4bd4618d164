#!/usr/bin/env python
"""General ability of one model under the reference's and the strict scoring, side by side.

Answers the question of docs/general_ability.md, "Strict scoring": which scoring moves with a
small model's ability. The model is measured as loaded and again after a known amount of damage
(Gaussian noise of ``--noise`` × each row's RMS added to the MLP output projections of the model's
multi-layer edit layers, a stand-in for editing damage); a score that measures ability drops.

Example (SmolLM2-135M, one core, a few minutes):
    python scripts/general_scoring_check.py model=smollm2-135m --n-items 100 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from sphere.evaluation.config import EvalConfig, GeneralConfig
from sphere.evaluation.general import GeneralAbility
from sphere.evaluation.general_tasks import TASKS
from sphere.evaluation.registry import EvalView


def _damage(model, spec, layers: list[int], noise: float, seed: int) -> None:
    """Add noise × (row RMS) Gaussian noise to the edited MLP output projections, in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            w = model.get_submodule(spec.weight_name(layer).removesuffix(".weight")).weight
            rms = w.float().pow(2).mean(dim=1, keepdim=True).sqrt()
            w.add_((noise * rms * torch.randn(w.shape, generator=gen)).to(w.dtype))


def _table(results: dict[str, dict[str, float]]) -> str:
    cols = list(results)
    lines = ["| task | " + " | ".join(f"{c}: reference | {c}: strict" for c in cols) + " |"]
    lines.append("|---|" + "---:|---:|" * len(cols))
    for name in [*TASKS, "mean"]:
        cells = []
        for c in cols:
            ref, strict = results[c].get(f"general/{name}"), results[c].get(f"general/{name}_strict")
            invalid = results[c].get(f"general/{name}_invalid")
            ref_s = "–" if ref is None else f"{ref:.1f}" + (f" ({invalid:.0f} % inv.)" if invalid else "")
            cells += [ref_s, "–" if strict is None else f"{strict:.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", nargs="*", help="sphere-edit overrides for the model, e.g. model=smollm2-135m"
    )
    parser.add_argument("--n-items", type=int, default=100, help="items per task (bundled SPHERE sets: 100)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument(
        "--noise", type=float, default=0.5, help="damage: noise / row RMS (0: no damaged run)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from editors.core.model_spec import spec_for
    from sphere.models import load_model
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    s = validate(compose_config(["logger=none", *args.overrides]))
    model, tok = load_model(s.model)
    spec = spec_for(model)
    ev = GeneralAbility(
        EvalConfig(
            evaluators=["general"], general=GeneralConfig(tasks=args.tasks.split(","), n_items=args.n_items)
        )
    )
    view = EvalView(model, tok, spec, [], [], 0)
    results: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    results["unedited"] = ev("pre", view)
    print(f"unedited: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.noise > 0:
        _damage(model, spec, list(s.model.layers.multi), args.noise, s.run.seed)
        t0 = time.perf_counter()
        results[f"noise {args.noise}"] = ev("final", EvalView(model, tok, spec, [], [], 1))
        print(f"damaged: {time.perf_counter() - t0:.0f} s", flush=True)
    for key in sorted(results["unedited"]):
        print(key, *(f"{r.get(key, float('nan')):.2f}" for r in results.values()))
    print(_table(results))


if __name__ == "__main__":
    main()
