"""Base editors, registered by name (``editors.get_editor("memit")``); see editors/registry.py."""

from editors.registry import available_editors, get_editor, register_editor

__all__ = ["available_editors", "get_editor", "register_editor"]
