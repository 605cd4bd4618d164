"""sphere-bench: every stage against its reference-style path, in one run; JSON + Markdown out.

    sphere-bench                                  # everything at the default sizes (~30 min on 2 CPU cores)
    sphere-bench --stages sphere nullspace he     # linear algebra only
    sphere-bench --scale 1                        # the 8B shapes in full (a GPU, or an hour of CPU)
    sphere-bench --stages run model=smollm2-135m  # key=value overrides pick the model of the model stages
    sphere-bench --stages memory model.covariance.n_samples=2000 model.covariance.max_length=256   # peak RSS per phase

Ratios are reference-style time / ours, medians of ``--repeats`` runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

STAGES = ("sphere", "nullspace", "solve", "he", "covariance", "values", "eval", "run", "memory")
RENAMED_STAGES = {"stats": "covariance"}  # old name → new; the old one warns and goes in the next release


def _human(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def markdown(env: dict, results: list, args: argparse.Namespace) -> str:
    from sphere.bench.memory import phase_table

    gpu = any(r.ours.peak_gpu or (r.reference and r.reference.peak_gpu) for r in results)
    lines = [
        "| stage | shape | ours (s) | reference-style (s) | ratio | peak RSS ours / ref | "
        + ("peak GPU ours / ref | " if gpu else "")
        + "agreement |",
        "|---|---|---:|---:|---:|---|" + ("---|" if gpu else "") + "---|",
    ]
    for r in results:
        ref_t = f"{r.reference.median:.3f}" if r.reference else "–"
        ratio = f"**{r.ratio:.1f}×**" if r.ratio else "–"
        agreement = r.agreement.replace("|", "\\|")
        mem = _human(r.ours.peak_rss) + (f" / {_human(r.reference.peak_rss)}" if r.reference else "")
        if gpu:
            mem += f" | {_human(r.ours.peak_gpu)}" + (
                f" / {_human(r.reference.peak_gpu)}" if r.reference else ""
            )
        lines.append(
            f"| {r.stage} | {r.shape} | {r.ours.median:.3f} | {ref_t} | {ratio} | {mem} | {agreement} |"
        )
    head = (
        f"device {env['device']} ({env['cpu']}), {env['torch_threads']} torch threads, torch {env['torch']}; "
        f"medians of {args.repeats} (reference at the 8B shapes: {args.ref_repeats}); scale {args.scale}"
    )
    notes = "\n".join(f"- {r.stage}: {r.notes}" for r in results)
    phases = "".join(
        f"\n{r.stage} ({r.shape}), peak memory per phase:\n\n{phase_table(r.extra)}\n"
        for r in results
        if "phases" in r.extra
    )
    return f"{head}\n\n" + "\n".join(lines) + "\n\n" + notes + "\n" + phases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sphere-bench", description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="key=value config overrides for the model stages")
    p.add_argument("--stages", nargs="+", choices=[*STAGES, *RENAMED_STAGES], default=list(STAGES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--ref-repeats", type=int, default=3, help="repeats of slow reference-style linear algebra"
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="fraction of the 8B layer shapes (default: 1 on GPU, 0.25 on CPU)",
    )
    p.add_argument("--he-scale", type=float, default=1.0, help="fraction of 4096×14336 for the HE stage")
    p.add_argument(
        "--texts", type=int, default=None, help="statistics texts (default: 2000 on GPU, 100 on CPU)"
    )
    p.add_argument("--max-length", type=int, default=256, help="statistics truncation")
    p.add_argument("--requests", type=int, nargs="+", default=[10, 100])
    p.add_argument("--records", type=int, default=100)
    p.add_argument("--run-edits", type=int, default=40)
    p.add_argument("--run-batch", type=int, default=10)
    p.add_argument("--run-editors", nargs="+", default=["memit", "alphaedit"])
    p.add_argument("--run-sphere", nargs="+", choices=["off", "on"], default=["off", "on"])
    p.add_argument("--memory-editors", nargs="+", default=["memit"], help="memory stage: one run per editor")
    p.add_argument("--memory-sphere", choices=["off", "on"], default="on")
    p.add_argument("-o", "--out", type=Path, default=Path("outputs/bench"))
    args = p.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for old, new in RENAMED_STAGES.items():
        if old in args.stages:
            from sphere.errors import warn_renamed

            warn_renamed(f"sphere-bench --stages {old} is renamed {new}; {old} goes in the next release")
            args.stages = [new if s == old else s for s in args.stages]

    from sphere.bench import stages as st
    from sphere.bench.harness import environment
    from sphere.files import atomic_write_text

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.scale is None:
        args.scale = 1.0 if device.type == "cuda" else 0.25
    if args.texts is None:  # the ratio does not depend on the count; 2,000 texts take ~45 min on 2 cores
        args.texts = 2000 if device.type == "cuda" else 100
    overrides = args.overrides or ["model=smollm2-135m"]
    env = environment()
    print(json.dumps(env))
    results = []
    t_start = time.perf_counter()

    def done(r):
        results.append(r)
        ratio = f"{r.ratio:.1f}x" if r.ratio else "-"
        print(
            f"[{time.perf_counter() - t_start:7.0f} s] {r.stage} ({r.shape}): ours {r.ours.median:.3f} s, "
            f"ratio {ratio}; {r.agreement}",
            flush=True,
        )
        write(complete=False)  # after every stage: a stopped benchmark keeps what it measured

    def write(complete: bool) -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "environment": env,
            "args": {k: str(v) for k, v in vars(args).items()},
            "complete": complete,
            "results": json.loads(st.dump(results)),
        }
        atomic_write_text(args.out / "bench.json", json.dumps(payload, indent=1))
        atomic_write_text(args.out / "bench.md", markdown(env, results, args))

    if "sphere" in args.stages:
        for model in st.SHAPES:
            done(st.sphere_stage(model, args.scale, args.repeats, device, args.ref_repeats))
    if "nullspace" in args.stages:
        done(st.nullspace_stage(args.scale, args.repeats, device, args.ref_repeats))
    if "solve" in args.stages:
        for editor in ("memit", "alphaedit"):
            done(st.solve_stage(editor, args.scale, args.repeats, device))
    if "he" in args.stages:
        done(st.he_stage(args.repeats, device, args.he_scale))
    if any(s in args.stages for s in ("covariance", "values", "eval")):
        sm = st.SmallModel(overrides)
        if "covariance" in args.stages:
            done(st.covariance_stage(sm, args.texts, args.max_length, args.repeats))
        if "values" in args.stages:
            for n in args.requests:  # 100 requests one by one take minutes: measured once
                done(st.values_stage(sm, n, args.repeats if n <= 10 else 1))
        if "eval" in args.stages:
            done(st.eval_stage(sm, args.records, args.repeats))
        del sm
    if "run" in args.stages:
        for editor in args.run_editors:
            for sphere in args.run_sphere:
                done(st.run_stage(overrides, editor, sphere == "on", args.run_edits, args.run_batch))

    if "memory" in args.stages:  # a fresh process per run: --run-edits in batches of --run-batch
        for editor in args.memory_editors:
            done(
                st.memory_stage(overrides, editor, args.memory_sphere == "on", args.run_edits, args.run_batch)
            )

    write(complete=True)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
