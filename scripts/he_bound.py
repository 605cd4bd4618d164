#!/usr/bin/env python
"""Evaluate the paper's Theorem 1, |ΔV| ≥ (ΔHE/K)², on the weights runs kept (run.keep_at).

    python scripts/he_bound.py outputs/sweeps/long_smollm2/<date>/<time> [more runs or sweeps] \
        [--json docs/results/long_smollm2/he_bound.json]

For every run under the given paths with kept/edits_0 (W₀) and later kept points, and every edited
layer: ΔHE, K, the bound, |ΔV| = ‖ΔW‖²_F (orthonormal inputs), whether it holds, by how much
(slack = |ΔV| / bound), and ‖∇HE‖_F / K (how loose the theorem's constant is against the exact
gradient), the sharper bound from the gradient on the sphere ‖∇_S HE‖, and the alignment |ΔHE|/(‖∇HE‖‖ΔŴ‖) that, with those two, accounts for the slack.
Beside the bound, where the accumulated update lies: the share of ‖ΔW‖²_F in span U(W₀),
the principal directions SPHERE projects away from (β = --beta), against r/c, the share a random
update would have; and the change of the sd of the cosines between neurons (the angular
distribution in one number, sphere.method.energy.cosine_spread). Prints a Markdown table; --json also writes every row (atomically). The terms
and why they are read this way: sphere/method/bound.py, sphere.method.projection.span_share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sphere.io import atomic_write_json
from sphere.method.bound import check_bound
from sphere.method.energy import cosine_spread
from sphere.method.projection import principal_directions, span_share
from sphere.report.collect import find_run_dirs, identity, load_run
from sphere.run.saved import kept_path, load_kept, saved_points


def rows_of(run_dir: Path, beta: float = 0.5) -> list[dict]:
    ident = identity(load_run(run_dir, str(run_dir)))  # from summary.json, or config.yaml while running
    points = [n for n, src in saved_points(run_dir).items() if src == "kept" and n > 0]
    if not points or not kept_path(run_dir, 0).is_file():
        return []
    w0 = load_kept(kept_path(run_dir, 0))
    directions = {layer: principal_directions(w, beta=beta) for layer, w in w0.items()}
    spread0 = {layer: cosine_spread(w) for layer, w in w0.items()}
    rows = []
    for n in points:
        for layer, w in sorted(load_kept(kept_path(run_dir, n)).items()):
            c = check_bound(w0[layer], w)
            pd = directions[layer]
            rows.append(
                {
                    "run": str(run_dir),
                    "editor": ident["editor"],
                    "sphere": ident["sphere"],
                    "alpha": ident["alpha"],
                    "seed": ident["seed"],
                    "n_edits": n,
                    "layer": layer,
                    **c.as_dict(),
                    "span_share": span_share(w.double() - w0[layer].double(), pd.U),
                    "random_share": pd.r / pd.U.shape[0],
                    "cos_sd0": spread0[layer],
                    "cos_sd": cosine_spread(w),
                }
            )
    return rows


def _sphere(row: dict) -> str:
    return f"α = {row['alpha']}" if row["sphere"] else "off"


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def table(rows: list[dict]) -> str:
    head = (
        "| editor | SPHERE | seed | edits | layer | ΔHE | K | (ΔHE/K)² | ‖ΔW‖²_F | holds | slack |"
        " ‖ΔŴ‖²_F | holds on Ŵ | ‖∇HE‖/K | ‖∇_S HE‖/K | (ΔHE/‖∇_S HE‖)² | alignment | ΔW in span U | r/c | Δ sd(cos) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['editor']} | {_sphere(r)} | {r['seed']} | {r['n_edits']} | {r['layer']} "
            f"| {r['d_he']:+.3g} | {r['K']:.3g} | {r['bound']:.2e} | {r['dW_sq']:.3g} "
            f"| {_yes(r['holds'])} | {r['slack']:.2e} | {r['dW_unit_sq']:.3g} | {_yes(r['holds_unit'])} "
            f"| {r['grad_norm'] / r['K']:.2f} | {r['grad_tangent_norm'] / r['K']:.2e} "
            f"| {r['tangent_bound']:.2e} | {r['alignment']:.1e} | {r['span_share']:.3f} | {r['random_share']:.3f} | {r['cos_sd'] - r['cos_sd0']:+.2e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="run directories or sweeps holding them")
    ap.add_argument("--json", type=Path, help="also write every row here")
    ap.add_argument(
        "--beta", type=float, default=0.5, help="β of the directions U(W₀) the update's share is measured in"
    )
    args = ap.parse_args(argv)
    rows = [r for run in find_run_dirs(args.paths) for r in rows_of(run, args.beta)]
    if not rows:
        sys.exit("error: no run with kept/edits_0 and a later kept point; edit with run.keep_at=[...]")
    print(table(rows))
    held = sum(r["holds"] for r in rows)
    print(f"\nthe bound holds for {held} of {len(rows)} (run, edits, layer) points")
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
