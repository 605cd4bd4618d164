"""The figures of one run directory, drawn by sphere-edit at the end of a run (``run.plots``):
its edit quality and its HE change per layer against the number of edits, read from the run's
``metrics.jsonl`` and written beside it. No seeds to aggregate here; the study-wide figures are the
other modules of this package."""

from __future__ import annotations

from pathlib import Path

from sphere.evaluation.catalogue import headline
from sphere.report.figures.style import axis_label, edits_axis, scale_exponent
from sphere.run.rundir import METRICS_FILE, read_metrics


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write metrics_vs_edits.png and he_vs_edits.png from ``metrics.jsonl``; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / METRICS_FILE)[0]  # a line cut by an earlier kill is not fatal here
    written = []
    # Edit quality: rows that carry evaluated metrics (pre, scheduled, final).
    evals = [r for r in rows if any(m in r for m in headline())]
    if evals:
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in headline():
            pts = [(r["n_edits"], r[m]) for r in evals if m in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m, linestyle="-" if "top1" not in m else "--")
        ax.set(ylabel="%", title="edit quality", ylim=(-2, 102))
        edits_axis(ax, fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(run_dir / "metrics_vs_edits.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    he_keys = sorted({k for r in rows for k in r if k.startswith("he/")}, key=lambda k: int(k.split("_")[-1]))
    if he_keys:
        fig, ax = plt.subplots(figsize=(6, 4))
        # Relative change from the unedited model: absolute HE differs across layers by far more
        # than edits move it, so raw values plot as flat lines.
        curves = {}
        for k in he_keys:
            pts = sorted({r["n_edits"]: r[k] for r in rows if k in r}.items())
            base = pts[0][1] or 1.0
            curves[k] = ([n for n, _ in pts], [100.0 * (v - base) / base for _, v in pts])
        exp = scale_exponent([c for _, cs in curves.values() for c in cs])  # ~0.01 %: ticks in ×10⁻³ %
        for k, (ns, changes) in curves.items():
            ax.plot(ns, [c / 10.0**exp for c in changes], marker=".", label=k.replace("he/", ""))
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set(ylabel=axis_label("he_change_pct/", exp), title="hyperspherical energy")
        edits_axis(ax, fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(run_dir / "he_vs_edits.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
