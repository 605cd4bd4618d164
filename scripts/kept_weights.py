#!/usr/bin/env python
"""What the weights runs kept (run.keep_at) say: Theorem 1, where the updates lie, the angular spread.

    python scripts/kept_weights.py outputs/sweeps/long_smollm2 [more runs or sweeps] \
        [--table bound|geometry|all] [--json docs/results/long_smollm2/kept_weights.json]

For every run under the given paths with kept/edits_0 (W₀) and later kept points, and every edited
layer, two Markdown tables (--json also writes every row, atomically):

- bound: the paper's Theorem 1, |ΔV| ≥ (ΔHE/K)². ΔHE, K, the bound, |ΔV| = ‖ΔW‖²_F (orthonormal
  inputs), whether it holds and by how much (slack = |ΔV| / bound); ‖∇HE‖_F / K (how loose the
  constant is against the exact gradient), the sharper bound from HE's gradient on the sphere, and
  the alignment |ΔHE| / (‖∇HE‖ ‖ΔŴ‖) that, with those two, accounts for the slack exactly.
  The terms and why they are read this way: sphere/method/bound.py.
- geometry: where the accumulated update lies, as the share of ‖ΔW‖²_F in span U(W₀) (the principal
  directions SPHERE projects away from, β = --beta) against r/c, a random update's share
  (sphere.method.projection.span_share); and the angular distribution in one number, the sd of the
  cosines between neurons before and its change (sphere.method.energy.cosine_spread).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sphere.files import atomic_write_json
from sphere.method.bound import bound_reference, check_bound
from sphere.method.energy import cosine_spread
from sphere.method.projection import principal_directions, span_share
from sphere.report.collect import find_run_dirs, identity, load_run
from sphere.run.rundir import kept_path, load_kept, saved_points


def rows_of(run_dir: Path, beta: float = 0.5) -> list[dict]:
    ident = identity(load_run(run_dir, str(run_dir)))  # from summary.json, or config.yaml while running
    points = [n for n, src in saved_points(run_dir).items() if src == "kept" and n > 0]
    if not points or not kept_path(run_dir, 0).is_file():
        return []
    w0 = load_kept(kept_path(run_dir, 0))
    directions = {layer: principal_directions(w, beta=beta) for layer, w in w0.items()}
    spread0 = {layer: cosine_spread(w) for layer, w in w0.items()}
    reference = {layer: bound_reference(w) for layer, w in w0.items()}  # once per layer, not per point
    rows = []
    for n in points:
        for layer, w in sorted(load_kept(kept_path(run_dir, n)).items()):
            c = check_bound(w0[layer], w, reference=reference[layer])
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


# (header, right-aligned, cell) of each table; every table starts with the run and point columns
_IDENT = [
    ("editor", False, lambda r: r["editor"]),
    ("SPHERE", False, _sphere),
    ("seed", True, lambda r: str(r["seed"])),
    ("edits", True, lambda r: str(r["n_edits"])),
    ("layer", True, lambda r: str(r["layer"])),
]
TABLES = {
    "bound": [
        ("ΔHE", True, lambda r: f"{r['d_he']:+.3g}"),
        ("K", True, lambda r: f"{r['K']:.3g}"),
        ("(ΔHE/K)²", True, lambda r: f"{r['bound']:.2e}"),
        ("‖ΔW‖²_F", True, lambda r: f"{r['dW_sq']:.3g}"),
        ("holds", False, lambda r: _yes(r["holds"])),
        ("slack", True, lambda r: f"{r['slack']:.2e}"),
        ("‖ΔŴ‖²_F", True, lambda r: f"{r['dW_unit_sq']:.3g}"),
        ("holds on Ŵ", False, lambda r: _yes(r["holds_unit"])),
        ("‖∇HE‖/K", True, lambda r: f"{r['grad_norm'] / r['K']:.2f}"),
        ("‖∇_S HE‖/K", True, lambda r: f"{r['grad_tangent_norm'] / r['K']:.2e}"),
        ("(ΔHE/‖∇_S HE‖)²", True, lambda r: f"{r['tangent_bound']:.2e}"),
        ("alignment", True, lambda r: f"{r['alignment']:.1e}"),
    ],
    "geometry": [
        ("ΔW in span U", True, lambda r: f"{r['span_share']:.3f}"),
        ("r/c", True, lambda r: f"{r['random_share']:.3f}"),
        ("sd(cos) of W₀", True, lambda r: f"{r['cos_sd0']:.4f}"),
        ("Δ sd(cos)", True, lambda r: f"{r['cos_sd'] - r['cos_sd0']:+.2e}"),
    ],
}


def table(rows: list[dict], which: str) -> str:
    cols = _IDENT + TABLES[which]
    lines = [
        "| " + " | ".join(h for h, _, _ in cols) + " |",
        "|" + "|".join("---:" if right else "---" for _, right, _ in cols) + "|",
    ]
    lines += ["| " + " | ".join(cell(r) for _, _, cell in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="run directories or sweeps holding them")
    ap.add_argument("--json", type=Path, help="also write every row here")
    ap.add_argument(
        "--table",
        choices=[*TABLES, "all"],
        default="all",
        help="bound: Theorem 1; geometry: span share, spread",
    )
    ap.add_argument(
        "--beta", type=float, default=0.5, help="β of the directions U(W₀) the update's share is measured in"
    )
    args = ap.parse_args(argv)
    rows = [r for run in find_run_dirs(args.paths) for r in rows_of(run, args.beta)]
    if not rows:
        sys.exit("error: no run with kept/edits_0 and a later kept point; edit with run.keep_at=[...]")
    for which in TABLES if args.table == "all" else [args.table]:
        print(table(rows, which) + "\n")
    held = sum(r["holds"] for r in rows)
    print(f"Theorem 1's bound holds for {held} of {len(rows)} (run, edits, layer) points")
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
