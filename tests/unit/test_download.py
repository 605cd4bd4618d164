"""Downloader: served from a local HTTP server, so it runs offline and checks hashes, atomicity and skips."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sphere.data.download import DownloadError, download

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = b'[{"case_id": 0, "note": "' + b"x" * 3_000_000 + b'"}]\n'  # > 1 chunk, exercises streaming
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(SimpleHTTPRequestHandler):
    """Static files, counting GETs so tests can prove a skip made no request."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - silence the per-request stderr log
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/srv on 127.0.0.1:<ephemeral>; yields (base_url, request log)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "srv"
    root.mkdir()
    for name in ("counterfact.json", "multi_counterfact.json", "zsre_mend_eval.json"):
        (root / name).write_bytes(PAYLOAD)
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_verified(server, tmp_path):
    base_url, requests = server
    dest = tmp_path / "full"
    path = download(
        "counterfact", dest, base_url, expected_sha256={"counterfact": PAYLOAD_SHA}, progress=False
    )
    assert path == dest / "counterfact.json"
    assert path.read_bytes() == PAYLOAD
    # no temp file left; the checksum sidecar that loading verifies
    assert sorted(p.name for p in dest.iterdir()) == ["counterfact.json", "counterfact.json.sha256"]
    assert (dest / "counterfact.json.sha256").read_text().strip() == PAYLOAD_SHA
    assert requests == ["/counterfact.json"]


def test_a_download_damaged_later_is_detected_when_loaded(server, tmp_path):
    from sphere.data import load_records

    base_url, _ = server
    path = download(
        "counterfact", tmp_path, base_url, expected_sha256={"counterfact": PAYLOAD_SHA}, progress=False
    )
    path.write_bytes(path.read_bytes()[:-3])  # e.g. a partial copy
    with pytest.raises(ValueError, match="does not match its checksum counterfact.json.sha256"):
        load_records("counterfact", path)


def test_wrong_hash_leaves_nothing(server, tmp_path):
    base_url, _ = server
    dest = tmp_path / "full"
    with pytest.raises(DownloadError, match="does not match") as info:
        download("zsre", dest, base_url, expected_sha256={"zsre": "0" * 64}, progress=False)
    assert PAYLOAD_SHA in str(info.value) and "\n" not in str(info.value)
    assert list(dest.iterdir()) == []


def test_http_error_leaves_nothing(server, tmp_path):
    base_url, _ = server
    dest = tmp_path / "full"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("zsre", dest, base_url + "missing/", expected_sha256={"zsre": PAYLOAD_SHA}, progress=False)
    assert list(dest.iterdir()) == []


def test_present_file_not_redownloaded(server, tmp_path):
    base_url, requests = server
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "counterfact.json").write_bytes(PAYLOAD)
    os.utime(dest / "counterfact.json", (1_000_000, 1_000_000))
    path = download(
        "counterfact", dest, base_url, expected_sha256={"counterfact": PAYLOAD_SHA}, progress=False
    )
    assert requests == []
    assert path.stat().st_mtime == 1_000_000


def test_present_file_with_wrong_hash_is_replaced(server, tmp_path):
    base_url, requests = server
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "counterfact.json").write_bytes(b"stale")
    download("counterfact", dest, base_url, expected_sha256={"counterfact": PAYLOAD_SHA}, progress=False)
    assert (dest / "counterfact.json").read_bytes() == PAYLOAD
    assert requests == ["/counterfact.json"]


def test_unknown_hash_reports_digest(server, tmp_path, caplog):
    base_url, _ = server
    with caplog.at_level(logging.WARNING, logger="sphere.data.download"):
        path = download("multi_counterfact", tmp_path, base_url, expected_sha256={}, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert PAYLOAD_SHA in caplog.text and "could not be verified" in caplog.text


def test_unknown_name():
    with pytest.raises(
        ValueError, match="known: attribute_snippets, counterfact, counterfact-edit, idf, multi_counterfact"
    ):
        download("mquake", "unused")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()} | {"no_proxy": "127.0.0.1"}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "download_data.py"), "--no-progress", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_cli_rejects_wrong_file(server, tmp_path):
    """The served counterfact.json is not the real one, so the built-in sha256 must reject it."""
    base_url, _ = server
    result = _cli("counterfact", "--dest", str(tmp_path / "full"), "--base-url", base_url)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error: counterfact.json: sha256")
    assert len(result.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "full").iterdir()) == []


def test_cli_unverified_file(server, tmp_path):
    base_url, _ = server
    result = _cli("multi_counterfact", "--dest", str(tmp_path), "--base-url", base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "multi_counterfact.json")
    assert PAYLOAD_SHA in result.stderr and "could not be verified" in result.stderr
