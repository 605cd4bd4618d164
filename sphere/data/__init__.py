"""Dataset loading: one entry point, ``load_records``, from a bundled sample, a downloaded file or a path.

Bundled samples (``data/*_sample.json.gz``) let tests and CPU smoke runs work offline; the full
canonical files land in ``data/full/`` via ``python scripts/download_data.py <name>``. A few named
datasets (``SHARED_FILES``: ``counterfact-edit``) are also found in a shared data folder
(``$SPHERE_SHARED_DATA`` or ``<repo>/../shared/data``) and verified by content on every load
(``sphere/data/shared.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sphere.data.checks import check_tokenizable
from sphere.data.counterfact import read_counterfact
from sphere.data.download import DEFAULT_DEST, FILES, verify_sidecar
from sphere.data.reading import MAX_TEXT_CHARS, MalformedRecordError
from sphere.data.records import EditRecord, RecordList
from sphere.data.shared import SHARED_DATA_ENV, SHARED_FILES, locate, missing_message, verify_content
from sphere.data.zsre import read_zsre
from sphere.paths import bundled_data_dir

__all__ = [
    "DATA_DIR",
    "FULL_FILES",
    "MAX_TEXT_CHARS",
    "SAMPLES",
    "SHARED_DATA_ENV",
    "SHARED_FILES",
    "EditRecord",
    "MalformedRecordError",
    "RecordList",
    "check_tokenizable",
    "load_records",
    "read_counterfact",
    "read_zsre",
    "resolve_data_path",
]

DATA_DIR = bundled_data_dir()  # data/ of a checkout or sphere/_data of a wheel (sphere/paths.py)

# Files committed with the repo (written by scripts/make_samples.py; provenance in data/SAMPLES.md).
SAMPLES: dict[str, Path] = {
    "counterfact-sample": DATA_DIR / "counterfact_sample.json.gz",
    "counterfact-tune": DATA_DIR / "counterfact_tune.json.gz",  # EasyEdit train split: tuning only
    "zsre-sample": DATA_DIR / "zsre_sample.json.gz",
    "wiki-sample": DATA_DIR / "corpus" / "wiki_sample.jsonl.gz",
}

# Canonical full files, present only after scripts/download_data.py.
FULL_FILES: dict[str, Path] = {name: DEFAULT_DEST / filename for name, filename in FILES.items()}

_READERS: dict[str, Callable[..., RecordList]] = {
    "counterfact": read_counterfact,
    "zsre": read_zsre,
}


def resolve_data_path(name_or_path: str | Path) -> Path:
    """Map a known dataset name (``SAMPLES`` or ``FULL_FILES`` key) to its file; anything else is a path.

    A ``SHARED_FILES`` name maps to the first of its places that exists (``data/full/``, then the
    shared data folders), or to its ``data/full/`` path when none does."""
    if isinstance(name_or_path, str):
        if name_or_path in SAMPLES:
            return SAMPLES[name_or_path]
        if name_or_path in SHARED_FILES:
            full = FULL_FILES[name_or_path]
            return locate(name_or_path, full.parent) or full
        if name_or_path in FULL_FILES:
            return FULL_FILES[name_or_path]
    return Path(name_or_path).expanduser()


def _missing_hint(name_or_path: str | Path, path: Path) -> str:
    """What to do about a missing file: the download command for canonical files, else the options."""
    for name, full in FULL_FILES.items():
        if name_or_path == name or path.resolve() == full.resolve():
            return f"run `python scripts/download_data.py {name}` to fetch it"
    return (
        f"pass an existing file, a bundled sample ({', '.join(sorted(SAMPLES)[:2])}), or fetch the full "
        f"files with `python scripts/download_data.py {' '.join(FILES)}`"
    )


def load_records(
    kind: str,
    path: str | Path,
    limit: int | None = None,
    skip_malformed: bool = False,
    zsre_target: str = "answers",
) -> RecordList:
    """Records of a CounterFact/MultiCounterFact (``kind="counterfact"``) or ZsRE (``kind="zsre"``) file.

    ``path`` may be a dataset name understood by ``resolve_data_path``. ``limit`` keeps the first N
    valid records; ``skip_malformed`` logs and skips bad records instead of raising.

    Returns a ``RecordList``: a plain ``list`` of ``EditRecord`` with one extra attribute,
    ``skipped``, the number of malformed records ``skip_malformed`` dropped (0 when none were, and
    always 0 without ``skip_malformed``, since a malformed record then raises). Records past
    ``limit`` are not read, so they are not counted either.

    Raises ``MalformedRecordError`` (a ``ValueError``; one line naming the file, case_id, index,
    field, what was found and what is allowed) for a malformed record, ``ValueError`` for an
    unreadable file (not JSON, not UTF-8, truncated gzip, empty, not a list) and
    ``FileNotFoundError`` for a missing one. A ``SHARED_FILES`` name (``counterfact-edit``) is
    verified by the sha256 of its decompressed content: a mismatch is a ``ValueError`` naming the
    file, the fix and the expected checksum. Tokenizer-dependent problems (a target that tokenizes
    to nothing) are ``check_tokenizable``'s job.
    """
    if kind not in _READERS:
        raise ValueError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(sorted(_READERS))}")
    resolved = resolve_data_path(path)
    shared = path if isinstance(path, str) and path in SHARED_FILES else None
    if not resolved.is_file():
        if shared:
            raise FileNotFoundError(missing_message(shared, FULL_FILES[shared].parent))
        raise FileNotFoundError(f"dataset file {resolved} not found; {_missing_hint(path, resolved)}")
    verify_sidecar(resolved)
    if shared:
        verify_content(shared, resolved)  # a copy without a sidecar is checked all the same
    if kind == "zsre":
        return read_zsre(resolved, limit=limit, skip_malformed=skip_malformed, target=cast(Any, zsre_target))
    return _READERS[kind](resolved, limit=limit, skip_malformed=skip_malformed)
