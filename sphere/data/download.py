"""Fetch the canonical benchmark files (CounterFact, MultiCounterFact, ZsRE) with sha256 verification.

Standard library only (plus tqdm) so it works before anything heavy is installed. Downloads stream into
a temp file in the destination directory and are renamed into place only once the hash matches, so an
interrupted or corrupted download never leaves a file that the readers would trust.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from sphere.files import atomic_write, atomic_write_text
from sphere.paths import download_dir

log = logging.getLogger("sphere.data.download")

DEFAULT_BASE_URL = "https://memit.baulab.info/data/dsets"
DEFAULT_DEST = download_dir()  # <repo>/data/full, $SPHERE_DATA or a user cache (sphere/paths.py)

# name -> file name under DEFAULT_BASE_URL
FILES: dict[str, str] = {
    "counterfact": "counterfact.json",
    "multi_counterfact": "multi_counterfact.json",
    # EasyEdit's 10,000-record CounterFact edit split (EasyEdit schema); fetched from URLS. Also found in
    # a shared data folder, and verified by content on every load: sphere/data/shared.py.
    "counterfact-edit": "counterfact-edit.json",
    "zsre": "zsre_mend_eval.json",
    # CounterFact consistency (the generation test): snippets and the reference's TF-IDF statistics.
    "attribute_snippets": "attribute_snippets.json",
    "idf": "idf.npy",
    "tfidf_vocab": "tfidf_vocab.json",
    # General-ability tasks (SPHERE/RECT RECT_eval, spec §5); fetched from URLS, stored under general_ability/.
    "rect_reasoning": "general_ability/test-reasoning.jsonl",
    "rect_nli": "general_ability/test-NLI.tsv",
    "rect_open_qa": "general_ability/test-OpenDomainQA.jsonl",
    "rect_closed_qa": "general_ability/test-ClosedDomainQA.jsonl",
}

# name -> its own URL, for files not under DEFAULT_BASE_URL (used unless another base URL is given).
_SPHERE_TASK_DATA = "https://raw.githubusercontent.com/PlusLabNLP/SPHERE/6e8978a8f6e707a7937567096f4a92a71ed5f2b2/data/task-data"
_KNOWLEDGE_SPREAD = (
    "https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/51d7402617c2e52bde0dc11b76e400c3725a181a"
)
URLS: dict[str, str] = {
    **{
        name: f"{_SPHERE_TASK_DATA}/{FILES[name].rsplit('/', 1)[-1]}"
        for name in ("rect_reasoning", "rect_nli", "rect_open_qa", "rect_closed_qa")
    },
    "counterfact-edit": f"{_KNOWLEDGE_SPREAD}/data/counterfact/counterfact-edit.json",
}

# name -> sha256 of the file; None where no trustworthy reference value is known (shared/data/README.md).
EXPECTED_SHA256: dict[str, str | None] = {
    "counterfact": "d017056125178a13728594e66a801357a8db9ed7973a7425554bb4271de9fc6f",
    "multi_counterfact": None,
    "counterfact-edit": "bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec",
    "zsre": "8a371d512f8a6ab175db4ef672181d5c0e52da23298cb51e5a2eeea2f89aa9cd",
    "attribute_snippets": "10b5c1cd105e54d5983c72de1b45bfc88bc7af786f7b99def2557886ff23385b",
    "idf": "c073d642589d4ac6432f467230329b36364a01e72de63a77a3624b745b923dda",
    "tfidf_vocab": "8a78c4f20d8d85dadfd14e283d71af255482ff18aa0eb8a81716024c05ff888b",
    "rect_reasoning": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
    "rect_nli": "5fb9b78108e99f6e505a16c85e4655ac71e988fa1b8be7eff5d57890ef9cbd91",
    "rect_open_qa": "024b6a9b02cd1cdea0ce0053d8f6504c6fb6c47ebb08ae886d99ee76eb6a163a",
    "rect_closed_qa": "8b436c78db44506422bb81e3335c8b1547230d4527547aaca2b36a5846bb42a5",
}

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message is one line, fit for a CLI."""


SIDECAR = ".sha256"


def write_sidecar(path: Path, digest: str) -> None:
    """``<file>.sha256`` beside a downloaded file: loading verifies it, so a file damaged later
    (disk, a partial copy, a hand edit) is detected instead of read."""
    atomic_write_text(path.with_name(path.name + SIDECAR), digest + "\n")


def verify_sidecar(path: Path) -> None:
    """Check ``path`` against its ``.sha256`` sidecar, if it has one; raise ValueError if it fails."""
    sidecar = path.with_name(path.name + SIDECAR)
    if not sidecar.is_file():
        return
    expected = sidecar.read_text().strip()
    if sha256_file(path) != expected:
        raise ValueError(
            f"{path} does not match its checksum {sidecar.name} (damaged after download); delete it and "
            f"run `python scripts/download_data.py` again"
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (the CounterFact file is 45 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, tmp: Path, timeout: float, progress: bool, label: str) -> str:
    """Stream ``url`` into ``tmp``; returns the sha256 of what was received."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "sphere-edit-download/0.1"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    if total is not None and received != total:
        raise DownloadError(f"{url}: truncated download ({received} of {total} bytes); retry")
    return digest.hexdigest()


def download(
    name: str,
    dest: str | Path = DEFAULT_DEST,
    base_url: str = DEFAULT_BASE_URL,
    *,
    expected_sha256: Mapping[str, str | None] | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``name`` (a key of ``FILES``) into ``dest`` and return the final path.

    A file already present with the expected hash (or any hash, when none is known) is kept as is.
    ``expected_sha256`` replaces the ``EXPECTED_SHA256`` table (tests, mirrors with other content).
    Raises ``DownloadError`` on network errors, truncation or a hash mismatch, leaving no file behind.
    """
    if name not in FILES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(FILES))}")
    filename = FILES[name]
    table = EXPECTED_SHA256 if expected_sha256 is None else expected_sha256
    expected = table.get(name)
    dest = Path(dest)
    final = dest / filename

    if final.is_file():
        present = sha256_file(final)
        if expected is None:
            log.warning(
                "%s already present (sha256 %s); no reference hash, so it could not be verified",
                final,
                present,
            )
            return final
        if present == expected:
            log.info("%s already present, sha256 verified", final)
            write_sidecar(final, present)
            return final
        log.warning("%s present but sha256 %s != expected %s; downloading again", final, present, expected)

    if name in URLS and base_url == DEFAULT_BASE_URL:
        url = URLS[name]
    else:
        url = f"{base_url.rstrip('/')}/{filename}"
    digest = ""

    def fetch_verified(tmp: str) -> None:
        nonlocal digest
        try:
            digest = _fetch(url, Path(tmp), timeout, progress, filename)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; check --base-url") from err
        except urllib.error.URLError as err:
            raise DownloadError(f"{url}: {err.reason}; check the network or --base-url") from err
        except OSError as err:
            raise DownloadError(f"{url}: {err}; retry") from err
        if expected is not None and digest != expected:
            raise DownloadError(
                f"{filename}: sha256 {digest} does not match the expected {expected}; "
                "the download was deleted (wrong mirror or corrupted transfer)"
            )

    atomic_write(final, fetch_verified)  # a failed or killed download leaves nothing under its name
    write_sidecar(final, digest)
    if expected is None:
        log.warning("%s downloaded; sha256 %s could not be verified (no reference hash known)", final, digest)
    else:
        log.info("%s downloaded, sha256 verified", final)
    return final
