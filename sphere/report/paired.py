"""SPHERE against its baseline, paired by seed: the comparison a reviewer accepts.

Two runs pair when they differ only in SPHERE: same model, dataset file, editor, protocol, number of
edits, batch size and seed (so the same records in the same order), and no other config key apart
(``collect.config_differences``). Seeds differ from each other more than the settings do (the order
and choice of records decide which facts are hard), so the unit of inference is the pair of runs,
and the statistic is the per-seed difference SPHERE − baseline:

- its mean and 95 % Student-t interval, and the paired t-test (``scipy.stats.ttest_rel``);
- an exact test that needs no normality: Fisher's sign-flip randomisation test of the mean
  difference (every one of the 2ⁿ sign assignments enumerated). With n pairs its smallest possible
  two-sided p is 2/2ⁿ = 2^(1−n): 0.25 for three pairs, 0.031 for six. When that floor is above
  0.05 the table says so: such a comparison cannot be significant whatever the data;
- Holm's step-down correction over the metrics of one comparison (one SPHERE setting against its
  baseline in one block), applied to each test's p separately.

A difference is bolded only when its Holm-adjusted exact p is below 0.05; nothing is bolded for
"best mean". Where both runs of a pair wrote per-record outcomes (``outcomes.jsonl``), McNemar's
exact test compares the same records' success with and without SPHERE (:mod:`sphere.report.mcnemar`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats as sps

from sphere.evaluation.catalogue import catalogue, change_metrics
from sphere.evaluation.he import HE_ABS
from sphere.report.aggregate import t_halfwidth
from sphere.report.collect import BLOCK_COLS, Collection, config_differences

ALPHA = 0.05
PAIR_COLS = [*BLOCK_COLS, "editor", "seed"]
_EXACT_ENUMERATION_MAX = 16  # 2^16 sign vectors enumerated; above that a seeded Monte Carlo
_MONTE_CARLO_DRAWS = 100_000
_SPHERE_KEYS = ("sphere.",)  # config keys a pair may differ in


@dataclass(frozen=True)
class PairedTest:
    """The paired statistics of one metric over n pairs (differences = SPHERE − baseline)."""

    diffs: tuple[float, ...]
    mean: float
    sd: float
    ci: float  # 95 % half-width (Student t, df = n − 1); NaN for n < 2
    t: float
    p_t: float  # paired t-test, two-sided; NaN for n < 2 or zero variance
    p_exact: float  # sign-flip randomisation test, two-sided
    p_floor: float  # the smallest p the exact test can give with n pairs
    n_pos: int
    n_neg: int

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def can_reach(self) -> bool:
        """Whether the exact test could reach p < 0.05 with this many pairs."""
        return self.p_floor < ALPHA


def exact_sign_flip_p(diffs: Sequence[float]) -> float:
    """Two-sided p of the paired randomisation test: the share of the 2ⁿ sign assignments of the
    differences whose |sum| is at least the observed |sum| (the observed one included, so p > 0).

    Under H0 (SPHERE changes nothing) each difference is as likely with either sign. Exact for
    n ≤ 16; above, 100,000 sign vectors are drawn with a fixed seed (p = (hits + 1)/(draws + 1)).
    """
    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(sum(d))
    tol = 1e-12 * max(1.0, sum(abs(x) for x in d))
    if n <= _EXACT_ENUMERATION_MAX:
        signs = itertools.product((1.0, -1.0), repeat=n)
        hits = sum(abs(sum(s * x for s, x in zip(sv, d))) >= observed - tol for sv in signs)
        return hits / 2**n
    rng = random.Random(0)
    draws = _MONTE_CARLO_DRAWS
    hits = sum(abs(sum(x if rng.random() < 0.5 else -x for x in d)) >= observed - tol for _ in range(draws))
    return (hits + 1) / (draws + 1)


def exact_floor(n: int) -> float:
    """The smallest two-sided p of the sign-flip test with n pairs: 2/2ⁿ (all signs alike)."""
    return min(1.0, 2.0 / 2**n) if n > 0 else math.nan


def paired_test(on: Sequence[float], off: Sequence[float]) -> PairedTest:
    """Paired statistics of ``on − off`` (same order: one entry per pair). Non-finite pairs are
    dropped (a metric one of the two runs did not measure)."""
    pairs = [
        (float(a), float(b))
        for a, b in zip(on, off)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
    ]
    d = tuple(a - b for a, b in pairs)
    n = len(d)
    if n == 0:
        nan = math.nan
        return PairedTest((), nan, nan, nan, nan, nan, nan, nan, 0, 0)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else math.nan
    t = p_t = math.nan
    if n > 1 and sd > 0:
        res = sps.ttest_rel([a for a, _ in pairs], [b for _, b in pairs])
        t, p_t = float(res.statistic), float(res.pvalue)
    return PairedTest(
        diffs=d,
        mean=mean,
        sd=sd,
        ci=t_halfwidth(sd, n),
        t=t,
        p_t=p_t,
        p_exact=exact_sign_flip_p(d),
        p_floor=exact_floor(n),
        n_pos=sum(x > 0 for x in d),
        n_neg=sum(x < 0 for x in d),
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and is not counted in
    the family): sort ascending, p_(i) · (m − i + 1), running maximum, capped at 1."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


@dataclass
class Comparison:
    """One SPHERE setting against its baseline in one block, over its pairs of runs."""

    block: str
    editor: str
    label: str  # the SPHERE setting's row label
    baseline_label: str
    setting_id: str
    baseline_setting_id: str
    seeds: list[int]
    run_ids: list[tuple[str, str]]  # (baseline, SPHERE) per seed
    tests: dict[str, PairedTest] = field(default_factory=dict)
    holm_exact: dict[str, float] = field(default_factory=dict)
    holm_t: dict[str, float] = field(default_factory=dict)

    def supported(self, metric: str) -> bool:
        """The difference in ``metric`` survives Holm at 0.05 with the exact test."""
        p = self.holm_exact.get(metric, math.nan)
        return math.isfinite(p) and p < ALPHA


def find_pairs(coll: Collection) -> tuple[pd.DataFrame, list[str]]:
    """(pairs, warnings): one row per (SPHERE run, baseline run) that differ only in SPHERE.

    Columns: block, editor, seed, setting_id (SPHERE), baseline_setting_id, run_id, baseline_run_id.
    Candidates whose configs differ in anything but ``sphere.*`` (a data file, a learning rate, a
    layer list), or whose key matches several baseline runs, are not paired and are named.
    """
    runs = coll.runs
    if runs.empty:
        return pd.DataFrame(), []
    by_id = {r.run_id: r for r in coll.loaded}
    done = runs[runs["finished"]]
    base = done[~done["sphere"].astype(bool)]
    on = done[done["sphere"].astype(bool)]
    rows, warnings = [], []
    for _, r in on.iterrows():
        mask = pd.Series(True, index=base.index)
        for c in PAIR_COLS:
            mask &= base[c] == r[c]
        candidates = base[mask]
        if candidates.empty:
            continue

        def apart(b_id: str, on_id: str = r["run_id"]) -> list[str]:
            diff = config_differences([by_id[on_id], by_id[b_id]])
            return [k for k in diff if not k.startswith(_SPHERE_KEYS)]

        same = [b for b in candidates["run_id"] if not apart(b)]
        if len(same) > 1:
            warnings.append(
                f"{r['run_id']}: {len(same)} baseline runs share its config but SPHERE "
                f"({', '.join(same)}); not paired"
            )
            continue
        if not same:
            first = candidates["run_id"].iloc[0]
            warnings.append(
                f"{r['run_id']} and {first} differ in {', '.join(apart(first)[:6])}: not a SPHERE pair"
            )
            continue
        b = candidates[candidates["run_id"] == same[0]].iloc[0]
        rows.append(
            {
                "block": r["block"],
                "editor": r["editor"],
                "seed": int(r["seed"]),
                "label": r["label"],
                "baseline_label": b["label"],
                "setting_id": r["setting_id"],
                "baseline_setting_id": b["setting_id"],
                "run_id": r["run_id"],
                "baseline_run_id": b["run_id"],
            }
        )
    return pd.DataFrame(rows), warnings


def compare(coll: Collection, metrics: Sequence[str]) -> tuple[list[Comparison], list[str]]:
    """Every SPHERE setting against its baseline, per block, on ``metrics`` (columns of
    ``coll.runs``); Holm over the metrics of each comparison. Comparisons in table order."""
    pairs, warnings = find_pairs(coll)
    if pairs.empty:
        return [], warnings
    runs = coll.runs.set_index("run_id")
    out = []
    for (block, sid), group in pairs.groupby(["block", "setting_id"], sort=False):
        group = group.sort_values("seed")
        first = group.iloc[0]
        comp = Comparison(
            block=str(block),
            editor=str(first["editor"]),
            label=str(first["label"]),
            baseline_label=str(first["baseline_label"]),
            setting_id=str(sid),
            baseline_setting_id=str(first["baseline_setting_id"]),
            seeds=[int(s) for s in group["seed"]],
            run_ids=list(zip(group["baseline_run_id"], group["run_id"])),
        )
        for m in metrics:
            if m not in runs.columns:
                continue
            on = [float(runs.at[r, m]) for r in group["run_id"]]
            off = [float(runs.at[r, m]) for r in group["baseline_run_id"]]
            test = paired_test(on, off)
            if test.n:
                comp.tests[m] = test
        keys = list(comp.tests)
        comp.holm_exact = dict(zip(keys, holm([comp.tests[k].p_exact for k in keys])))
        comp.holm_t = dict(zip(keys, holm([comp.tests[k].p_t for k in keys])))
        out.append(comp)
    return out, warnings


def paired_metrics(table_keys: Sequence[str], runs: pd.DataFrame) -> list[str]:
    """The metrics of the paired table: the results table's success-rate columns, then the
    catalogue's non-table metrics in another unit that runs have (the probability margins), then
    the change metrics (HE: mean per-layer |ΔHE|, then the signed mean)."""
    changes = change_metrics(table_keys)
    keys = [k for k in table_keys if k not in changes]
    keys += [m.key for m in catalogue() if not m.table and not m.family and m.unit != "%" and m.key in runs]
    return keys + changes


def layer_metrics(runs: pd.DataFrame) -> list[str]:
    """``he_abs_change_pct/<layer>`` columns, in layer order."""
    cols = [c for c in runs.columns if c.startswith(f"{HE_ABS}/")]
    return sorted(cols, key=lambda c: (len(c), c))
