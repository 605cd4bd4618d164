"""Does more HE drift go with worse editing? Correlations that respect the design.

The points are (run, number of edits) pairs: every evaluation point of every run. Pooling them
and testing Pearson's r as if they were independent (the paper's statistic; 6 points × 12 runs
"n = 72") makes two mistakes: HE change and edit quality both drift with the number of edits, so
much of r is that shared trend; and the points of one run are not independent, so the p-value is
far too small. Here:

- both variables are centred within evaluation points: per (block, number of edits), asking
  whether the run that drifted more *at the same length* edits worse ("across settings"), or per
  (setting, number of edits), asking it among the seeds of one setting ("within setting");
- inference treats the run as the unit: (a) a permutation test that reassigns whole runs'
  quality trajectories to other runs' HE trajectories within the stratum (block, or setting),
  exact when the permutations are few, else 9,999 seeded draws; (b) one value per run (the mean
  of its centred points), correlated over runs with df = runs − strata − 1;
- every headline metric is reported, not one chosen; the pooled r is shown, labelled descriptive.

x is the mean over edited layers of the per-layer |ΔHE| (``he_abs_change_pct``), the run's HE
headline (``collect.he_summaries``).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from sphere.evaluation.catalogue import headline
from sphere.evaluation.he import HE_ABS

_PERMUTATIONS = 9_999
_EXACT_MAX = 10_000  # enumerate every permutation when there are at most this many

CENTRINGS = {
    "across settings": "block",  # centred per (block, n): compare runs of any setting at equal length
    "within setting": "setting_id",  # centred per (setting, n): compare seeds of one setting
}


def points(curves: pd.DataFrame, metric: str, x: str = HE_ABS) -> pd.DataFrame:
    """One row per (run, number of edits > 0) where both ``x`` and ``metric`` were measured:
    run_id, setting_id, block, n_edits_done, x, y."""
    sub = curves[curves["metric"].isin([x, metric]) & (curves["n_edits_done"] > 0)]
    if sub.empty:
        return pd.DataFrame(columns=["run_id", "setting_id", "block", "n_edits_done", "x", "y"])
    wide = sub.pivot_table(
        index=["run_id", "setting_id", "n_edits_done"], columns="metric", values="value", aggfunc="last"
    ).reset_index()
    if x not in wide or metric not in wide:
        return pd.DataFrame(columns=["run_id", "setting_id", "block", "n_edits_done", "x", "y"])
    wide = wide.dropna(subset=[x, metric]).rename(columns={x: "x", metric: "y"})
    return wide[["run_id", "setting_id", "n_edits_done", "x", "y"]]


def within_group_correlation(x: pd.Series, y: pd.Series, groups: pd.Series) -> tuple[float, float, int]:
    """Pearson's r of x and y after removing each group's mean, its two-sided p, and the residual df.

    Why: HE change and edit quality both drift with the number of edits, so a pooled correlation over
    (run, number of edits) points is partly that shared trend. Centring within each number of edits
    asks the paper's question at fixed length: does the run whose HE drifted more edit worse? This is
    the partial correlation given one dummy per group; df = n − groups − 1 (one more per group mean
    than a plain r). (nan, nan, df) when df < 1 or a centred variable is constant.
    """
    frame = pd.DataFrame({"x": x.to_numpy(float), "y": y.to_numpy(float), "g": groups.to_numpy()})
    centred = frame[["x", "y"]] - frame.groupby("g")[["x", "y"]].transform("mean")
    df = len(frame) - frame["g"].nunique() - 1
    sx, sy = float((centred["x"] ** 2).sum()), float((centred["y"] ** 2).sum())
    if df < 1 or sx == 0 or sy == 0:
        return math.nan, math.nan, df
    r = float((centred["x"] * centred["y"]).sum()) / math.sqrt(sx * sy)
    r = max(-1.0, min(1.0, r))
    t = r * math.sqrt(df / max(1.0 - r * r, 1e-300))
    return r, float(2 * sps.t.sf(abs(t), df)), df


def _r(x: np.ndarray, y: np.ndarray) -> float:
    sx, sy = float((x * x).sum()), float((y * y).sum())
    return float((x * y).sum()) / math.sqrt(sx * sy) if sx > 0 and sy > 0 else math.nan


def run_permutation_p(frame: pd.DataFrame, stratum: str, seed: int = 0) -> tuple[float, int]:
    """(two-sided p, permutations used) of r(cx, cy) when whole runs' cy trajectories are permuted
    among the runs of each stratum. ``frame``: run_id, n_edits_done, cx, cy and the stratum column;
    a run's trajectory moves as a whole, matched by number of edits (points another run lacks drop)."""
    observed = _r(frame["cx"].to_numpy(), frame["cy"].to_numpy())
    if math.isnan(observed):
        return math.nan, 0
    strata = {s: sorted(g["run_id"].unique()) for s, g in frame.groupby(stratum)}
    y_of = {(r, n): v for r, n, v in zip(frame["run_id"], frame["n_edits_done"], frame["cy"])}
    xs = list(zip(frame["run_id"], frame["n_edits_done"], frame["cx"]))

    def r_for(mapping: dict[str, str]) -> float:
        pairs = [(x, y_of[(mapping[r], n)]) for r, n, x in xs if (mapping[r], n) in y_of]
        if len(pairs) < 3:
            return math.nan
        a = np.array(pairs)
        return _r(a[:, 0], a[:, 1])

    total = math.prod(math.factorial(len(r)) for r in strata.values())
    tol = 1e-12
    if total <= _EXACT_MAX:
        hits = 0
        for combo in itertools.product(*(itertools.permutations(r) for r in strata.values())):
            mapping = {a: b for runs, perm in zip(strata.values(), combo) for a, b in zip(runs, perm)}
            r = r_for(mapping)
            hits += int(not math.isnan(r) and abs(r) >= abs(observed) - tol)
        return hits / total, total
    rng = random.Random(seed)
    hits = 0
    for _ in range(_PERMUTATIONS):
        mapping = {}
        for runs in strata.values():
            perm = list(runs)
            rng.shuffle(perm)
            mapping.update(zip(runs, perm))
        r = r_for(mapping)
        hits += int(not math.isnan(r) and abs(r) >= abs(observed) - tol)
    return (hits + 1) / (_PERMUTATIONS + 1), _PERMUTATIONS


