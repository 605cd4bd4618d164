"""Editor registry: ``@register_editor("memit", hparams=..., placement=..., display_name=..., footprint=...)``
on a builder.

Editors are discovered, not listed: on the first lookup every module of the ``editors`` package is
imported (so a new ``editors/<name>.py`` registers itself), then every module named by the
``sphere.editors`` entry-point group (so a pip-installed package can add editors too). Modules are
imported lazily so that ``import editors`` (e.g. for ``EditRequest`` in the data readers) does not
pull in torch. Unknown names are answered with the known ones and a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from editors.core.footprint import Footprint, ShapeInfo
from editors.core.protocol import Editor, Placement

ENTRY_POINT_GROUP = "sphere.editors"


@dataclass(frozen=True)
class EditorEntry:
    """A registered editor: its hyperparameter dataclass, how to build it, where it calls transforms.

    Attributes:
        name: the name configs and the API use (``editor=memit``).
        hparams: the dataclass of the editor's knobs (validated in its ``__post_init__``).
        build: ``build(hp, ctx) -> Editor``; a class implementing the protocol, or a function that
            composes one.
        placement: ``placement(hp) -> Placement`` (a function because it may depend on a knob,
            e.g. PRUNE's ``feedback``).
        summary: first line of the builder's docstring, for ``--describe`` and docs.
        display_name: how tables and figures name it ("AlphaEdit"); the name itself by default.
        footprint: ``footprint(shape, hp) -> Footprint``: the memory and disk of the pieces the
            editor is built from (editors/core/footprint.py), composed as the builder composes the
            pieces, e.g. ``spread_footprint(shape, hp, memit_solve(hp))``. The run plan
            (``run.plan=true`` and the start-up fit check) reads it; None: unknown, and the plan
            says that it counts none of the editor's own memory.
    """

    name: str
    hparams: type
    build: Callable[[Any, Any], Editor]
    placement: Callable[[Any], Placement]
    summary: str
    display_name: str = ""
    footprint: Callable[[ShapeInfo, Any], Footprint] | None = None

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)


_EDITORS: dict[str, EditorEntry] = {}


class UnknownEditorError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; a one-line error reads better
        return str(self.args[0])


def register_editor(
    name: str,
    *,
    hparams: type,
    placement: Placement | Callable[[Any], Placement],
    display_name: str | None = None,
    footprint: Callable[[ShapeInfo, Any], Footprint] | None = None,
):
    """Decorator registering ``build`` (a class or a function) under ``name``; duplicates are refused.

    ``display_name`` and ``footprint``: see ``EditorEntry``.
    """

    def deco(build: Callable[[Any, Any], Editor]) -> Callable[[Any, Any], Editor]:
        if name in _EDITORS and _EDITORS[name].build is not build:
            raise ValueError(f"editor {name!r} is registered twice ({_EDITORS[name].build}, {build})")
        place = placement if callable(placement) else (lambda hp, p=placement: p)
        summary = ((build.__doc__ or "").strip().splitlines() or [""])[0]
        _EDITORS[name] = EditorEntry(name, hparams, build, place, summary, display_name or name, footprint)
        return build

    return deco


def unregister_editor(name: str) -> None:
    """Remove ``name`` (tests that register throw-away editors clean up with it)."""
    _EDITORS.pop(name, None)


def _discover() -> None:
    """Import every editor module not imported yet (cheap when all are: imports are cached)."""
    import editors

    importlib.invalidate_caches()  # see files added since the last look (a new editor in a notebook)
    for info in pkgutil.iter_modules(editors.__path__):
        if not info.ispkg and info.name != "registry":
            importlib.import_module(f"editors.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value.split(":")[0])


def get_editor(name: str) -> EditorEntry:
    """The entry registered as ``name``; raises UnknownEditorError naming the known ones."""
    if name not in _EDITORS:
        _discover()
    if name not in _EDITORS:
        close = difflib.get_close_matches(name, _EDITORS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownEditorError(
            f"unknown editor {name!r}{hint} Known editors: {', '.join(sorted(_EDITORS))}"
        )
    return _EDITORS[name]


def available_editors() -> list[str]:
    _discover()
    return sorted(_EDITORS)
