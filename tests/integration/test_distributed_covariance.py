"""The key covariance collected data-parallel (``torchrun -m sphere.covariance``) equals the single-process
ones and land under the cache key a run reads (docs/distributed.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from helpers import ROOT, settings

import sphere.run.covariance as run_covariance
from editors.core.covariance import CovarianceOptions, collect_second_moments
from editors.core.model_spec import spec_for
from sphere.covariance import Ranks, precompute_covariance
from sphere.data.corpus import corpus_texts
from sphere.files import load_tensors
from sphere.models import model_id
from sphere.run.covariance import build_context

# Two batches and a partial one per rank (18 texts each), four and a partial one in one process.
OVERRIDES = ["model=tiny-llama", "model.covariance.n_samples=36", "model.covariance.batch_size=8"]
LAYERS = [0, 1, 2]  # configs/model/tiny-llama.yaml: layers.multi, memit's editor.layers


def test_shards_add_up_to_the_whole_pass(tiny_llama):
    model, tok = tiny_llama
    spec = spec_for(model)
    opts = CovarianceOptions(corpus="bundled", n_samples=13, max_length=32, batch_size=4)
    whole = collect_second_moments(model, tok, spec, [1, 2], corpus_texts("bundled"), opts)
    parts = [
        collect_second_moments(model, tok, spec, [1, 2], corpus_texts("bundled"), opts, shard=(r, 3))
        for r in range(3)
    ]
    for layer in (1, 2):
        assert sum(p[layer][1] for p in parts) == whole[layer][1]
        total = sum(p[layer][0] for p in parts)
        torch.testing.assert_close(total, whole[layer][0], rtol=1e-5, atol=1e-4)
    # More processes than texts: the idle ones add zeros.
    one = CovarianceOptions(corpus="bundled", n_samples=1, max_length=32, batch_size=4)
    idle = collect_second_moments(model, tok, spec, [1], corpus_texts("bundled"), one, shard=(1, 2))
    assert idle[1][1] == 0 and idle[1][0].shape == (128, 128) and not idle[1][0].any()
    with pytest.raises(ValueError, match="rank < world"):
        collect_second_moments(model, tok, spec, [1], corpus_texts("bundled"), one, shard=(2, 2))


def test_ranks_come_from_torchrun_env():
    assert Ranks.from_env({}) == Ranks()
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}
    assert Ranks.from_env(env) == Ranks(rank=3, local_rank=1, world=4, distributed=True)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_torchrun_statistics_equal_single_process_and_are_what_a_run_reads(
    tmp_path, config_tiny_llama, monkeypatch
):
    dist_dir, single_dir = tmp_path / "dist", tmp_path / "single"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "sphere.covariance", *OVERRIDES, f"run.cache_dir={dist_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout and "tokens/s" in proc.stdout
    dist_files = sorted((dist_dir / "stats").rglob("*.safetensors"))
    assert len(dist_files) == len(LAYERS)
    assert sorted(str(p) for p in dist_files) == sorted(
        line.split("written: ")[1].split()[0] for line in proc.stdout.splitlines() if "written: " in line
    )

    # The same command without torchrun: one process, same file names (same keys), same values.
    single = precompute_covariance([*OVERRIDES, f"run.cache_dir={single_dir}"], ranks=Ranks())
    assert single.layers == LAYERS and single.texts == 36 and single.world == 1
    for layer, path in single.written.items():
        other = dist_dir / path.relative_to(single_dir)
        assert other in dist_files, f"layer {layer}: {other.name} not written by torchrun"
        (a, meta_a), (b, meta_b) = load_tensors(path), load_tensors(other)
        torch.testing.assert_close(b["mom2"], a["mom2"], rtol=1e-5, atol=1e-6)
        assert meta_a["count"] == meta_b["count"] == str(single.tokens)
        assert meta_a["corpus_draw"] == meta_b["corpus_draw"]
    # Cached now: a second call collects nothing.
    again = precompute_covariance([*OVERRIDES, f"run.cache_dir={single_dir}"], ranks=Ranks())
    assert again.cached == LAYERS and not again.written

    # A run with the same config finds the torchrun files and collects nothing.
    s = settings(*OVERRIDES, tmp=tmp_path)
    model, tok = config_tiny_llama

    def refuse(*args, **kwargs):
        raise AssertionError("build_context collected statistics instead of reading the cache")

    monkeypatch.setattr(run_covariance, "collect_second_moments", refuse)
    ctx = build_context(
        model, tok, spec_for(model), model_id(s.model), covariance_cfg=s.model.covariance, cache_dir=dist_dir
    )
    got = ctx.covariance(LAYERS)
    for layer in LAYERS:
        path = single.written[layer]
        torch.testing.assert_close(got[layer], load_tensors(path)[0]["mom2"], rtol=1e-5, atol=1e-6)
