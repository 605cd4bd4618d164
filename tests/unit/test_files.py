"""Files a long run depends on: checksummed tensors, caches that recompute when damaged,
checkpoints that are reported (never loaded) when damaged, a full disk that leaves the previous
checkpoint intact, metrics.jsonl that survives a cut line, names that cannot escape their folder."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from editors.core.covariance import CovarianceOptions, weights_digest
from editors.core.model_spec import spec_for
from sphere.data.corpus import corpus_texts
from sphere.files import CorruptFileError, load_tensors, safe_name, save_tensors
from sphere.run.checkpoint import load_checkpoint, save_checkpoint
from sphere.run.config import LoggerConfig
from sphere.run.covariance import CovarianceCache
from sphere.run.tracking import Tracker


def flip_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksummed_tensors_round_trip_and_damage_is_detected(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.arange(12.0).reshape(3, 4)}, {"note": "x"})
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["a"], torch.arange(12.0).reshape(3, 4)) and meta["note"] == "x"
    flip_byte(path)
    with pytest.raises(CorruptFileError, match="fails its checksum"):
        load_tensors(path)
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptFileError, match="cannot be read"):
        load_tensors(path)


def test_a_damaged_statistics_cache_is_recomputed_not_loaded(tiny_llama, tmp_path):
    model, tok = tiny_llama
    spec = spec_for(model)
    opts = CovarianceOptions(corpus="bundled", n_samples=10, max_length=32, batch_size=10)
    digest = weights_digest(model, spec, range(4))
    calls = []

    def texts():
        calls.append(1)
        return corpus_texts("bundled")

    first = CovarianceCache(tmp_path).get(model, tok, spec, [1], opts, "tiny", texts, digest)[1]
    (cached,) = list(tmp_path.rglob("*.safetensors"))
    flip_byte(cached)
    again = CovarianceCache(tmp_path).get(model, tok, spec, [1], opts, "tiny", texts, digest)[1]
    assert len(calls) == 2 and torch.equal(first, again)  # recomputed, same value
    assert load_tensors(cached)[0]["mom2"].shape == first.shape  # and rewritten whole


def test_the_statistics_key_holds_the_corpus_seed():
    cache = CovarianceCache(None)
    a = CovarianceOptions("wikipedia", 100, 64, seed=0)
    b = CovarianceOptions("wikipedia", 100, 64, seed=1)
    assert cache.key("m", "d", "mod", a) != cache.key("m", "d", "mod", b)


def test_precomputed_statistics_are_picked_by_sample_count(tiny_llama, tmp_path):
    model, tok = tiny_llama
    spec = spec_for(model)
    module = spec.weight_module_name(1)
    for n, scale in ((100, 1.0), (2000, 5.0)):  # the reference's layer_stats names and layout
        np.savez(
            tmp_path / f"{module}_float32_mom2_{n}.npz",
            **{"mom2.mom2": np.eye(128) * scale * n, "mom2.count": n},
        )
    digest = weights_digest(model, spec, range(4))

    def get(n):
        opts = CovarianceOptions("bundled", n, 32, 10)
        return CovarianceCache(None, precomputed=str(tmp_path)).get(
            model, tok, spec, [1], opts, "t", None, digest
        )

    assert torch.allclose(get(2000)[1], torch.eye(128) * 5.0)  # not the first file that sorts
    assert torch.allclose(get(100)[1], torch.eye(128))
    with pytest.raises(FileNotFoundError, match="sample counts 100, 2000 but model.covariance.n_samples=500"):
        get(500)
    # Our own files say their count in the header (read without loading the matrix).
    save_tensors(
        tmp_path / f"{module}.ours.safetensors", {"mom2": torch.eye(128) * 3.0}, {"n_samples": "500"}
    )
    assert torch.allclose(get(500)[1], torch.eye(128) * 3.0)


def _checkpoint(path: Path, value: float) -> None:
    save_checkpoint(
        path,
        weights={"1": torch.full((4, 8), value)},
        w0={"1": torch.zeros(4, 8)},
        editor_state={"templates": [["{}"]]},
        transform_states=[{}],
        progress={"n_edits": int(value)},
    )


def test_a_damaged_checkpoint_is_reported_with_what_to_do(tmp_path):
    _checkpoint(tmp_path, 2.0)
    flip_byte(tmp_path / "checkpoint.safetensors")
    with pytest.raises(CorruptFileError, match=r"damaged.*delete .* to start the run again"):
        load_checkpoint(tmp_path)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _checkpoint(tmp_path, 2.0)
    real = safetensors.torch.save_file

    def disk_full(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])  # what fitted
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError) as e:
        _checkpoint(tmp_path, 4.0)
    assert e.value.errno == errno.ENOSPC
    state = load_checkpoint(tmp_path)
    assert state is not None and state["progress"]["n_edits"] == 2
    assert torch.equal(state["weights"]["1"], torch.full((4, 8), 2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "w0.safetensors"]


def test_w0_is_written_once_and_loaded_with_every_checkpoint(tmp_path):
    _checkpoint(tmp_path, 2.0)
    w0_file = tmp_path / "w0.safetensors"
    first = w0_file.stat().st_mtime_ns
    _checkpoint(tmp_path, 4.0)
    assert w0_file.stat().st_mtime_ns == first  # never rewritten
    state = load_checkpoint(tmp_path)
    assert state["progress"]["n_edits"] == 4 and torch.equal(state["w0"]["1"], torch.zeros(4, 8))
    assert "w0/1" not in safetensors.torch.load_file(tmp_path / "checkpoint.safetensors")
    flip_byte(w0_file)
    with pytest.raises(CorruptFileError, match=r"W₀ file .* is damaged.*delete"):
        load_checkpoint(tmp_path)


def test_checkpoints_every_n_batches_every_t_minutes_and_at_the_end(monkeypatch):
    from types import SimpleNamespace

    from sphere.run import runner as runner_mod

    clock = [0.0]
    monkeypatch.setattr(runner_mod.time, "monotonic", lambda: clock[0])
    r = runner_mod.SequentialRun.__new__(runner_mod.SequentialRun)
    r.s = SimpleNamespace(run=SimpleNamespace(checkpoint_every=10, checkpoint_minutes=20.0))
    r._last_checkpoint = 0.0
    assert [b for b in range(25) if r._checkpoint_due(b, 25)] == [9, 19, 24]
    clock[0] = 20 * 60.0  # 20 minutes since the last checkpoint: due after any batch
    assert r._checkpoint_due(3, 25)
    r.s.run.checkpoint_minutes = 0.0
    assert not r._checkpoint_due(3, 25)


def test_a_cut_metrics_line_is_dropped_on_resume(tmp_path):
    rows = [{"n_edits": 0, "a": 1.0}, {"n_edits": 2, "a": 2.0}, {"n_edits": 4, "final": True}]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"n_edits": 6, "a"'
    (tmp_path / "metrics.jsonl").write_text(text)
    off = LoggerConfig(wandb=False, mode="disabled")
    tracker = Tracker(tmp_path, off, run_name="r", group="g", tags=[], config={}, resume_from_edits=4)
    assert tracker.rows() == rows[:2]  # the final row and the cut line go; the resumed run logs them
    tracker.log({"n_edits": 4, "a": 3.0})
    assert tracker.rows()[-1] == {"n_edits": 4, "a": 3.0}


def test_wandb_failing_never_stops_a_run(tmp_path, caplog):
    class Broken:
        def log(self, row):
            raise ConnectionError("wandb.ai unreachable")

    off = LoggerConfig(wandb=False, mode="disabled")
    tracker = Tracker(tmp_path, off, run_name="r", group="g", tags=[], config={})
    tracker.run = Broken()
    tracker.log({"n_edits": 1, "x": 1.0})
    tracker.log({"n_edits": 2, "x": 2.0})
    assert [r["n_edits"] for r in tracker.rows()] == [1, 2] and tracker.run is None
    assert "W&B failed" in caplog.text
    tracker.write_summary({"n_edits": 2})
    tracker.finish()


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "..", "meta-llama/Meta-Llama-3-8B", "a b:c", "/abs/path", ""]
)
def test_names_from_ids_cannot_escape_their_folder(name, tmp_path):
    slug = safe_name(name)
    assert slug and "/" not in slug and slug not in (".", "..") and not slug.startswith(".")
    assert (tmp_path / slug).resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("umask,mode", [(0o027, 0o640), (0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    """Outputs get the mode a plain open(path, "w") gives: 0o666 less the umask (a group-shared
    directory stays shared, a private one private), text and tensor files alike."""
    import os
    import stat

    from sphere.files import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(2)})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    for name in ("a.txt", "t.safetensors", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.txt",
        "plain.txt",
        "t.safetensors",
    ]  # no temp left
