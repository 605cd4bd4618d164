"""``sphere-edit --describe [overrides]``: every setting of the composed run, its value, its
default and its help line, grouped as the config is. Nothing is loaded or run."""

from __future__ import annotations

import sys
from dataclasses import fields, is_dataclass
from typing import Any

from editors.core.hparams import field_default
from sphere.errors import ConfigError


def rows(obj: Any, prefix: str) -> list[tuple[str, Any, Any, str]]:
    """(key, value, default, help) for every field of a (nested) config dataclass instance."""
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out.extend(rows(value, f"{prefix}{f.name}."))
            continue
        out.append((f"{prefix}{f.name}", value, field_default(f), f.metadata.get("help", "")))
    return out


def describe_main(overrides: list[str]) -> int:
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    try:
        s = validate(compose_config(overrides))
    except ConfigError as e:
        print(f"sphere-edit: config error: {e}", file=sys.stderr)
        return 2
    print(f"# editor {s.editor_name}: {type(s.editor).__name__}; values after your overrides")
    for group in ("editor", "sphere", "model", "dataset", "eval", "logger", "run"):
        print(f"\n[{group}]")
        for key, value, default, help_ in rows(getattr(s, group), f"{group}."):
            mark = "" if value == default else f"  (default {default!r})"
            print(f"  {key} = {value!r}{mark}")
            if help_:
                print(f"      {help_}")
    return 0
