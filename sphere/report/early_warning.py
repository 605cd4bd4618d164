"""HE as an early warning: on runs that fail, does a per-batch signal cross a threshold before
efficacy falls below the failure line, and by how many edits?

The question and the definition of failure are fixed in docs/results.md, "Where editors fail: the
protocol". A run has *failed* at an evaluation point when its efficacy is below
:data:`FAILURE_EFFICACY` % or its specificity is :data:`FAILURE_SPECIFICITY_DROP` points or more
below the unedited model's (the row of 0 edits, else ``pre/`` of summary.json); its time to
failure is the first evaluation point where that holds.

The line cannot see a collapse. Efficacy and specificity compare two probabilities (P(new) > P(true)
and the reverse); a model that has stopped giving either object any probability answers both
comparisons near chance, so they drift towards 50 % from either side without crossing the line
(SmolLM2-135M after 3,000 MEMIT edits writes word fragments at 58 % efficacy, docs/results.md).
The failure table therefore puts top-1 efficacy (the new object is the most likely token) at the
first and the last evaluation beside it, and the figure draws it: that is where a collapse shows.

The signals, one value per batch, from the long rows :mod:`sphere.report.collect` builds:

* the mean over edited layers of |ΔHE| % (:data:`sphere.evaluation.he.HE_ABS`, the change of each
  layer's HE from the unedited model's, as the report's tables show it);
* its batch-to-batch change, |mean |ΔHE| after batch b − after batch b − 1| (points of %);
* the mean over edited layers of the update norm (``update_norm/layer_<l>``, logged by the runner).

Calibration (:func:`calibrate`): for each setting, the runs of the calibration seeds that never
fail give each signal its threshold, the largest value the signal reaches in them before their end,
so that none of them raises an alarm. Judgement (:func:`judge`): in every run, the first batch
where a signal *exceeds* its threshold; the lead is the failure point minus that batch (edits,
positive when the signal warns first); a crossing in a run that never fails is a false alarm.
Thresholds are per setting (an editor with SPHERE moves HE differently from the same editor
without it, so one setting's quiet level says nothing about another's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sphere.evaluation import HEADLINE
from sphere.evaluation.catalogue import metric
from sphere.evaluation.he import HE_ABS
from sphere.report.collect import Collection
from sphere.report.comparisons import md_to_html
from sphere.run.rundir import UPDATE_NORM_PREFIX

# The failure line of the protocol (docs/results.md, "Where editors fail: the protocol").
FAILURE_EFFICACY = 50.0  # efficacy below this (%) is a failure
FAILURE_SPECIFICITY_DROP = 20.0  # specificity this many points or more below the unedited model's

EFFICACY, SPECIFICITY = HEADLINE[0], HEADLINE[2]  # the two metrics the failure line reads
EFFICACY_TOP1 = HEADLINE[3]  # top-1 efficacy, shown beside the line, which cannot see a collapse

# The per-batch signals: key → how a table names it.
SIGNAL_HE = HE_ABS
SIGNAL_HE_STEP = f"{HE_ABS}_step"
SIGNAL_UPDATE = UPDATE_NORM_PREFIX.split("/", 1)[0]
SIGNALS = (SIGNAL_HE, SIGNAL_HE_STEP, SIGNAL_UPDATE)
SIGNAL_LABELS = {
    SIGNAL_HE: "mean ∣ΔHE∣ %",
    SIGNAL_HE_STEP: "batch-to-batch change of mean ∣ΔHE∣ (points of %)",
    SIGNAL_UPDATE: "mean update norm",
}

NO_FAILURE = (
    "no run failed by the protocol's definition: the early-warning question has no failing run to be "
    "asked of."
)
NO_FAILING_CALIBRATION = (
    "no calibration run failed: the thresholds are the calibration runs' quiet levels, but whether a "
    "signal warns before a failure cannot be seen on the calibration seeds."
)

FAILURE_COLS = [
    "run_id",
    "setting_id",
    "label",
    "seed",
    "failed_at",
    "failed_by",
    "last_eval",
    "last_efficacy",
    "last_specificity",
    "pre_specificity",
    "first_eval",
    "first_efficacy_top1",
    "last_efficacy_top1",
]
SIGNAL_COLS = ["run_id", "n_edits", *SIGNALS]
THRESHOLD_COLS = ["setting_id", "label", "signal", "threshold", "n_quiet", "n_failing"]
JUDGEMENT_COLS = [
    "run_id",
    "label",
    "seed",
    "role",
    "signal",
    "threshold",
    "crossed_at",
    "failed_at",
    "lead",
    "false_alarm",
]


@dataclass
class EarlyWarning:
    """The analysis of one report: failures per run, signals per batch and, with calibration
    seeds, thresholds per setting and signal and the crossings of every run."""

    failures: pd.DataFrame
    signals: pd.DataFrame
    calibration_seeds: tuple[int, ...] = ()
    thresholds: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=THRESHOLD_COLS))
    judgement: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=JUDGEMENT_COLS))
    notes: list[str] = field(default_factory=list)

    @property
    def any_failed(self) -> bool:
        return bool(self.failures["failed_at"].notna().any()) if len(self.failures) else False


def _wide(coll: Collection) -> dict[str, pd.DataFrame]:
    """{run_id: frame indexed by number of edits, one column per metric} from the long curves."""
    c = coll.curves
    if c.empty:
        return {}
    return {
        str(rid): g.pivot_table(index="n_edits_done", columns="metric", values="value", aggfunc="last")
        for rid, g in c.groupby("run_id", sort=False)
    }


def failed_by(efficacy: float, specificity: float, pre_specificity: float) -> list[str]:
    """The metrics whose rule of the protocol's failure line holds at one evaluation point, in the
    order efficacy, specificity (empty: not failed; NaN parts never fail)."""
    by_eff = not math.isnan(efficacy) and efficacy < FAILURE_EFFICACY
    by_spec = (
        not math.isnan(specificity)
        and not math.isnan(pre_specificity)
        and pre_specificity - specificity >= FAILURE_SPECIFICITY_DROP
    )
    return [k for k, on in ((EFFICACY, by_eff), (SPECIFICITY, by_spec)) if on]


def has_failed(efficacy: float, specificity: float, pre_specificity: float) -> bool:
    """The protocol's failure line at one evaluation point (NaN parts never fail)."""
    return bool(failed_by(efficacy, specificity, pre_specificity))


