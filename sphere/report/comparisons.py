"""The report's inferential section: paired SPHERE − baseline table, HE per layer, McNemar and
correlations, as frames (CSV), Markdown and HTML. The statistics live in :mod:`paired`,
:mod:`mcnemar` and :mod:`correlation`; this module only lays them out.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sphere.evaluation.catalogue import metric
from sphere.evaluation.he import HE_ABS, HE_SIGNED
from sphere.report import correlation, mcnemar, paired
from sphere.report.aggregate import describe
from sphere.report.collect import Collection
from sphere.report.paired import ALPHA, Comparison


@dataclass
class Inference:
    """Everything the section shows."""

    comparisons: list[Comparison]
    layers: list[Comparison]  # the same pairs on he_abs_change_pct/<layer>
    mcnemar: pd.DataFrame
    correlations: pd.DataFrame
    he_layers: pd.DataFrame  # per setting and layer: signed and absolute HE change over seeds
    he_below: pd.DataFrame  # per pair: at how many evaluation points SPHERE's HE change is below
    headers: dict[str, str]  # metric -> header

    def header(self, key: str) -> str:
        """The results table's header, else the catalogue's label with its unit where not "%"."""
        if key in self.headers:
            return self.headers[key]
        m = metric(key)
        return m.column if m.unit in ("%", "") else f"{m.column} ({m.unit})"


def infer(coll: Collection, headers: dict[str, str]) -> Inference:
    """All of the section from the collected runs; ``headers``: the results table's column names
    (its keys are the metrics compared). Pairing warnings are added to ``coll.warnings``."""
    metrics = paired.paired_metrics(list(headers), coll.runs)
    comps, warnings = paired.compare(coll, metrics)
    layers, _ = paired.compare(coll, paired.layer_metrics(coll.runs))
    coll.warnings.extend(warnings)
    paths = (
        {str(r): Path(p) for r, p in zip(coll.runs["run_id"], coll.runs["path"])} if len(coll.runs) else {}
    )
    return Inference(
        comparisons=comps,
        layers=layers,
        mcnemar=mcnemar.mcnemar_table(comps, paths),
        correlations=correlation.correlation_table(coll.runs, coll.curves)
        if len(coll.curves)
        else pd.DataFrame(),
        he_layers=he_layer_frame(coll.runs),
        he_below=he_below_frame(comps, coll.curves),
        headers=headers,
    )


def he_below_frame(comps: Sequence[Comparison], curves: pd.DataFrame) -> pd.DataFrame:
    """Per pair of runs: at how many of the points where both logged HE (every batch, n > 0) the
    SPHERE run's mean per-layer |ΔHE|, and its signed mean, are below the baseline's, and where not."""
    rows = []
    for c in comps:
        for seed, (base_id, on_id) in zip(c.seeds, c.run_ids):
            row: dict[str, object] = {"block": c.block, "comparison": c.label, "seed": seed}
            for m in (HE_ABS, HE_SIGNED):
                sub = curves[(curves["metric"] == m) & (curves["n_edits_done"] > 0)]
                off = sub[sub["run_id"] == base_id].set_index("n_edits_done")["value"]
                on = sub[sub["run_id"] == on_id].set_index("n_edits_done")["value"]
                common = sorted(set(off.index) & set(on.index))
                not_below = [int(n) for n in common if not on[n] < off[n]]
                row[f"{m}_points"] = len(common)
                row[f"{m}_below"] = len(common) - len(not_below)
                row[f"{m}_not_below_at"] = " ".join(map(str, not_below))
            rows.append(row)
    return pd.DataFrame(rows)


def _below_md(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    out = ["SPHERE's HE change below its baseline's, of the points where both logged HE (after every batch):", "",
           "| Block | Comparison | Seed | mean ∣Δ∣: below at | not below at (edits) | signed mean: below at | not below at (edits) |",
           "|---|---|---:|---:|---|---:|---|"]  # fmt: skip
    for r in frame.to_dict("records"):
        out.append(
            f"| {r['block']} | {r['comparison']} | {r['seed']} | {r[HE_ABS + '_below']} of {r[HE_ABS + '_points']} "
            f"| {r[HE_ABS + '_not_below_at'] or '–'} | {r[HE_SIGNED + '_below']} of {r[HE_SIGNED + '_points']} "
            f"| {r[HE_SIGNED + '_not_below_at'] or '–'} |"
        )
    return [*out, ""]


def he_layer_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per block, setting and edited layer: mean over finished seeds of the signed HE change (%) and
    of its magnitude, with n. The signed column shows which layers rise and which fall."""
    done = runs[runs["finished"]] if "finished" in runs else runs
    layers = sorted(
        {c.split("/", 1)[1] for c in done.columns if c.startswith(f"{HE_SIGNED}/")}, key=lambda x: (len(x), x)
    )
    rows = []
    for (block, label), g in done.groupby(["block", "label"], sort=False):
        for layer in layers:
            signed, mag = describe(g[f"{HE_SIGNED}/{layer}"]), describe(g[f"{HE_ABS}/{layer}"])
            if signed.n:
                rows.append({"block": block, "setting": label, "layer": layer, "n": signed.n,
                             "signed_mean": signed.mean, "signed_ci95": signed.ci,
                             "abs_mean": mag.mean, "abs_ci95": mag.ci})  # fmt: skip
    return pd.DataFrame(
        rows, columns=["block", "setting", "layer", "n", "signed_mean", "signed_ci95", "abs_mean", "abs_ci95"]
    )


