"""Command-line overrides in our voice: one line naming the key, what it takes, and a did-you-mean.

Hydra answers a mistyped group option or key with a dozen lines (its search path, the internal
``base_*`` schemas as options) and exit code 1, while ``sphere-edit`` promises exit code 2 and one
line for a configuration error. Two pieces close that gap:

* ``check_overrides`` before Hydra runs: an override Hydra cannot parse is named, and the
  ``base_*`` schemas (``sphere/run/compose.py``: the dataclasses the YAML files build on) are not
  selectable: Hydra would accept ``editor=base_memit`` and run the bare defaults.
* ``one_line`` after Hydra raised (``sphere-edit`` lets it raise, ``hydra_raises``): its
  composition and OmegaConf errors carry the group and its options, or the key, the node's type
  and its keys, from which the line is written.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sphere.errors import ConfigError
from sphere.run.compose import CONFIG_DIR

INTERNAL = "base_"  # the schemas' names in every group (compose.register_schemas)
MAX_KEYS = 12  # keys listed in one line; --describe lists them all


def command_overrides(argv: Sequence[str]) -> list[str]:
    """The ``key=value`` overrides of a Hydra command line (flags such as ``-m`` left out); empty
    when the line does not parse (Hydra then reports it in its own words)."""
    import io

    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra prints the usage, once
            return list(get_args_parser().parse_args(list(argv)).overrides)
    except SystemExit:
        return []


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse, with one line each, an override that does not parse and a ``base_*`` choice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for text in overrides:
        try:
            o = parser.parse_override(text)
        except HydraException as e:
            raise ConfigError(
                f"{text!r} is not an override Hydra can read ({_first_line(e)}); "
                "write key=value, a list as key=[a,b], a sweep as key=a,b"
            ) from None
        if "." in o.key_or_group:
            continue  # a key, not a group choice
        try:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        except HydraException:
            continue  # glob(...) and the like: nothing to check here
        for value in values:
            if isinstance(value, str) and Path(value).name.startswith(INTERNAL):
                raise ConfigError(choice_error(o.key_or_group, value, group_options(o.key_or_group)))


def plan_requested(overrides: Sequence[str]) -> bool:
    """Whether the command line sets ``run.plan=true`` (a plan writes nothing: no run directory)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for text in overrides:
        try:
            o = parser.parse_override(text)
        except HydraException:
            continue
        if o.key_or_group == "run.plan" and not o.is_sweep_override() and not o.is_delete():
            return str(o.value()).lower() == "true"
    return False


def group_options(group: str, found: Sequence[str] | None = None) -> list[str]:
    """The options of a config group a user may choose: ``found`` (Hydra's list) or the YAML files
    under configs/<group>/, without the internal schemas."""
    if found is None:
        root = Path(CONFIG_DIR) / group
        found = [str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")]
    return sorted({o for o in found if not Path(o).name.startswith(INTERNAL)})


def choice_error(group: str, value: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(value.removeprefix(INTERNAL), options, n=1)
    hint = f" (did you mean {group}={close[0]}?)" if close else ""
    return f"{group}={value}: no such {group}; choose one of {', '.join(options)}{hint}"


@contextlib.contextmanager
def hydra_raises() -> Iterator[None]:
    """Let Hydra raise its errors instead of printing them and exiting with 1: it does so when
    ``HYDRA_FULL_ERROR`` is set, so it is set for the call (and restored after)."""
    old = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old


def one_line(e: BaseException) -> str:
    """A Hydra composition or OmegaConf error as one line naming the key and what it takes."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(e, MissingConfigException) and e.missing_cfg_file:
        group, _, value = str(e.missing_cfg_file).rpartition("/")
        if group and e.options is not None:
            return choice_error(group, value, group_options(group, e.options))
    cause = e if isinstance(e, ConfigKeyError | ConfigAttributeError | ValidationError) else e.__cause__
    try:
        if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
            return _key_error(cause)
        if isinstance(cause, ValidationError) and cause.full_key:
            return _value_error(cause)
    except Exception:  # noqa: BLE001 - a message is never worth a second error: say it plainly
        pass
    text = _first_line(e)
    return f"{text} ({_first_line(cause)})" if cause is not None else text


def _key_error(cause: Any) -> str:
    key = str(cause.full_key)
    parent, _, name = key.rpartition(".")
    keys = sorted(str(k) for k in cause.parent_node if k != "hydra") if _is_dict(cause.parent_node) else []
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    where = parent or "the config"
    shown = ", ".join(keys[:MAX_KEYS]) + (
        ", ... (sphere-edit --describe lists them)" if len(keys) > MAX_KEYS else ""
    )
    return f"{key}: no such key in {where}{hint}; its keys: {shown}"


# OmegaConf's words for a node's type ("could not be converted to Integer", "not a valid bool")
_TYPES = {
    "integer": "an integer",
    "float": "a number",
    "bool": "true or false",
    "boolean": "true or false",
    "string": "a string",
}


def _value_error(cause: Any) -> str:
    msg = str(cause.msg).splitlines()[0]
    m = re.search(r"(?:converted to|not a valid) (\w+)", msg)
    takes = _TYPES.get(m.group(1).lower()) if m else None
    if takes is None:
        return f"{cause.full_key}={cause.value}: {msg}"
    node = cause.child_node
    if node is not None and node._is_optional():
        takes += " or null"
    return f"{cause.full_key}={cause.value}: {cause.full_key} takes {takes}"


def _is_dict(node: Any) -> bool:
    from omegaconf import DictConfig

    return isinstance(node, DictConfig)


def _first_line(e: BaseException | None) -> str:
    text = str(e).strip() if e is not None else ""
    return text.splitlines()[0] if text else type(e).__name__
