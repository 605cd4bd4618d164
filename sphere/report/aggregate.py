"""Aggregation over seeds: mean, standard deviation, n and the 95 % confidence interval of each
metric per setting (final values) and per setting and number of edits (curves).

The interval is Student's t: half-width = t(0.975, n−1)·sd/√n with the sample standard deviation
(ddof = 1), the right interval for a mean over a handful of seeds (a normal 1.96 would be far too
narrow at n = 2 or 3). With one seed there is no interval over seeds: the report then shows the
run's per-case standard error (``m_se`` in summary.json) and says so, rather than a fake ± 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from scipy import stats as sps

from sphere.report.collect import SETTING_COLS

# How the ± of an aggregated value was obtained (shown by markers in tables and in the HTML).
CI95 = "ci95"  # over seeds, Student's t
SE = "se"  # one seed: the run's per-case standard error
NONE = ""  # nothing to show (one seed, no SE recorded)


@dataclass(frozen=True)
class Stat:
    mean: float
    sd: float
    n: int
    ci: float  # 95 % half-width; NaN when n < 2


def t_halfwidth(sd: float, n: int, level: float = 0.95) -> float:
    """Half-width of the two-sided ``level`` Student-t interval of a mean of ``n`` values."""
    if n < 2 or math.isnan(sd):
        return math.nan
    return float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def describe(values: Iterable[float]) -> Stat:
    """Mean, sample sd, n and CI half-width of the finite ``values`` (NaNs are runs that did not
    measure the metric and are left out, not counted as zeros)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return Stat(math.nan, math.nan, 0, math.nan)
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return Stat(mean, sd, n, t_halfwidth(sd, n))


def aggregate_settings(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per setting: its identity, ``n_runs``/``n_finished``/``n_unfinished``, ``seeds``, and
    for each metric ``m``: ``m_mean``, ``m_sd``, ``m_n``, ``m_ci``, ``m_se`` (the single run's
    per-case SE, only when m_n = 1), ``m_err`` (what ± shows) and ``m_err_kind`` (CI95, SE or NONE).
    Only finished runs count; an unfinished run is counted in n_unfinished so tables can flag it."""
    out = []
    for sid, group in runs.groupby("setting_id", sort=False):
        first = group.iloc[0]
        done = group[group["finished"]]
        row: dict[str, object] = {"setting_id": sid, **{c: first[c] for c in SETTING_COLS}}
        row.update(
            label=first["label"],
            block=first["block"],
            n_runs=len(group),
            n_finished=len(done),
            n_unfinished=len(group) - len(done),
            seeds=",".join(str(s) for s in sorted(group["seed"].unique())),
        )
        for m in metrics:
            st = describe(done[m]) if m in done else describe([])
            se = math.nan
            if st.n == 1 and f"{m}_se" in done:
                se = float(done[f"{m}_se"].dropna().iloc[0]) if done[f"{m}_se"].notna().any() else math.nan
            kind = CI95 if st.n >= 2 else (SE if not math.isnan(se) else NONE)
            row.update(
                {
                    f"{m}_mean": st.mean,
                    f"{m}_sd": st.sd,
                    f"{m}_n": st.n,
                    f"{m}_ci": st.ci,
                    f"{m}_se": se,
                    f"{m}_err": st.ci if kind == CI95 else se,
                    f"{m}_err_kind": kind,
                }
            )
        out.append(row)
    return pd.DataFrame(out)


def aggregate_curve(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean over the runs of each setting at each number of edits for ``metric``: columns
    setting_id, n_edits_done, mean, ci, n. Unfinished runs contribute the points they reached."""
    sub = curves[curves["metric"] == metric]
    rows = []
    for (sid, n), g in sub.groupby(["setting_id", "n_edits_done"], sort=True):
        st = describe(g["value"])
        rows.append({"setting_id": sid, "n_edits_done": n, "mean": st.mean, "ci": st.ci, "n": st.n})
    return pd.DataFrame(rows, columns=["setting_id", "n_edits_done", "mean", "ci", "n"])
