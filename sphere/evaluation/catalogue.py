"""The metric catalogue: what every metric an evaluator logs is called, in which unit, which way is
better, and where it is shown.

Each evaluator declares its metrics where it is registered (``@register_evaluator(name,
metrics=[Metric(...), ...])``); the report's tables and figures, the run summary and W&B read them
here. So a new evaluator's metric reaches the results table, the curves and ``summary.txt`` with no
edit anywhere else, and nothing outside an evaluator lists metrics by hand.

A key is a metric's exact name (``efficacy``) or a family prefix ending in ``/`` (``general/``:
one metric per task; ``he/``: one per edited layer), which covers every key under it that has no
declaration of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sphere.evaluation import registry

# Suffixes of per-case spreads and side counts that are not metrics of their own (``efficacy_se``,
# ``general/nli_f1``, ``consistency_proxy_n``): kept in summary.json, never a table column.
SIDE_SUFFIXES = ("_se", "_sd", "_n", "_f1", "_mcc", "_invalid")


@dataclass(frozen=True)
class Metric:
    """One metric (or a family of them) as a reader should see it.

    Attributes:
        key: the exact name, or a family prefix ending in ``/``.
        label: the column header and axis title ("Efficacy (top-1)").
        unit: "%" for a share of cases ×100; anything else is said as it is ("n-gram entropy ×100").
        better: +1 higher is better, −1 lower is better, 0 neither (a signed change).
        table: a column of the results table (and of summary.txt) when a run has it.
        curve: drawn against the number of edits in the edit-quality figure.
        per_layer: a family with one value per edited layer (``he/layer_4``).
        order: position in tables (paper order: probability convention, generation, top-1, score,
            general ability, HE).
    """

    key: str
    label: str
    unit: str = "%"
    better: int = 1
    table: bool = True
    curve: bool = False
    per_layer: bool = False
    order: int = 100
    header: str = ""  # a table's column header, where it must say more than the label (a unit)
    outcome: str = ""  # the per-record key of outcomes.jsonl holding its 0/1 per prompt (McNemar)
    composite: bool = False  # one number summarising several (the score): what a heatmap ranks by

    @property
    def column(self) -> str:
        return self.header or self.label

    @property
    def family(self) -> bool:
        return self.key.endswith("/")

    def covers(self, key: str) -> bool:
        return key == self.key or (self.family and key.startswith(self.key))


def catalogue() -> list[Metric]:
    """Every declared metric, in table order (the evaluators are imported first)."""
    registry.discover()
    return sorted(registry.declared_metrics(), key=lambda m: (m.order, m.key))


def metric(key: str) -> Metric:
    """The declaration of ``key``: its own, else its family's (the longest prefix), else a neutral
    one that names the key and claims no unit, no direction and no column."""
    best: Metric | None = None
    for m in catalogue():
        if m.key == key:
            return m
        if m.covers(key) and (best is None or len(m.key) > len(best.key)):
            best = m
    if best is not None:
        return Metric(
            key,
            _member_label(best, key),
            best.unit,
            best.better,
            best.table,
            best.curve,
            best.per_layer,
            best.order,
        )
    return Metric(key, key, unit="", better=0, table=False)


def _member_label(family: Metric, key: str) -> str:
    """``general/open_qa`` under "accuracy" → "Open qa accuracy"; a layer → "HE, layer 4"."""
    member = key[len(family.key) :].removeprefix("layer_")
    if family.per_layer:
        return f"{family.label}, layer {member}"
    return f"{member.replace('_', ' ').capitalize()} {family.label}"


def is_side_key(key: str) -> bool:
    """A spread or count beside a metric (``efficacy_se``), not a metric to show."""
    return key.endswith(SIDE_SUFFIXES)


def table_metrics(present: Iterable[str]) -> list[Metric]:
    """The table columns for a set of keys that runs have: each declared metric with ``table`` that
    is present, family members expanded in sorted order, in catalogue order."""
    present = [k for k in present if not is_side_key(k)]
    out: list[Metric] = []
    seen: set[str] = set()
    for m in catalogue():
        if not m.table:
            continue
        keys = sorted(k for k in present if m.covers(k)) if m.family else [m.key] * (m.key in present)
        for k in keys:
            spec = metric(k)
            if k not in seen and spec.table and not spec.per_layer:
                seen.add(k)
                out.append(spec)
    return out


def curve_metrics() -> list[str]:
    """The metrics of the edit-quality figure against the number of edits, in order."""
    return [m.key for m in catalogue() if m.curve and not m.family]


def change_metrics(present: Iterable[str]) -> list[str]:
    """Table metrics that measure a change rather than a success rate (better ≤ 0: the HE change
    summaries), among ``present``."""
    return [m.key for m in table_metrics(present) if m.better <= 0]


def of_evaluator(name: str, present: Iterable[str]) -> list[Metric]:
    """The metrics among ``present`` that evaluator ``name`` declared (its families expanded), in
    catalogue order: what a figure about one evaluator's output (general ability) draws."""
    registry.discover()
    mine = registry.declared_metrics(name)
    present = [k for k in present if not is_side_key(k)]
    keys = [k for k in present if any(m.covers(k) for m in mine)]
    return sorted((metric(k) for k in keys), key=lambda m: (m.order, m.key))


def composite() -> str:
    """The first declared composite metric (the score): the default a heatmap or a plug-in choice
    ranks settings by; the first headline metric if none is declared."""
    return next((m.key for m in catalogue() if m.composite), None) or headline()[0]


def headline() -> list[str]:
    """The edit-quality metrics a person reads first: the figure's metrics in the percent unit
    (both conventions and the score), not generation scores."""
    return [k for k in curve_metrics() if metric(k).unit == "%"]
