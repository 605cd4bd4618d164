"""The pieces of a run's statistics files without a run: provenance collection (never failing for
want of git or a readable data file) and outcomes.jsonl rows (merging, NaN as null)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from types import SimpleNamespace

import pytest
import torch

from sphere.run import provenance
from sphere.run.outcomes import merge_outcomes, read_outcomes, write_outcomes

UNKNOWN = {"commit": "unknown", "dirty": None}


def _settings(path) -> SimpleNamespace:
    model = SimpleNamespace(
        name="tiny-llama", source="tiny", revision=None, gguf_sha256=None, gguf_package=None
    )
    return SimpleNamespace(model=model, dataset=SimpleNamespace(kind="counterfact", path=str(path)))


def test_no_git_on_the_machine_is_unknown_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance.shutil, "which", lambda name: None)
    assert provenance.code_version() == UNKNOWN
    data = tmp_path / "d.json"
    data.write_text("[]")
    p = provenance.collect(_settings(data), torch.nn.Linear(2, 2), "tiny-llama-0")
    assert p["code"] == UNKNOWN and p["versions"]["torch"] and p["machine"]["device"] == "cpu"
    assert "@ unknown;" in provenance.one_line(p)


@pytest.mark.parametrize("error", [FileNotFoundError("git"), subprocess.TimeoutExpired("git", 5.0)])
def test_git_that_fails_or_hangs_is_unknown(monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(provenance.subprocess, "run", broken)
    assert provenance.code_version() == UNKNOWN


def test_outside_a_checkout_is_unknown(tmp_path):
    # a directory that is not the top of a work tree (here: in none at all) gets no commit
    assert provenance.code_version(tmp_path) == UNKNOWN


def test_data_digest_is_of_the_decompressed_content(tmp_path):
    content = b'[{"case_id": 0}]'
    plain, packed = tmp_path / "d.json", tmp_path / "d.json.gz"
    plain.write_bytes(content)
    packed.write_bytes(gzip.compress(content, mtime=12345))
    want = hashlib.sha256(content).hexdigest()
    assert provenance.data_identity(plain)["sha256"] == provenance.data_identity(packed)["sha256"] == want
    missing = provenance.data_identity(tmp_path / "gone.json")  # removed since loading: no digest, no error
    assert missing["sha256"] is None


def test_model_digest_is_the_one_the_loader_knows():
    cfg = SimpleNamespace(name="m", source="gguf", revision=None, gguf_sha256="ab" * 32, gguf_package="pkg")
    assert provenance.model_identity(cfg, None, "gguf/m")["digest"] == "sha256:" + "ab" * 32
    hub = SimpleNamespace(config=SimpleNamespace(_commit_hash="c" * 40))
    cfg = SimpleNamespace(name="m", source="hf", revision="main", gguf_sha256=None, gguf_package=None)
    assert provenance.model_identity(cfg, hub, "x@main")["digest"] == "hub-commit:" + "c" * 40


def test_outcomes_merge_by_case_id_and_write_nan_as_null(tmp_path):
    quality = [{"case_id": 3, "rewrite_success": 1.0, "paraphrase_success": float("nan")}, {"case_id": 1}]
    other = [{"case_id": 1, "fluency": 5.0}, {"case_id": 3, "fluency": float("inf")}]
    rows = merge_outcomes([quality, other], n_edits=2)
    assert [r["case_id"] for r in rows] == [3, 1] and all(r["n_edits"] == 2 for r in rows)
    write_outcomes(tmp_path, rows)
    text = (tmp_path / "outcomes.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_outcomes(tmp_path) == [
        {"case_id": 3, "n_edits": 2, "rewrite_success": 1.0, "paraphrase_success": None, "fluency": None},
        {"case_id": 1, "n_edits": 2, "fluency": 5.0},
    ]
    assert json.loads(text.splitlines()[1]) == {"case_id": 1, "n_edits": 2, "fluency": 5.0}
