"""The lean-memory paths compute what the straightforward expressions they replace computed, bit for
bit, with fewer large temporaries (docs/benchmarks.md, "Memory"); and the phase meter the benchmark
reports memory with attributes peaks to the right phase."""

from __future__ import annotations

import hashlib
import mmap
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from helpers import random_psd, settings

import editors.core.solvers as solvers
from editors.core.covariance import CovarianceOptions, collect_second_moments
from editors.core.model_spec import spec_for
from editors.core.nethook import capture, run_until_stop
from editors.core.solvers import memit_delta
from sphere.data.corpus import corpus_texts
from sphere.files import tensors_digest
from sphere.method.energy import hyperspherical_energy
from sphere.method.projection import project_update


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_memit_delta_equals_the_plain_solve(monkeypatch, dtype):
    monkeypatch.setattr(solvers, "GRAM_BLOCK_ROWS", 64)  # several blocks of KᵀK and a partial last one
    d, n, m, lam = 300, 7, 40, 150.0
    C = random_psd(d, seed=1, dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    K, R = torch.randn(n, d, generator=g), torch.randn(n, m, generator=g)
    k, r, c = K.to(dtype), R.to(dtype), C.to(dtype)
    plain = (r.T @ torch.linalg.solve(lam * c + k.T @ k, k.T).T).float()  # the reference's expression
    assert torch.equal(memit_delta(K, R, C, lam, dtype), plain)


def test_memit_delta_refuses_a_singular_matrix_as_solve_does():
    C, K, R = torch.zeros(20, 20), torch.zeros(3, 20), torch.ones(3, 5)
    with pytest.raises(torch.linalg.LinAlgError, match="singular"):
        torch.linalg.solve(torch.zeros(20, 20, dtype=torch.float64), K.double().T)
    with pytest.raises(torch.linalg.LinAlgError, match="singular"):
        memit_delta(K, R, C, 0.0)


def _peak_growth(body: str) -> float:
    """Growth of a fresh interpreter's peak RSS (MiB) over ``body``'s last statement, after setup.

    ``body``'s lines before the last run first; VmHWM is then reset (``/proc/self/clear_refs``), so
    the answer is the last statement's own peak above the RSS it started from."""
    *setup, last = textwrap.dedent(body).strip().splitlines()
    code = "\n".join(
        [
            "import torch",
            "from sphere.bench.memory import _reset_hwm, _vm_hwm",
            "from sphere.bench.harness import rss_bytes",
            *setup,
            "assert _reset_hwm()",
            "base = rss_bytes()",
            last,
            "print((_vm_hwm() - base) / 2**20)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memit_delta_needs_one_d_ff_squared_workspace():
    """At d_ff = 3000 one float64 matrix is 69 MiB; the plain expression held four at once (C's
    copy, λC, KᵀK, A) and solve copied A once more."""
    d = 3000
    mib = d * d * 8 / 2**20
    grown = _peak_growth(
        f"""
        from editors.core.solvers import memit_delta
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        C = torch.eye({d}) + 0.01 * torch.ones({d}, {d})
        K, R = torch.randn(8, {d}, generator=g), torch.randn(8, 64, generator=g)
        memit_delta(K[:, :64], R, C[:64, :64], 10.0)
        memit_delta(K, R, C, 10.0)
        """
    )
    assert grown < 1.6 * mib, f"memit_delta grew the peak by {grown:.0f} MiB; one A is {mib:.0f} MiB"


def test_second_moments_equal_the_plain_sum(tiny_llama):
    """In-place accumulation into a reused product buffer gives the sums ``sums + kᵀk`` gave."""
    model, tok = tiny_llama
    spec = spec_for(model)
    layers = [1, 2]
    texts = list(corpus_texts("bundled", 0, 10))
    opts = CovarianceOptions(corpus="bundled", n_samples=10, max_length=24, batch_size=3)  # 4 batches
    ours = collect_second_moments(model, tok, spec, layers, texts, opts)

    names = {layer: spec.weight_module_name(layer) for layer in layers}
    plain: dict[int, torch.Tensor] = {}
    count = 0
    for i in range(0, 10, 3):
        enc = tok(texts[i : i + 3], truncation=True, max_length=24, padding=True, return_tensors="pt")
        with torch.no_grad(), capture(model, list(names.values()), inputs=True) as store:
            run_until_stop(model, **enc)
        mask = enc["attention_mask"].bool()
        for layer, name in names.items():
            a = store[name][mask].float()
            plain[layer] = a.T @ a if layer not in plain else plain[layer] + a.T @ a
        count += int(mask.sum())
    for layer in layers:
        assert ours[layer][1] == count
        assert torch.equal(ours[layer][0], plain[layer])


def test_hyperspherical_energy_equals_the_plain_computation():
    def plain(W, block_size, dtype, eps=1e-4):
        X = torch.nn.functional.normalize(W.to(dtype), dim=1)
        sq = (X * X).sum(dim=1)
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, W.shape[0], block_size):
            stop = min(start + block_size, W.shape[0])
            d2 = (sq[start:stop, None] + sq[None, :] - 2.0 * (X[start:stop] @ X.T)).clamp_min_(0.0)
            terms = (d2 + eps).pow_(-1.0)
            rows = torch.arange(stop - start)
            terms[rows, rows + start] = 0.0
            total += terms.sum(dtype=torch.float64)
        return float(total)

    g = torch.Generator().manual_seed(0)
    for (m, c), block, dtype in [((300, 700), 64, torch.float64), ((257, 100), 1024, torch.float32)]:
        W = torch.randn(m, c, generator=g)
        W[3] = 0.0  # a zero row stays a zero row
        assert hyperspherical_energy(W, block_size=block, dtype=dtype) == plain(W, block, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_projected_update_equals_the_plain_expression(dtype):
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(40, 90, generator=g).to(dtype)
    U = torch.linalg.qr(torch.randn(90, 12, generator=g))[0]
    d = delta.to(torch.promote_types(dtype, torch.float32))
    Uw = U.to(d.dtype)
    assert torch.equal(project_update(delta, U, 0.8), (d - 0.8 * (d @ Uw) @ Uw.T).to(dtype))
    assert torch.equal(delta, delta.clone())  # the update itself is left alone


def test_tensors_digest_hashes_the_bytes_without_copying_them():
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(4, 3).T, "d": torch.zeros(0)}
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    assert tensors_digest(tensors) == h.hexdigest()


@pytest.mark.parametrize("editor", ["memit", "alphaedit", "prune", "rect"])
def test_smollm2_runs_z_in_chunks_of_two_requests(editor, tmp_path):
    """SmolLM2's z activations for a batch of 10 are ~2 GB at once; 14 rows (two requests) bound them."""
    s = settings(f"editor={editor}", "model=smollm2-135m", tmp=tmp_path)
    assert s.editor.v_max_rows == 14


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_phase_meter_gives_each_phase_its_own_peak():
    from sphere.bench.harness import rss_bytes
    from sphere.bench.memory import PhaseMeter

    meter = PhaseMeter()
    with meter.phase("load"):
        base = rss_bytes()
        # Fresh anonymous pages, touched, then unmapped: an allocator's cache (torch's, glibc's)
        # could serve a tensor from pages already resident, and RSS would not move.
        x = mmap.mmap(-1, 64 * 2**20)  # 64 MiB, freed inside the phase
        x.write(b"\1" * len(x))
        time.sleep(0.05)  # where VmHWM cannot be reset, the 5 ms sampler must get to run
        x.close()
        with meter.phase("statistics"):
            y = mmap.mmap(-1, 16 * 2**20)
            y.write(b"\1" * len(y))
            time.sleep(0.05)
            y.close()
    out = meter.finish()
    load, stats = out["phases"]["load"], out["phases"]["statistics"]
    assert load["peak_rss"] >= base + 60 * 2**20
    assert stats["peak_rss"] < load["peak_rss"]  # the nested phase ran after load's tensor was freed
    assert load["calls"] == stats["calls"] == 1 and out["peak_rss"] == load["peak_rss"]
