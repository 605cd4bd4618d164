#!/usr/bin/env python
"""Print constraints.txt: the exact version of every installed package that sphere-edit (with the
extras ``make setup`` installs) depends on, directly or not; ``make constraints`` writes the file.

The versions are those of ``pip freeze`` in this environment, kept to the project's dependency
closure: what other tools installed into the same virtualenv is left out, and so is torch with
everything only torch needs (CUDA wheels differ per machine; the Makefile's TORCH pins torch).

Example: .venv/bin/python scripts/freeze_constraints.py > constraints.txt
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "sphere-edit"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRAS = ("dev", "gguf", "slurm", "optuna")  # what `make setup` installs
LEFT_TO_THE_MAKEFILE = {"torch"}  # TORCH=... picks the build for the machine's CUDA


def installed() -> dict[str, metadata.Distribution]:
    return {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}


def declared() -> list[str]:
    """The project's requirements as pyproject.toml states them now (the installed metadata lags
    behind an edit until the next ``make setup``), in the metadata's ``Requires-Dist`` form."""
    import tomllib  # Python 3.11+

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines += [f'{r}; extra == "{extra}"' for r in reqs]
    return lines


def requirements(dist: metadata.Distribution, extras: tuple[str, ...]) -> list[Requirement]:
    """``dist``'s requirements that apply here, with ``extras`` requested."""
    out = []
    own = canonicalize_name(dist.metadata["Name"]) == canonicalize_name(PROJECT)
    for line in declared() if own else dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            out.append(req)
    return out


def closure(dists: dict[str, metadata.Distribution], root: str, extras: tuple[str, ...]) -> set[str]:
    """Canonical names of the installed packages ``root[extras]`` needs, torch's subtree excluded."""
    project = canonicalize_name(root)
    visited: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(project, tuple(sorted(extras)))]
    while todo:
        node = todo.pop()
        if node in visited:
            continue
        visited.add(node)
        for req in requirements(dists[node[0]], node[1]):
            dep = canonicalize_name(req.name)
            if dep in LEFT_TO_THE_MAKEFILE or dep not in dists:
                continue  # torch, or a dependency for another platform / Python
            todo.append((dep, tuple(sorted(req.extras))))
    return {name for name, _ in visited} - {project}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    dists = installed()
    if canonicalize_name(PROJECT) not in dists:
        print(f"error: {PROJECT} is not installed here; run `make setup` first", file=sys.stderr)
        return 1
    names = closure(dists, PROJECT, EXTRAS)
    print(
        "# Exact versions of sphere-edit's dependencies (extras: " + ", ".join(EXTRAS) + "), torch excluded"
    )
    print("# (the Makefile's TORCH pins it). Used by `make setup` (pip install -c constraints.txt ...).")
    print("# Refresh after upgrading packages in .venv: make constraints")
    for name in sorted(names):
        print(f"{name}=={dists[name].version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