def correlate(pts: pd.DataFrame, stratum: str) -> dict[str, float]:
    """The statistics of one metric under one centring (see the module docstring)."""
    frame = pts.copy()
    group = [stratum, "n_edits_done"]
    frame["cx"] = frame["x"] - frame.groupby(group)["x"].transform("mean")
    frame["cy"] = frame["y"] - frame.groupby(group)["y"].transform("mean")
    r_within = _r(frame["cx"].to_numpy(), frame["cy"].to_numpy())
    p_perm, n_perm = run_permutation_p(frame, stratum)
    per_run = frame.groupby(["run_id", stratum], as_index=False)[["cx", "cy"]].mean()
    r_runs, p_runs, df_runs = within_group_correlation(per_run["cx"], per_run["cy"], per_run[stratum])
    pooled = _r((frame["x"] - frame["x"].mean()).to_numpy(), (frame["y"] - frame["y"].mean()).to_numpy())
    return {
        "n_runs": int(frame["run_id"].nunique()),
        "n_points": len(frame),
        "r_pooled": pooled,
        "r_within": r_within,
        "p_runs_permuted": p_perm,
        "permutations": n_perm,
        "r_per_run": r_runs,
        "p_per_run": p_runs,
        "df_per_run": df_runs,
    }


def correlation_table(
    runs: pd.DataFrame, curves: pd.DataFrame, metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per block, centring and headline metric that has points in at least three runs."""
    metrics = headline() if metrics is None else metrics
    rows = []
    block_of = runs.drop_duplicates("run_id").set_index("run_id")["block"]
    for metric in metrics:
        pts = points(curves, metric)
        if pts.empty:
            continue
        pts = pts.assign(block=pts["run_id"].map(block_of))
        for block, in_block in pts.groupby("block", sort=False):
            if in_block["run_id"].nunique() < 3:
                continue
            for centring, stratum in CENTRINGS.items():
                if in_block.groupby(stratum)["run_id"].nunique().max() < 2:
                    continue  # no stratum has two runs to compare
                rows.append(
                    {"block": block, "centring": centring, "metric": metric, **correlate(in_block, stratum)}
                )
    cols = ["block", "centring", "metric", "n_runs", "n_points", "r_pooled", "r_within", "p_runs_permuted",
            "permutations", "r_per_run", "p_per_run", "df_per_run"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)
