"""McNemar's exact test on the same records edited with and without SPHERE.

A pair of runs (:mod:`sphere.report.paired`) edits the same records in the same order; when both
wrote ``outcomes.jsonl`` (one row per edited record at the final evaluation), each record's success
can be compared directly. Only discordant units carry information: b = success without SPHERE and
failure with it, c = the reverse; under H0 c ~ Binomial(b + c, ½), and the two-sided exact p is
``scipy.stats.binomtest(c, b + c)``. Efficacy has one prompt per record, so its unit is the
record; generalization and specificity are tested over prompts (a record's paraphrase and
neighbourhood prompts are not independent, so read those p-values as descriptive where a record
has several). The row ``all`` pools the discordant counts of every seed (strata of different
records; valid under H0 in every stratum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats as sps

from sphere.evaluation.catalogue import catalogue
from sphere.run.rundir import OUTCOMES_FILE, read_outcomes


@dataclass(frozen=True)
class McNemar:
    units: int  # records or prompts present in both runs
    lost: int  # b: success without SPHERE, failure with it
    gained: int  # c: failure without SPHERE, success with it
    unit: str  # "records" or "prompts"

    @property
    def p(self) -> float:
        n = self.lost + self.gained
        return 1.0 if n == 0 else float(sps.binomtest(self.gained, n, 0.5).pvalue)


def outcomes_by_case(run_dir: Path) -> dict[Any, dict[str, Any]] | None:
    """{case_id: row} of a run's outcomes file (``sphere.run.outcomes``, the run directory's
    contract), or None when the run has none (runs from before it was written)."""
    if not (Path(run_dir) / OUTCOMES_FILE).is_file():
        return None
    return {row["case_id"]: row for row in read_outcomes(run_dir)}


def outcome_keys() -> dict[str, str]:
    """metric -> the outcomes.jsonl key of its per-prompt 0/1 list, as evaluators declared them."""
    return {m.key: m.outcome for m in catalogue() if m.outcome}


def _units(row: dict[str, Any], key: str) -> list[float] | None:
    """The binary outcomes of one record under ``key`` (a per-prompt list), None if absent."""
    listed = row.get(key)
    if not isinstance(listed, list):
        return None
    return [float(v) for v in listed if v is not None]


def mcnemar_pair(
    off: dict[Any, dict[str, Any]], on: dict[Any, dict[str, Any]], metric: str
) -> McNemar | None:
    """McNemar counts of ``metric`` over the records both runs measured (None if not measurable)."""
    key = outcome_keys().get(metric)
    if key is None:
        return None
    lost = gained = units = records = 0
    for case_id in sorted(set(off) & set(on), key=str):
        a, b = _units(off[case_id], key), _units(on[case_id], key)
        if a is None or b is None or len(a) != len(b):
            continue
        records += 1
        for x, y in zip(a, b):
            units += 1
            lost += int(x == 1 and y == 0)
            gained += int(x == 0 and y == 1)
    # one prompt per record: the record is the unit; several: prompts of one record (descriptive)
    return McNemar(units, lost, gained, "records" if units == records else "prompts") if units else None


def mcnemar_table(comparisons: list, paths: dict[str, Path]) -> pd.DataFrame:
    """One row per comparison, seed (and ``all``) and metric where both runs of a pair have
    outcomes: block, comparison, seed, metric, unit, units, lost, gained, p. ``paths``: run_id → dir."""
    rows = []
    for comp in comparisons:
        pooled: dict[str, McNemar] = {}
        for seed, (base_id, on_id) in zip(comp.seeds, comp.run_ids):
            off, on = outcomes_by_case(paths[base_id]), outcomes_by_case(paths[on_id])
            if off is None or on is None:
                continue
            for metric in outcome_keys():
                res = mcnemar_pair(off, on, metric)
                if res is None:
                    continue
                rows.append(_row(comp, str(seed), metric, res))
                acc = pooled.get(metric, McNemar(0, 0, 0, res.unit))
                pooled[metric] = McNemar(
                    acc.units + res.units, acc.lost + res.lost, acc.gained + res.gained, res.unit
                )
        seeds_with = {r["seed"] for r in rows if r["comparison"] == comp.label and r["block"] == comp.block}
        if len(seeds_with) > 1:
            rows.extend(_row(comp, "all", metric, res) for metric, res in pooled.items())
    return pd.DataFrame(
        rows, columns=["block", "comparison", "seed", "metric", "unit", "units", "lost", "gained", "p"]
    )


def _row(comp: Any, seed: str, metric: str, res: McNemar) -> dict[str, Any]:
    return {
        "block": comp.block,
        "comparison": comp.label,
        "seed": seed,
        "metric": metric,
        "unit": res.unit,
        "units": res.units,
        "lost": res.lost,
        "gained": res.gained,
        "p": res.p if res.units else math.nan,
    }
