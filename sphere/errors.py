"""The project's own error types, raised with a one-line message that names the setting and the fix."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what is allowed."""
