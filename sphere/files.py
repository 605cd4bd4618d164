"""Writing and reading the project's own files safely: atomic writes, the one way to write a file
that must never be half-written (outputs, checkpoints, caches, downloads: a killed run leaves the
old file or the new one); safetensors files checksummed on write and verified on read
(``CorruptFileError``); and ``safe_name`` for file names made from ids. (Reading the datasets'
records is ``sphere.data.reading``.)"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editors.core.faults import kill_point

if TYPE_CHECKING:  # torch is imported where tensors are written, so text outputs stay light
    import torch

CHECKSUM_KEY = "sphere.sha256"


class CorruptFileError(OSError):
    """A file that exists but cannot be trusted (truncated, bit-flipped, not what it claims)."""


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temp file over ``path`` (same directory: atomic).

    The file gets the mode a plain ``open(path, "w")`` would give it, 0o666 less the umask, so a
    group-shared output directory (umask 002 or 027) works as the user set it up: ``mkstemp``
    creates 0600 files, and a fixed chmod would ignore the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, mode = _new_temp(path)
    try:
        write(tmp)
        kill_point(f"write:{path.name}")  # tests: a kill mid-write must leave the old file intact
        os.chmod(tmp, mode)  # the writer may have replaced the file (and its mode) by its own
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _new_temp(path: Path) -> tuple[str, int]:
    """(name, mode) of a new empty temp file beside ``path``, created like ``open(..., "w")``
    creates files: mode 0o666 with the kernel applying the umask. The umask is never read or
    changed (``os.umask`` can only be read by setting it, process-wide, racing other threads)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            return tmp, stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of ``tensors`` (in name order)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # The tensor's own buffer, not a ``tobytes()`` copy: a checkpoint or a d_ff² statistics
        # file would otherwise be duplicated in memory while it is hashed.
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically, with a checksum of its tensors in the header."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**(metadata or {}), CHECKSUM_KEY: tensors_digest(tensors)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a file written by ``save_tensors``; raises CorruptFileError, never
    returns tensors that fail their checksum. Files without a checksum (written by other tools or
    older versions) load unverified."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptFileError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    expected = meta.get(CHECKSUM_KEY)
    if expected is not None and tensors_digest(tensors) != expected:
        raise CorruptFileError(f"{path} fails its checksum (its contents changed after it was written)")
    return tensors, meta


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors file, without reading (or verifying) its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptFileError(f"{path} cannot be read ({type(e).__name__}: {e})") from None


def safe_name(text: str) -> str:
    """A file-name component from an arbitrary id (a model id, a corpus name): letters, digits,
    '.', '_' and '-' only, never '.' or '..', so a crafted id cannot point outside its directory."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "__")).strip(".")
    if not name:
        name = "id_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return name
