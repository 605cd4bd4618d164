"""Time SPHERE's gram path against the reference c×c eigh, and blockwise HE, in one run.

python scripts/bench_sphere.py                      # CPU: 576x1536 1024x4096 (+ 4096x14336 on CUDA)
python scripts/bench_sphere.py 4096x14336 --repeats 5 --dtype float32
"""

from __future__ import annotations

import argparse
import time

import torch

from sphere.method.energy import hyperspherical_energy
from sphere.method.projection import principal_directions, project_update

DTYPES = {"auto": None, "float32": torch.float32, "float64": torch.float64}


def best_time(fn, device: torch.device, repeats: int):
    """Best wall time of ``repeats`` runs after one warm-up (synchronising on CUDA), and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shapes", nargs="*", help="m x c shapes (rows x columns), e.g. 4096x14336")
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--alpha", type=float, default=0.8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="eigh dtype (auto: float64 when small)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    shapes = args.shapes or ["576x1536", "1024x4096"] + (["4096x14336"] if device.type == "cuda" else [])
    g = torch.Generator(device=device).manual_seed(0)
    print(
        f"device={device} beta={args.beta} alpha={args.alpha} dtype={args.dtype} threads={torch.get_num_threads()}"
    )
    for shape in shapes:
        m, c = (int(x) for x in shape.lower().split("x"))
        W = torch.randn(m, c, device=device, generator=g) * torch.linspace(1, 0.1, c, device=device)
        delta = torch.randn(m, c, device=device, generator=g) * 1e-3

        def run(method: str, W=W, delta=delta):
            d = principal_directions(W, beta=args.beta, method=method, compute_dtype=DTYPES[args.dtype])
            return d.r, project_update(delta, d.U, args.alpha)

        t_gram, (r_gram, out_gram) = best_time(lambda: run("gram"), device, args.repeats)
        t_naive, (r_naive, out_naive) = best_time(lambda: run("naive"), device, args.repeats)
        t_he, he = best_time(lambda W=W: hyperspherical_energy(W), device, args.repeats)
        diff = float((out_gram - out_naive).abs().max())
        print(
            f"{m}x{c}: gram {t_gram:.3f}s  naive {t_naive:.3f}s  naive/gram {t_naive / t_gram:.1f}x  "
            f"r {r_gram}/{r_naive}  max|Δ'_gram-Δ'_naive| {diff:.2e} (max|Δ| {float(delta.abs().max()):.1e})  "
            f"HE {t_he:.3f}s = {he:.6g}"
        )


if __name__ == "__main__":
    main()
