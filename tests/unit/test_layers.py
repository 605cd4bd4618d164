"""Imports point one way, and private names stay private: the architecture's two import rules,
checked on every ``make test`` (CI runs it), so that a violation fails with the import that breaks it.

* The layers (``[tool.importlinter]`` in pyproject.toml, docs/design.md): ``cli`` → ``api`` /
  ``bench`` / ``export`` / ``covariance`` → ``report`` → ``run`` → ``evaluation`` / ``models`` →
  ``data`` → ``method`` → ``files`` / ``paths`` / ``errors`` / ``extras`` → ``editors``. Checked by
  import-linter (``lint-imports``, also ``make lint``), which follows every import, function-level
  ones included, and indirect chains.
* No module imports another module's private name (``from x import _name``), nor a private module
  (``x._mod``) from outside the package that holds it: what is shared gets a public name.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGES = ("sphere", "editors")
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_imports_follow_the_layers():
    proc = subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},  # the report's lines unwrapped
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = proc.stdout + proc.stderr
    if proc.returncode != 0:
        broken = report[report.find("Broken contracts") :] if "Broken contracts" in report else report
        pytest.fail(f"an import goes against the layers (pyproject.toml):\n{broken}", pytrace=False)
    assert "1 kept, 0 broken" in report, report  # the contract was found and checked


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted name, whether it is a package's __init__) of a source file under ``root``."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(dotted: str, root: Path) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _private_module_outside(target: str, importer: str) -> str | None:
    """The private module in ``target``'s path when ``importer`` is not inside its parent package."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            parent = ".".join(parts[:i])
            if importer != parent and not importer.startswith(parent + "."):
                return ".".join(parts[: i + 1])
    return None


def private_imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``file:line: ...`` for every import, in ``packages`` under ``root``, of another module's
    private name or of a private module from outside its package (ours only: third-party
    internals are their own business)."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            importer, is_package = _module_name(path, root)
            where = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                targets: list[tuple[str, str | None]] = []  # (module, name imported from it)
                if isinstance(node, ast.Import):
                    targets = [(alias.name, None) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:  # relative: from the importer's package, up level - 1
                        package_parts = importer.split(".") if is_package else importer.split(".")[:-1]
                        up = package_parts[: len(package_parts) - node.level + 1]
                        base = ".".join([*up, *([node.module] if node.module else [])])
                    targets = [(base, alias.name) for alias in node.names]
                for module, name in targets:
                    if module.split(".")[0] not in packages:
                        continue
                    if name is not None and _is_module(f"{module}.{name}", root):
                        module, name = f"{module}.{name}", None  # `from package import submodule`
                    private = _private_module_outside(module, importer)
                    if private:
                        found.append(f"{where}:{node.lineno}: imports the private module {private}")
                    elif name is not None and _is_private(name) and module != importer:
                        found.append(f"{where}:{node.lineno}: from {module} import {name}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = private_imports(ROOT)
    if found:
        listed = "\n".join(found)
        pytest.fail(f"private names used across modules (give them a public name):\n{listed}", pytrace=False)


def test_the_private_name_check_finds_each_kind(tmp_path):
    """The check above passes because the code is clean, not because it sees nothing."""
    pkg = tmp_path / "sphere"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "other").mkdir()
    for f in ("__init__.py", "a.py", "inner/__init__.py", "inner/_impl.py", "other/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "other" / "_io.py").write_text("")
    (pkg / "a.py").write_text("_x = 1\nfrom sphere.a import _x as _y\n")  # its own: fine
    (pkg / "inner" / "b.py").write_text(
        "from sphere.a import _x\n"  # another module's private name
        "from ..a import _x as _z\n"  # the same, relative
        "from sphere.other import _io\n"  # a private module from outside its package
        "import sphere.inner._impl\n"  # inside its package: fine
        "from . import _impl\n"  # fine
        "from os import _exit\n"  # not ours
    )
    assert private_imports(tmp_path, ("sphere",)) == [
        "sphere/inner/b.py:1: from sphere.a import _x",
        "sphere/inner/b.py:2: from sphere.a import _x",
        "sphere/inner/b.py:3: imports the private module sphere.other._io",
    ]
