"""Editor registry: ``@register_editor("memit")`` on the class; lookups suggest close names."""

from __future__ import annotations

import difflib
import importlib

_EDITORS: dict[str, type] = {}
# Built-in editor modules, imported on first lookup so that importing ``editors`` (e.g. for
# EditRequest in the data readers) does not pull in torch.
BUILTIN = ("editors.memit", "editors.rome", "editors.rect", "editors.prune", "editors.alphaedit")


def _load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(module)


class UnknownEditorError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; a one-line error reads better
        return str(self.args[0])


def register_editor(name: str):
    """Class decorator adding an editor under ``name`` (duplicates are a programming error)."""

    def deco(cls: type) -> type:
        if name in _EDITORS:
            raise ValueError(
                f"editor {name!r} is registered twice ({_EDITORS[name].__name__}, {cls.__name__})"
            )
        cls.name = name
        _EDITORS[name] = cls
        return cls

    return deco


def get_editor(name: str) -> type:
    _load_builtin()
    if name not in _EDITORS:
        close = difflib.get_close_matches(name, _EDITORS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownEditorError(
            f"unknown editor {name!r}{hint} Known editors: {', '.join(sorted(_EDITORS))}"
        )
    return _EDITORS[name]


def available_editors() -> list[str]:
    _load_builtin()
    return sorted(_EDITORS)
