"""The project's own error types, raised with a one-line message that names the setting and the fix."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what is allowed."""


def check_choice(key: str, value: object, allowed: tuple) -> None:
    """Refuse ``key=value`` unless ``value`` is one of ``allowed`` (a ValueError naming them). Here,
    with no dependency, so that every config dataclass can check its strings without importing
    torch (``sphere.method.projection`` used to hold it)."""
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


_RENAMED_SAID: set[str] = set()


def warn_renamed(message: str) -> None:
    """Say that a renamed command, module or config key was used under its old name: one line on
    stderr, ``FutureWarning: <message>``, once per process (``message`` names the new name). Old
    names keep working for one release."""
    import sys

    if message in _RENAMED_SAID:
        return
    _RENAMED_SAID.add(message)
    print(f"FutureWarning: {message}", file=sys.stderr)
