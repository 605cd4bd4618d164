"""The layout of tests/: shared functions and constants come from tests/helpers.py, fixtures from
tests/conftest.py; no file imports from ``conftest`` or from a ``test_*`` module (importing one runs
its module-level code and fixtures twice, under two names, and ties tests to each other)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def forbidden(module: str) -> bool:
    parts = module.split(".")
    return parts[-1] == "conftest" or any(p.startswith("test_") for p in parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_no_test_imports_from_conftest_or_another_test_module():
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 40 and (TESTS / "helpers.py") in files
    bad = [
        f"{path.relative_to(TESTS)}:{line}: {module}"
        for path in files
        for line, module in imports_of(path)
        if forbidden(module)
    ]
    assert not bad, "import shared code from tests/helpers.py instead:\n" + "\n".join(bad)


def test_the_check_sees_every_form_of_import():
    assert forbidden("conftest") and forbidden("test_report") and forbidden("tests.unit.test_report")
    assert not forbidden("helpers") and not forbidden("virtual_devices") and not forbidden("sphere.run.sweep")
