"""Evaluators: registered like editors, one signature, each with the moments of a run it measures.

The runner never names a metric: at each moment it calls every evaluator whose ``moments`` contain
it and logs what comes back. Moments: ``pre`` (unedited model, all records), ``batch`` (right after
a batch, that batch's records), ``scheduled`` (every ``eval.every`` edits, the records edited so
far) and ``final`` (after the last batch, the records edited so far). Adding a metric is one
file with ``@register_evaluator("name")`` and the name in ``eval.evaluators``.

An evaluator that measures each edited record may also offer those per-record values at the final
evaluation (:class:`OutcomeSource`); the runner writes them to ``outcomes.jsonl`` so runs of the
same records can be compared record by record (paired tests such as McNemar's), still without
naming a metric.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from editors.core.model_spec import ModelSpec
from editors.core.tokens import Tokenizer
from sphere.data.records import EditRecord

Moment = Literal["pre", "batch", "scheduled", "final"]


@dataclass
class EvalView:
    """What an evaluator may look at.

    Attributes:
        model, tok, spec: the model as it is evaluated (readout transforms applied), its tokenizer
            and module layout.
        layers: the editor's edited layers.
        records: the records this moment concerns (see the module docstring).
        n_edits: edits applied so far.
    """

    model: Any
    tok: Tokenizer
    spec: ModelSpec
    layers: Sequence[int]
    records: Sequence[EditRecord]
    n_edits: int


@runtime_checkable
class Evaluator(Protocol):
    moments: frozenset[str]
    """The moments this evaluator measures."""

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        """Flat metrics (name → number) for this moment; names become metrics.jsonl and W&B columns."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state that must survive a restart (e.g. results accumulated batch by batch)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class OutcomeSource(Protocol):
    """Optional capability of an evaluator: its per-record results at the ``final`` moment.

    Aggregates hide which records an edit won or lost; a paired comparison of two settings on the
    same records needs the records themselves. The runner asks every evaluator that has this method
    after the final measurement and writes the rows to ``outcomes.jsonl`` (``sphere.run.outcomes``).
    """

    def final_outcomes(self) -> list[dict[str, Any]] | None:
        """One dict per edited record, each with the record's ``case_id`` and the evaluator's
        per-record values (JSON-able: numbers, NaN for undefined, lists of numbers), in record
        order; None before the final moment was measured (or when the evaluator has none)."""
        ...


_EVALUATORS: dict[str, Callable[[Any], Evaluator]] = {}
_METRICS: dict[str, list[Any]] = {}  # evaluator -> its declared metrics (sphere.evaluation.catalogue)


def register_evaluator(name: str, metrics: Sequence[Any] = ()):
    """Decorator on ``build(eval_cfg) -> Evaluator`` (usually the evaluator class itself).

    ``metrics``: the :class:`sphere.evaluation.catalogue.Metric` declarations of what it logs (name,
    label, unit, direction, where shown); the report, the summary and W&B read them from there."""

    def deco(build: Callable[[Any], Evaluator]) -> Callable[[Any], Evaluator]:
        if name in _EVALUATORS and _EVALUATORS[name] is not build:
            raise ValueError(f"evaluator {name!r} is registered twice")
        _EVALUATORS[name] = build
        _METRICS[name] = list(metrics)
        return build

    return deco


def declared_metrics(evaluator: str | None = None) -> list[Any]:
    """The metric declarations of one evaluator, or of every registered one (first declaration of
    a key wins)."""
    seen: dict[str, Any] = {}
    for metrics in [_METRICS.get(evaluator, [])] if evaluator else _METRICS.values():
        for m in metrics:
            seen.setdefault(m.key, m)
    return list(seen.values())


def discover() -> None:
    """Import every evaluator module of the package once, so each has registered itself (the
    catalogue asks this for every metric it looks up; a second scan of the package would find
    nothing new, so it is skipped)."""
    if not _DISCOVERED:
        _discover()
        _DISCOVERED.append(True)


_DISCOVERED: list[bool] = []  # a one-way latch: the package's modules were imported


def _discover() -> None:
    import sphere.evaluation as pkg

    importlib.invalidate_caches()
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.ispkg and info.name != "registry":
            importlib.import_module(f"sphere.evaluation.{info.name}")


def get_evaluator(name: str) -> Callable[[Any], Evaluator]:
    if name not in _EVALUATORS:
        _discover()
    if name not in _EVALUATORS:
        close = difflib.get_close_matches(name, _EVALUATORS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown evaluator {name!r}{hint} Known evaluators: {', '.join(sorted(_EVALUATORS))}")
    return _EVALUATORS[name]


def available_evaluators() -> list[str]:
    _discover()
    return sorted(_EVALUATORS)


def unregister_evaluator(name: str) -> None:
    _EVALUATORS.pop(name, None)
    _METRICS.pop(name, None)
