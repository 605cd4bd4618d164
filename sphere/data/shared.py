"""Named datasets that are found in more than one place and verified by content on every load.

``counterfact-edit`` (EasyEdit's 10,000-record CounterFact edit split) is downloaded into
``data/full/`` by ``python scripts/download_data.py counterfact-edit`` like the other full files,
but machines of this project also keep a gzipped copy in a shared data folder: the ``shared/data``
folder beside the checkout (``<repo>/../shared/data``) or the folder named by the environment
variable ``SPHERE_SHARED_DATA``. Looked for in that order: ``data/full/``, ``$SPHERE_SHARED_DATA``,
``<repo>/../shared/data``; the first file that exists is used, and a damaged one is an error
rather than a reason to try the next (a silently different edit stream would break the pairing of
runs).

Why the checksum is of the *decompressed* content: the download is the plain JSON, the shared copy
is gzipped, and both must be recognised as the same records; recompressing a file does not change
it either. Why on every load rather than through a ``.sha256`` sidecar: a shared copy has no
sidecar, and a 4 MB file hashes in milliseconds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

from sphere.data.download import DEFAULT_DEST, EXPECTED_SHA256, FILES

SHARED_DATA_ENV = "SPHERE_SHARED_DATA"
"""Environment variable naming a shared data folder (the layout of ``<repo>/../shared/data``)."""

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
"""The shared data folder beside the checkout, where this project's machines keep offline copies."""

# name -> path of its gzipped copy under a shared data folder.
SHARED_FILES: dict[str, str] = {
    "counterfact-edit": "counterfact_easyedit_splits/counterfact-edit.json.gz",
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def shared_dirs() -> list[Path]:
    """The shared data folders to look in, in order: ``$SPHERE_SHARED_DATA`` (if set), then the one
    beside the checkout. Read at call time, so setting the variable in a running process works."""
    env = os.environ.get(SHARED_DATA_ENV, "").strip()
    return ([Path(env).expanduser()] if env else []) + [SHARED_DIR]


def candidates(name: str, full_dir: Path = DEFAULT_DEST) -> list[Path]:
    """Every place ``name`` may be, in the order they are tried."""
    return [full_dir / FILES[name], *(d / SHARED_FILES[name] for d in shared_dirs())]


def locate(name: str, full_dir: Path = DEFAULT_DEST) -> Path | None:
    """The first existing file of ``name``, or None."""
    return next((p for p in candidates(name, full_dir) if p.is_file()), None)


def _fix(name: str) -> str:
    return (
        f"run `python scripts/download_data.py {name}` (it goes to data/full/), or set "
        f"{SHARED_DATA_ENV} to a folder holding {SHARED_FILES[name]}"
    )


def missing_message(name: str, full_dir: Path = DEFAULT_DEST) -> str:
    """One line: where ``name`` was looked for, how to get it and what its content must hash to."""
    looked = ", ".join(str(p) for p in candidates(name, full_dir))
    return (
        f"dataset {name} not found (looked in {looked}); {_fix(name)}; expected sha256 of the "
        f"decompressed content {EXPECTED_SHA256[name]}"
    )


def content_sha256(path: Path) -> str:
    """sha256 of the file's content, decompressed first when it is gzip (detected by magic bytes).

    Raises ``ValueError`` for gzip data that is truncated or corrupt."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == _GZIP_MAGIC
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"gzip data is damaged ({err})") from None
    return digest.hexdigest()


def verify_content(name: str, path: Path) -> None:
    """Raise a one-line ``ValueError`` naming the file, the fix and the expected checksum unless
    ``path``'s (decompressed) content hashes to ``EXPECTED_SHA256[name]``."""
    expected = EXPECTED_SHA256[name]
    try:
        got = content_sha256(path)
    except ValueError as err:
        got = str(err)
    else:
        if got == expected:
            return
        got = f"its decompressed content has sha256 {got}"
    raise ValueError(
        f"{path}: not the {name} dataset: {got}, expected sha256 {expected}; delete or restore that "
        f"file and {_fix(name)}"
    )
