"""Where a run's numbers came from: code, software, machine, model and data, for ``summary.json``.

A result table is only as trustworthy as the claim that its runs differ in the one setting being
compared. Each field is here so a reviewer (or a later self) can check that claim from the run
directory alone, without asking which checkout or which download produced it:

- ``code``: the git commit of the checkout the ``sphere`` package was imported from and whether its
  tree had changes (``git status --porcelain`` non-empty): two runs at one commit with a clean tree
  ran the same code. Outside a git checkout (an installed wheel, no git on the machine) the commit
  is ``"unknown"`` and ``dirty`` null, and the package version is what identifies the code. A run
  never fails for lack of git.
- ``versions``: python, torch, transformers and this package. Kernels and defaults change between
  releases (attention implementations, tokenizer fixes), so the same commit can give other numbers
  on another environment.
- ``machine``: the device(s) the model runs on, the GPU's name, torch's thread count and the CPU
  count: what timings depend on, and what to match when a number is reproduced.
- ``model``: its config name, the id the statistics cache is keyed by (``sphere.models.model_id``),
  ``model.revision``, and a digest where the loader already knows one, never by hashing weights
  here: the GGUF's sha256 from the config (verified when the file is assembled), the Hub commit a
  revision resolved to, or the pip package that ships the GGUF.
- ``data``: the resolved dataset file and the sha256 of its decompressed content (gzip headers
  carry a timestamp, so the compressed bytes of one content differ between copies): the same
  records, whatever the file is called or wherever it was copied.

Collecting it takes milliseconds (two ``git`` calls and one pass over a data file of a few MB); a
resumed run records the provenance of the process that finished it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from sphere.data.shared import content_sha256
from sphere.paths import display_path

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
_GIT_TIMEOUT_S = 5.0  # a git that hangs (network filesystem, huge tree) must not hold up the run


def package_root() -> Path:
    """The directory holding the ``sphere`` package: the repository root in a source checkout."""
    import sphere

    return Path(sphere.__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    """Output of ``git -C root <args>``, None when git is missing, fails or hangs.

    ``--no-optional-locks``: ``git status`` would otherwise refresh and rewrite the index of a
    checkout that other people may be using at the same time.
    """
    git = shutil.which("git")
    if git is None:
        return None
    try:
        proc = subprocess.run(
            [git, "--no-optional-locks", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def code_version(root: Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout at ``root`` (default: where ``sphere`` was imported
    from); ``"unknown"`` / None unless ``root`` is itself the top of a git work tree, so a wheel
    installed in a virtualenv that sits inside some other repository is not given that repository's
    commit."""
    root = (root or package_root()).resolve()
    unknown = {"commit": UNKNOWN, "dirty": None}
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != root:
        return unknown
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:  # a repository without commits
        return unknown
    status = _git(root, "status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def software_versions() -> dict[str, str | None]:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # None for a CPU build of torch
        "transformers": transformers.__version__,
        "sphere-edit": _version("sphere-edit"),
        "platform": platform.platform(),
    }


def machine(model: Any) -> dict[str, Any]:
    """The devices holding the model's parameters (several under ``model.device_map``), the GPU's
    name, and the CPU resources CPU runs and host-side work depend on."""
    import torch

    devices = sorted({str(p.device) for p in model.parameters()}) if model is not None else []
    cuda = [d for d in devices if d.startswith("cuda")]
    return {
        "device": devices[0] if len(devices) == 1 else devices,
        "gpu": torch.cuda.get_device_name(torch.device(cuda[0])) if cuda else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def model_identity(cfg: Any, model: Any, model_id: str) -> dict[str, Any]:
    """Name, cache id, revision and the digest the loader already knows (see the module docstring)."""
    digest = None
    if getattr(cfg, "gguf_sha256", None):
        digest = f"sha256:{cfg.gguf_sha256}"
    elif getattr(cfg, "gguf_package", None):
        digest = f"pip:{cfg.gguf_package}=={_version(cfg.gguf_package)}"
    else:
        commit = getattr(getattr(model, "config", None), "_commit_hash", None)  # set by from_pretrained
        if isinstance(commit, str) and commit:
            digest = f"hub-commit:{commit}"
    return {
        "name": getattr(cfg, "name", None),
        "id": model_id,
        "source": getattr(cfg, "source", None),
        "revision": getattr(cfg, "revision", None),
        "digest": digest,
    }


def data_identity(name_or_path: str | Path | None) -> dict[str, Any]:
    """The dataset file a name resolves to and its content digest; None fields when it cannot be read
    (records given in-process, a file removed since loading): provenance never stops a run."""
    from sphere.data import resolve_data_path

    if name_or_path is None:
        return {"path": None, "sha256": None}
    path = resolve_data_path(name_or_path)
    try:
        return {"path": _portable(path), "sha256": content_sha256(path)}
    except (OSError, ValueError) as e:  # ValueError: damaged gzip (sphere.data.shared)
        log.warning("provenance: cannot read dataset %s (%s); its digest is not recorded", path, e)
        return {"path": _portable(path), "sha256": None}


def _portable(path: Path) -> str:
    """The data file as the repository names it (``data/...``); a file outside the repository (a
    shared data folder, a download cache) by its file name alone, since its machine's directory
    says nothing elsewhere and the content sha256 identifies it."""
    shown = display_path(path)
    return shown if not Path(shown).is_absolute() else path.name


def collect(s: Any, model: Any, model_id: str) -> dict[str, Any]:
    """The ``provenance`` object of ``summary.json`` for a run with settings ``s`` on ``model``."""
    return {
        "code": code_version(),
        "versions": software_versions(),
        "machine": machine(model),
        "model": model_identity(s.model, model, model_id),
        "data": {"kind": s.dataset.kind, **data_identity(s.dataset.path)},
    }


def one_line(p: dict[str, Any]) -> str:
    """The provenance as one log line: enough to tell two runs' code, software and inputs apart."""
    code, v, m = p["code"], p["versions"], p["machine"]
    commit = code["commit"][:12] + (" (modified)" if code["dirty"] else "")
    sha = p["data"]["sha256"]
    return (
        f"provenance: sphere-edit {v['sphere-edit']} @ {commit}; python {v['python']}, torch {v['torch']}, "
        f"transformers {v['transformers']}; device {m['device']}"
        + (f" ({m['gpu']})" if m["gpu"] else "")
        + f", {m['torch_threads']} threads / {m['cpu_count']} CPUs; model {p['model']['id']}"
        + (f" [{p['model']['digest']}]" if p["model"]["digest"] else "")
        + f"; data {p['data']['path']} sha256 {sha[:12] if sha else UNKNOWN}"
    )
