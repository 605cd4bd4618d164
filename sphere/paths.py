"""Where the configs, the bundled data and the downloaded data live: in a source checkout and in an
installed wheel alike, from any working directory.

The repository keeps them at its top level (``configs/``, ``data/``: docs, presets and tests name
those paths); the wheel ships the same files inside the package as ``sphere/_configs`` and
``sphere/_data`` (``setup.py`` maps the directories at build time). A checkout, whether installed
editable or put on ``PYTHONPATH``, is recognised by ``configs/edit.yaml`` next to the package and
wins; otherwise the copies inside the installed package are used, found through
``importlib.resources``.

Downloaded full datasets (``python scripts/download_data.py``) go to ``download_dir()``:
``$SPHERE_DATA`` if set, else ``<repo>/data/full`` in a checkout, else a per-user cache
(``$XDG_CACHE_HOME/sphere/data`` or ``~/.cache/sphere/data``), because an installed package's
directory is often not writable.

Standard library only: everything in ``sphere`` may import this module.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

__all__ = ["DATA_ENV", "bundled_data_dir", "config_dir", "display_path", "download_dir", "source_root"]

DATA_ENV = "SPHERE_DATA"  # where downloaded datasets go (and are looked for)
_PACKAGED = {"configs": "_configs", "data": "_data"}  # repository directory -> name inside the package
_MARKERS = {"configs": "edit.yaml", "data": "counterfact_sample.json.gz"}  # a file each must hold


def source_root() -> Path | None:
    """The repository root when ``sphere`` runs from a source checkout (editable install or
    ``PYTHONPATH``), None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "configs" / _MARKERS["configs"]).is_file() else None


def _locate(name: str) -> Path:
    root = source_root()
    if root is not None and (root / name / _MARKERS[name]).is_file():
        return root / name
    packaged = Path(str(files("sphere").joinpath(_PACKAGED[name])))
    if (packaged / _MARKERS[name]).is_file():
        return packaged
    raise FileNotFoundError(
        f"the sphere {name} directory is missing: neither a checkout's {name}/ nor the installed "
        f"package's {packaged} holds {_MARKERS[name]}; reinstall sphere-edit (pip install sphere-edit) "
        "or run from a full checkout of the repository"
    )


def config_dir() -> Path:
    """The Hydra config directory (``configs/`` of a checkout, ``sphere/_configs`` of a wheel)."""
    return _locate("configs")


def bundled_data_dir() -> Path:
    """The small data shipped with the code: samples, corpus sample, general-ability sets,
    tokenizers (``data/`` of a checkout, ``sphere/_data`` of a wheel); read-only."""
    return _locate("data")


def download_dir() -> Path:
    """Where downloaded full datasets are written and looked for (see the module docstring)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    root = source_root()
    if root is not None:
        return root / "data" / "full"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "sphere" / "data"


def display_path(path: Path) -> str:
    """A path as the repository names it (``data/corpus/...``), the same in a checkout and in a
    wheel, for provenance compared across machines; other paths absolute."""
    resolved = path.resolve()
    data = bundled_data_dir().resolve()
    if resolved.is_relative_to(data):
        return (Path("data") / resolved.relative_to(data)).as_posix()
    root = source_root()
    if root is not None and resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    return str(resolved)