def _layers_md(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    out = []
    for block, in_block in frame.groupby("block", sort=False):
        layers = list(dict.fromkeys(in_block["layer"]))
        out += [f"### {block}\n", "Mean over seeds of each edited layer's HE change, signed / |·| (%):", "",
                "| Setting | " + " | ".join(f"layer {la}" for la in layers) + " |",
                "|---|" + "---:|" * len(layers)]  # fmt: skip
        for label, g in in_block.groupby("setting", sort=False):
            vals = {r.layer: f"{_f(r.signed_mean)} / {_f(r.abs_mean)}" for r in g.itertuples()}
            out.append(f"| {label} | " + " | ".join(vals.get(la, "–") for la in layers) + " |")
        out.append("")
    return out


def _f(x: float, digits: int = 3) -> str:
    """Two decimals from 1 up (edit quality in points), ``digits`` significant digits below (HE
    changes of ~10⁻³ %, correlations); float noise around 0 (a mean of +a and −a) prints 0."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) < 1e-12:
        return "0"
    return f"{x:.2f}" if 1 <= abs(x) < 1e4 else f"{x:.{digits}g}"


def _p(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}"


def paired_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """Numbers only: one row per comparison and metric."""
    rows = []
    for c in comparisons:
        for m, t in c.tests.items():
            rows.append(
                {
                    "block": c.block,
                    "comparison": c.label,
                    "baseline": c.baseline_label,
                    "metric": m,
                    "n_pairs": t.n,
                    "seeds": ",".join(map(str, c.seeds)),
                    "diffs": ";".join(repr(d) for d in t.diffs),
                    "mean_diff": t.mean,
                    "ci95": t.ci,
                    "sd": t.sd,
                    "t": t.t,
                    "p_t": t.p_t,
                    "p_exact": t.p_exact,
                    "p_exact_floor": t.p_floor,
                    "p_t_holm": c.holm_t.get(m, math.nan),
                    "p_exact_holm": c.holm_exact.get(m, math.nan),
                    "n_up": t.n_pos,
                    "n_down": t.n_neg,
                }
            )
    return pd.DataFrame(rows)


def _paired_md(inf: Inference, comps: Sequence[Comparison], title: str) -> list[str]:
    out = []
    for c in comps:
        if not c.tests:
            continue
        n = max(t.n for t in c.tests.values())
        floor = next(iter(c.tests.values())).p_floor
        out.append(
            f"### {c.block}\n\n**{title}: {c.label} − {c.baseline_label}**, {n} pairs (seeds {', '.join(map(str, c.seeds))})"
        )
        if floor >= ALPHA:
            out.append(
                f"\nWith {n} pairs the exact test cannot give p < 0.05 (its floor is {_p(floor)}): "
                "no difference here can be called significant by it, whatever the data."
            )
        out.append("")
        out.append(
            "| Metric | per seed (SPHERE − baseline) | mean [95 % CI] | up / down | paired t p | exact p | Holm t p | Holm exact p |"
        )
        out.append("|---|---|---|---:|---:|---:|---:|---:|")
        for m, t in c.tests.items():
            mean = (
                f"{_f(t.mean)} [{_f(t.mean - t.ci)}, {_f(t.mean + t.ci)}]"
                if math.isfinite(t.ci)
                else _f(t.mean)
            )
            if c.supported(m):
                mean = f"**{mean}**"
            per_seed = ", ".join(_f(d) for d in t.diffs)
            out.append(
                f"| {inf.header(m)} | {per_seed} | {mean} | {t.n_pos} / {t.n_neg} | {_p(t.p_t)} | {_p(t.p_exact)} "
                f"| {_p(c.holm_t.get(m, math.nan))} | {_p(c.holm_exact.get(m, math.nan))} |"
            )
        out.append("")
    return out


def _md_table(header: list[str], align: str, rows: list[list[str]], empty: str) -> list[str]:
    """A Markdown pipe table (``align``: one of l or r per column), or the sentence ``empty``."""
    if not rows:
        return [empty, ""]
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _mcnemar_md(frame: pd.DataFrame, inf: Inference) -> list[str]:
    rows = [
        [r.block, r.comparison, str(r.seed), inf.header(r.metric), f"{r.units} {r.unit}", str(r.lost),
         str(r.gained), _p(r.p)]
        for r in frame.itertuples()
    ]  # fmt: skip
    return _md_table(
        [
            "Block",
            "Comparison",
            "Seed",
            "Metric",
            "Units",
            "lost with SPHERE",
            "gained with SPHERE",
            "exact p",
        ],
        "llllrrrr",
        rows,
        "No pair of runs has per-record outcomes (`outcomes.jsonl`) on both sides: McNemar's test needs them.",
    )


def _corr_md(frame: pd.DataFrame, inf: Inference) -> list[str]:
    rows = [
        [r.block, r.centring, inf.header(r.metric), str(r.n_runs), str(r.n_points), _f(r.r_pooled, 2),
         _f(r.r_within, 2), _p(r.p_runs_permuted), _f(r.r_per_run, 2), f"{_p(r.p_per_run)} ({r.df_per_run})"]
        for r in frame.itertuples()
    ]  # fmt: skip
    return _md_table(
        ["Block", "Centring", "Metric", "runs", "points", "r pooled (descriptive)", "r within points",
         "p, runs permuted", "r one value per run", "p (df)"],
        "lllrrrrrrr",
        rows,
        "Too few runs with HE and edit quality at the same evaluation points (at least 3 are needed).",
    )  # fmt: skip


LEGEND = [
    "Pairs: runs that differ only in SPHERE (same model, data file, editor, protocol, edits, batch size and seed, "
    "so the same records in the same order). Differences are SPHERE − baseline, in the metric's unit.",
    "Paired t: `scipy.stats.ttest_rel` (df = pairs − 1). Exact: sign-flip randomisation test of the mean difference "
    "over all 2ⁿ sign assignments (no normality needed); its smallest possible p is 2^(1−n) (0.25 for 3 pairs, "
    "0.031 for 6).",
    "Holm: step-down correction over the metrics of one comparison (one table), for each test separately. "
    f"Bold: Holm-adjusted exact p < {ALPHA}; nothing else is bolded.",
    "HE: the headline is the mean over edited layers of |ΔHE| (relative change from the unedited model, %); the "
    "signed mean can cancel between layers that rise and fall and is shown only as a secondary row.",
    "Correlations: x = mean per-layer |ΔHE|, y = the metric, both centred within evaluation points (per block "
    "and number of edits: across settings; per setting and number of edits: among seeds). The pooled r ignores "
    "that points of one run are dependent and is descriptive only; the p-values treat the run as the unit.",
]


def to_markdown(inf: Inference) -> str:
    parts = ["## Paired comparisons: SPHERE − baseline, by seed", ""]
    parts += _paired_md(inf, inf.comparisons, "Paired") or [
        "No SPHERE run has a baseline run to pair with.",
        "",
    ]
    parts += ["## HE per layer", ""]
    parts += _layers_md(inf.he_layers)
    parts += _below_md(inf.he_below)
    parts += _paired_md(inf, inf.layers, "∣ΔHE∣ per layer, paired") or [
        "No per-layer HE in the paired runs.",
        "",
    ]
    parts += ["## McNemar: the same records with and without SPHERE", ""]
    parts += _mcnemar_md(inf.mcnemar, inf)
    parts += ["## HE change against edit quality", ""]
    parts += _corr_md(inf.correlations, inf)
    parts += [f"- {line}" for line in LEGEND]
    return "\n".join(parts) + "\n"


def to_html(inf: Inference) -> str:
    """The section for report.html: the Markdown tables as HTML tables (no extra dependency)."""
    return md_to_html(to_markdown(inf))


def md_to_html(md: str) -> str:
    """The small Markdown subset this module writes (headings, pipe tables, bold, lists, code)."""
    out: list[str] = []
    table: list[list[str]] = []

    def inline(text: str) -> str:
        text = html.escape(text, quote=False)
        while "**" in text:
            text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
        while "`" in text:
            text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
        return text

    def flush() -> None:
        if not table:
            return
        head, body = table[0], [r for r in table[2:]]
        out.append("<div class='scroll'><table class='data'><thead><tr>")
        out.extend(f"<th>{inline(h)}</th>" for h in head)
        out.append("</tr></thead><tbody>")
        for r in body:
            out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>")
        out.append("</tbody></table></div>")
        table.clear()

    in_list = False
    for line in md.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("- "):
            if not in_list:
                out.append("<ul class='notes'>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("### "):
            out.append(f"<h4>{inline(line[4:])}</h4>")
        elif line.startswith("## "):
            out.append(f"<h3>{inline(line[3:])}</h3>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    if in_list:
        out.append("</ul>")
    return "".join(out)