def failure_points(coll: Collection, wide: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per run: its failure point (``failed_at``, edits; NaN when it never fails), which
    rule failed it (efficacy, specificity or both), and its last evaluation point's efficacy and
    specificity beside the unedited model's specificity, and top-1 efficacy at the first and the
    last evaluation point (NaN where the run has none). ``wide``: :func:`_wide` of ``coll``, when the
    caller has it already."""
    wide = _wide(coll) if wide is None else wide
    rows = []
    for _, run in coll.runs.iterrows():
        w = wide.get(str(run["run_id"]), pd.DataFrame())
        eff = w[EFFICACY] if EFFICACY in w else pd.Series(dtype=float)
        spec = w[SPECIFICITY] if SPECIFICITY in w else pd.Series(dtype=float)
        top1 = w[EFFICACY_TOP1] if EFFICACY_TOP1 in w else pd.Series(dtype=float)
        pre = float(spec.get(0, math.nan)) if len(spec) else math.nan
        if math.isnan(pre):
            pre = float(run.get(f"pre/{SPECIFICITY}", math.nan))
        points = sorted(n for n in eff.dropna().index if n > 0)
        failed_at, failed_rules = math.nan, ""
        for n in points:
            rules = failed_by(float(eff.get(n, math.nan)), float(spec.get(n, math.nan)), pre)
            if rules:
                failed_at, failed_rules = float(n), " and ".join(rules)
                break
        first, last = (points[0], points[-1]) if points else (math.nan, math.nan)
        rows.append(
            {
                "run_id": run["run_id"],
                "setting_id": run["setting_id"],
                "label": run["label"],
                "seed": int(run["seed"]),
                "failed_at": failed_at,
                "failed_by": failed_rules,
                "last_eval": float(last),
                "last_efficacy": float(eff.get(last, math.nan)) if points else math.nan,
                "last_specificity": float(spec.get(last, math.nan)) if points else math.nan,
                "pre_specificity": pre,
                "first_eval": float(first),
                "first_efficacy_top1": float(top1.get(first, math.nan)) if points else math.nan,
                "last_efficacy_top1": float(top1.get(last, math.nan)) if points else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=FAILURE_COLS)


def batch_signals(coll: Collection, wide: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per run and batch (number of edits > 0 with a per-layer HE or update norm): the
    three signals. The HE change is the collected :data:`HE_ABS`; its step is taken from the
    previous batch (from 0 at the unedited model)."""
    out = []
    for rid, w in (_wide(coll) if wide is None else wide).items():
        norms = [c for c in w.columns if str(c).startswith(UPDATE_NORM_PREFIX)]
        he = w[SIGNAL_HE] if SIGNAL_HE in w else pd.Series(np.nan, index=w.index)
        upd = w[norms].mean(axis=1, skipna=True) if norms else pd.Series(np.nan, index=w.index)
        batches = [n for n in w.index if n > 0 and (not math.isnan(he[n]) or not math.isnan(upd[n]))]
        if not batches:
            continue
        prev = float(he.get(0, 0.0)) if not math.isnan(he.get(0, math.nan)) else 0.0
        for n in sorted(batches):
            h = float(he[n])
            out.append(
                {
                    "run_id": rid,
                    "n_edits": int(n),
                    SIGNAL_HE: h,
                    SIGNAL_HE_STEP: abs(h - prev) if not math.isnan(h) else math.nan,
                    SIGNAL_UPDATE: float(upd[n]),
                }
            )
            if not math.isnan(h):
                prev = h
    return pd.DataFrame(out, columns=SIGNAL_COLS)


def calibrate(
    signals: pd.DataFrame, failures: pd.DataFrame, seeds: Sequence[int]
) -> tuple[pd.DataFrame, list[str]]:
    """(thresholds, notes): per setting and signal, the largest value the signal reaches in the
    calibration runs (seed in ``seeds``) that never fail; NaN where the setting has no such run or
    no value. The notes say when no calibration run fails (nothing to check a warning on) and when
    a setting has no run that never fails (no threshold)."""
    cal = failures[failures["seed"].isin(list(seeds))]
    notes: list[str] = []
    if cal.empty:
        notes.append(f"no run has a calibration seed ({', '.join(map(str, seeds))}): no threshold.")
        return pd.DataFrame(columns=THRESHOLD_COLS), notes
    if cal["failed_at"].isna().all():
        notes.append(NO_FAILING_CALIBRATION)
    rows = []
    for sid, g in cal.groupby("setting_id", sort=False):
        quiet = g[g["failed_at"].isna()]
        label = str(g["label"].iloc[0])
        if quiet.empty:
            notes.append(
                f"{label}: every calibration run fails, so no threshold can be set without a false alarm."
            )
        vals = signals[signals["run_id"].isin(quiet["run_id"])]
        for sig in SIGNALS:
            v = vals[sig].dropna()
            rows.append(
                {
                    "setting_id": sid,
                    "label": label,
                    "signal": sig,
                    "threshold": float(v.max()) if len(v) else math.nan,
                    "n_quiet": len(quiet),
                    "n_failing": int(g["failed_at"].notna().sum()),
                }
            )
    return pd.DataFrame(rows, columns=THRESHOLD_COLS), notes


def first_crossing(signals: pd.DataFrame, run_id: str, signal: str, threshold: float) -> float:
    """The first number of edits at which ``signal`` of the run exceeds ``threshold`` (NaN: never)."""
    if math.isnan(threshold):
        return math.nan
    s = signals[signals["run_id"] == run_id].sort_values("n_edits")
    above = s[s[signal] > threshold]
    return float(above["n_edits"].iloc[0]) if len(above) else math.nan


def judge(
    signals: pd.DataFrame, failures: pd.DataFrame, thresholds: pd.DataFrame, seeds: Sequence[int]
) -> pd.DataFrame:
    """One row per run and signal: where the signal first exceeds its setting's threshold, the
    failure point, the lead (failure − crossing, edits; positive = warned before) and whether the
    crossing is a false alarm (the run never fails). ``role`` says calibration or judged."""
    rows = []
    for _, f in failures.iterrows():
        for sig in SIGNALS:
            t = thresholds[(thresholds["setting_id"] == f["setting_id"]) & (thresholds["signal"] == sig)]
            thr = float(t["threshold"].iloc[0]) if len(t) else math.nan
            crossed = first_crossing(signals, str(f["run_id"]), sig, thr)
            failed = float(f["failed_at"])
            rows.append(
                {
                    "run_id": f["run_id"],
                    "label": f["label"],
                    "seed": int(f["seed"]),
                    "role": "calibration" if int(f["seed"]) in set(seeds) else "judged",
                    "signal": sig,
                    "threshold": thr,
                    "crossed_at": crossed,
                    "failed_at": failed,
                    "lead": failed - crossed,  # NaN unless both happen
                    "false_alarm": bool(not math.isnan(crossed) and math.isnan(failed)),
                }
            )
    return pd.DataFrame(rows, columns=JUDGEMENT_COLS)


def analyse(coll: Collection, calibration_seeds: Sequence[int] = ()) -> EarlyWarning:
    """Failures and signals of every run; with ``calibration_seeds``, thresholds and crossings."""
    wide = _wide(coll)  # one pivot of the long curves serves both
    failures = failure_points(coll, wide)
    signals = batch_signals(coll, wide)
    seeds = tuple(int(s) for s in calibration_seeds)
    ew = EarlyWarning(failures=failures, signals=signals, calibration_seeds=seeds)
    if seeds:
        ew.thresholds, ew.notes = calibrate(signals, failures, seeds)
        ew.judgement = judge(signals, failures, ew.thresholds, seeds)
    return ew


def _n(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _edits(x: float) -> str:
    return "–" if math.isnan(x) else str(int(x))


def _top1(r: pd.Series) -> str:
    """Top-1 efficacy at the first and the last evaluation point, ``70.00 (500) → 2.50 (3000)``."""
    a, b = r["first_efficacy_top1"], r["last_efficacy_top1"]
    if math.isnan(a) and math.isnan(b):
        return "–"
    return f"{_n(a)} ({_edits(r['first_eval'])}) → {_n(b)} ({_edits(r['last_eval'])})"


def _thr(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.4g}"


def to_markdown(ew: EarlyWarning) -> str:
    """The section of tables/early_warning.md: the failure table, then (with calibration seeds)
    the thresholds and the crossings, each with what it says in a sentence."""
    f = ew.failures
    out = [
        "## HE as an early warning",
        "",
        f"A run has **failed** at an evaluation point when its efficacy is below {FAILURE_EFFICACY:g} % "
        f"or its specificity is {FAILURE_SPECIFICITY_DROP:g} points or more below the unedited model's "
        '(docs/results.md, "Where editors fail: the protocol"); time to failure is the first such point. '
        "The line cannot see a collapse: both rules compare two probabilities, and a model that gives "
        "neither object any probability answers them near chance (≈ 50 %) without crossing it; top-1 "
        "efficacy (first → last evaluation) shows whether the edits still hold.",
        "",
        "### Failure per run",
        "",
        "| run | setting | seed | failed at (edits) | last evaluation (edits) | efficacy | specificity "
        "| unedited specificity | top-1 efficacy (first → last) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in f.iterrows():
        failed = "no" if math.isnan(r["failed_at"]) else f"{int(r['failed_at'])} ({r['failed_by']})"
        out.append(
            f"| `{r['run_id']}` | {r['label']} | {r['seed']} | {failed} | {_edits(r['last_eval'])} "
            f"| {_n(r['last_efficacy'])} | {_n(r['last_specificity'])} | {_n(r['pre_specificity'])} "
            f"| {_top1(r)} |"
        )
    out.append("")
    if not ew.any_failed:
        out += [f"{NO_FAILURE[0].upper()}{NO_FAILURE[1:]}", ""]
    else:
        out += [f"{int(f['failed_at'].notna().sum())} of {len(f)} runs failed.", ""]
    if not ew.calibration_seeds:
        out += [
            "No calibration seeds were given (`--warn-calibration-seeds`): failures only, no thresholds.",
            "",
        ]
        return "\n".join(out)
    seeds = ", ".join(map(str, ew.calibration_seeds))
    out += [
        f"### Thresholds (calibrated on seeds {seeds})",
        "",
        "Per setting and signal, the largest value the signal reaches in the calibration runs that never "
        "fail (so none of them raises an alarm); a signal *crosses* when it exceeds it.",
        "",
        "| setting | signal | threshold | calibration runs that never fail | that fail |",
        "|---|---|---:|---:|---:|",
    ]
    for _, t in ew.thresholds.iterrows():
        out.append(
            f"| {t['label']} | {SIGNAL_LABELS[t['signal']]} | {_thr(t['threshold'])} | {t['n_quiet']} "
            f"| {t['n_failing']} |"
        )
    out.append("")
    out += [n[0].upper() + n[1:] for n in ew.notes] + ([""] if ew.notes else [])
    out += [
        "### Crossings",
        "",
        "Lead = failure point − first crossing, in edits (positive: the signal warned first). A crossing "
        "in a run that never fails is a false alarm.",
        "",
        "| run | setting | seed | role | signal | crossed at (edits) | failed at (edits) | lead (edits) "
        "| false alarm |",
        "|---|---|---:|---|---|---:|---:|---:|---|",
    ]
    for _, j in ew.judgement.iterrows():
        lead = "–" if math.isnan(j["lead"]) else f"{int(j['lead']):+d}"
        out.append(
            f"| `{j['run_id']}` | {j['label']} | {j['seed']} | {j['role']} | {SIGNAL_LABELS[j['signal']]} "
            f"| {_edits(j['crossed_at'])} | {_edits(j['failed_at'])} "
            f"| {lead} "
            f"| {'yes' if j['false_alarm'] else 'no'} |"
        )
    out.append("")
    out += _verdicts(ew)
    return "\n".join(out)


def _verdicts(ew: EarlyWarning) -> list[str]:
    """Per signal, on the judged runs: how many failing runs it warned before failing, the leads,
    and its false alarms."""
    j = ew.judgement[ew.judgement["role"] == "judged"]
    if j.empty:
        return ["No run outside the calibration seeds to judge.", ""]
    out = []
    for sig in SIGNALS:
        s = j[j["signal"] == sig]
        failing = s[s["failed_at"].notna()]
        warned = failing[failing["lead"] > 0]
        leads = ", ".join(str(int(x)) for x in warned["lead"])
        out.append(
            f"- {SIGNAL_LABELS[sig]}: warned before failure in {len(warned)} of {len(failing)} failing "
            f"judged run(s){f' (leads {leads} edits)' if leads else ''}; "
            f"{int(s['false_alarm'].sum())} false alarm(s) in {len(s) - len(failing)} run(s) that never fail."
        )
    if not ew.any_failed:
        out.append(f"- {NO_FAILURE[0].upper()}{NO_FAILURE[1:]}")
    return [*out, ""]


def to_frame(ew: EarlyWarning) -> pd.DataFrame:
    """tables/early_warning.csv: one row per run (the failure columns), and with calibration seeds
    per signal its threshold, first crossing, lead and false alarm (``<column>/<signal>``)."""
    df = ew.failures.copy()
    if ew.calibration_seeds and not ew.judgement.empty:
        df["role"] = [
            "calibration" if s in set(ew.calibration_seeds) else "judged" for s in df["seed"].astype(int)
        ]
        for sig in SIGNALS:
            j = ew.judgement[ew.judgement["signal"] == sig].set_index("run_id")
            for col in ("threshold", "crossed_at", "lead", "false_alarm"):
                df[f"{col}/{sig}"] = df["run_id"].map(j[col])
    return df


def signal_label(signal: str) -> str:
    """How a figure names a signal (the catalogue's label for the HE change itself)."""
    return metric(HE_ABS).label if signal == SIGNAL_HE else SIGNAL_LABELS[signal]


def to_html(ew: EarlyWarning) -> str:
    """The section for report.html (the Markdown without its own heading, as HTML)."""
    return md_to_html(to_markdown(ew).split("\n", 1)[1])
