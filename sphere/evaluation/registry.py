"""Evaluators: registered like editors, one signature, each with the moments of a run it measures.

The runner never names a metric: at each moment it calls every evaluator whose ``moments`` contain
it and logs what comes back. Moments: ``pre`` (unedited model, all records), ``batch`` (right after
a batch, that batch's records), ``scheduled`` (every ``eval.every`` edits, the records edited so
far) and ``final`` (after the last batch, the records edited so far). Adding a metric is one
file with ``@register_evaluator("name")`` and the name in ``eval.evaluators``.
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


_EVALUATORS: dict[str, Callable[[Any], Evaluator]] = {}


def register_evaluator(name: str):
    """Decorator on ``build(eval_cfg) -> Evaluator`` (usually the evaluator class itself)."""

    def deco(build: Callable[[Any], Evaluator]) -> Callable[[Any], Evaluator]:
        if name in _EVALUATORS and _EVALUATORS[name] is not build:
            raise ValueError(f"evaluator {name!r} is registered twice")
        _EVALUATORS[name] = build
        return build

    return deco


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
