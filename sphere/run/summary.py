"""A run's summary: the dict written to summary.json and the plain-text table printed at the end.

Part of the run directory's contract (``sphere.run.rundir``): the run builds and writes it,
``sphere-eval --merge`` rewrites it, the report reads it.
"""

from __future__ import annotations

from typing import Any

from sphere.evaluation.catalogue import of_evaluator, table_metrics
from sphere.evaluation.he import HE_ABS, HE_SIGNED, LAYER_PREFIX, he_summaries

PER_LAYER_HE = LAYER_PREFIX


def split_per_layer(
    metrics: dict[str, float], prefix: str = PER_LAYER_HE
) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics without ``prefix<layer>`` keys, {layer: value} of those keys)."""
    rest = {k: v for k, v in metrics.items() if not k.startswith(prefix)}
    per_layer = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
    return rest, per_layer


def build_summary(
    header: dict[str, Any], *, pre: dict[str, float], final: dict[str, float], timings: dict[str, float]
) -> dict[str, Any]:
    """summary.json: the run's identity, the final metrics at top level, the unedited model's under
    ``pre``, HE per layer before/after and its relative change, and where the time went."""
    pre_metrics, he_pre = split_per_layer(pre)
    final_metrics, he = split_per_layer(final)
    change = {k: 100.0 * (he[k] - he_pre[k]) / he_pre[k] if he_pre.get(k) else 0.0 for k in he}
    return {
        **header,
        **final_metrics,
        "pre": pre_metrics,
        "he": he,
        "he_pre": he_pre,
        HE_SIGNED: change,
        # The run's HE headline: the mean over edited layers of |ΔHE| (a signed mean cancels between
        # layers whose HE falls and layers whose HE rises; sphere.evaluation.he.he_summaries).
        HE_ABS: he_summaries(change)[HE_ABS] if change else None,
        "time": {
            **timings,
            # What users compare across editors and machines; the whole batch counts, z included.
            "edit_s_per_edit": timings.get("edit_s", 0.0) / header["n_edits"]
            if header.get("n_edits")
            else None,
        },
    }


def shown_metrics(summary: dict[str, Any]) -> list[str]:
    """The metric keys a person reads first: the results table's columns that the run has, in the
    catalogue's order, except the HE change summaries, which summary.txt prints per layer below
    (standard errors and counts stay in summary.json)."""
    numeric = [k for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    he = {m.key for m in of_evaluator("he", numeric)}
    return [m.key for m in table_metrics(numeric) if m.key not in he]


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table a person can read at the end of a run."""
    pre = summary.get("pre") or {}
    sphere = summary["sphere"]
    sel = f"r={sphere['rank']}" if sphere["rank"] else f"β={sphere['beta']}"
    with_sphere = f" + SPHERE(α={sphere['alpha']}, {sel})" if sphere["enabled"] else ""
    title = (
        f"{summary['model']} | {summary['editor']}{with_sphere} | {summary['n_edits']} "
        f"{summary['dataset']} edits | protocol {summary['protocol']}"
    )
    lines = [title, f"{'metric':<24}{'pre':>10}{'post':>10}{'± se':>8}"]
    for k in shown_metrics(summary):
        p, se = pre.get(k), summary.get(f"{k}_se")
        se_text = "" if se is None or se != se else f"{se:.2f}"  # NaN: one case, no spread
        mark = " *" if k in (summary.get("notes") or {}) else ""
        lines.append(f"{k:<24}{'' if p is None else f'{p:.2f}':>10}{summary[k]:>10.2f}{se_text:>8}{mark}")
    lines.append(f"{'HE (normalised) layer':<24}{'pre':>10}{'post':>10}{'change %':>12}")
    for k, v in summary["he"].items():
        lines.append(f"{k:<24}{summary['he_pre'][k]:>10.6g}{v:>10.6g}{summary[HE_SIGNED][k]:>+12.3e}")
    if summary.get(HE_ABS) is not None:
        lines.append(f"{'mean |change| over layers':<44}{summary[HE_ABS]:>12.3e}")
    for k, note in (summary.get("notes") or {}).items():
        lines.append(f"* {k}: {note}")
    if summary.get("skipped_batches"):
        lines.append(f"skipped batches (non-finite update): {summary['skipped_batches']}")
    if summary.get("skipped_records"):
        lines.append(f"malformed records skipped at load: {summary['skipped_records']}")
    t = summary["time"]
    lines.append(
        f"time: setup {t['setup_s']:.1f} s, editing {t['edit_s']:.1f} s, evaluation {t['eval_s']:.1f} s"
    )
    return "\n".join(lines)
