"""sphere-report: seeds aggregated with Student-t CIs, paper tables, every figure, one
self-contained HTML page, and partial data (unfinished runs, no checkpoint, one seed, damaged files)
handled without crashing. Runs are written here from the run-directory contract of sphere-edit."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import FLUENCY_NOTE, N_EDITS, run_quality, write_run
from scipy import stats as sps

from sphere.cli.report import main as report_main
from sphere.report.aggregate import CI95, SE, aggregate_settings, describe, t_halfwidth
from sphere.report.build import build_report
from sphere.report.collect import NoRunsError, Run, collect, identity, setting_id, setting_label
from sphere.report.correlation import within_group_correlation
from sphere.report.figures.cosines import cosine_histogram, sample_rows
from sphere.report.tables import build_table, cell_text, to_csv, to_latex, to_markdown

ALPHAS, BETAS, SEEDS = (0.5, 0.8), (0.3, 0.5), (0, 1)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 seeds × (MEMIT, MEMIT + SPHERE at 2 α × 2 β), with checkpoints: 10 runs, 5 settings."""
    root = tmp_path_factory.mktemp("sweep")
    for seed in SEEDS:
        write_run(root, seed=seed)
        for a in ALPHAS:
            for b in BETAS:
                write_run(root, sphere=True, alpha=a, beta=b, seed=seed)
    return root


@pytest.fixture(scope="module")
def report(sweep: Path, tmp_path_factory: pytest.TempPathFactory):
    return build_report([sweep], tmp_path_factory.mktemp("out"), formats=("png", "svg"))


# ------------------------------------------------------------------------------------- stats


def test_ci_matches_hand_computation() -> None:
    st = describe([1.0, 2.0, 3.0])
    assert (st.mean, st.sd, st.n) == (2.0, 1.0, 3)
    assert st.ci == pytest.approx(4.302652729911275 / math.sqrt(3))  # t(0.975, 2)·1/√3
    assert st.ci == pytest.approx(2.4841, abs=1e-4)
    assert t_halfwidth(2.0, 2) == pytest.approx(12.706204736 * 2 / math.sqrt(2))
    one = describe([5.0, float("nan")])  # NaN = not measured: dropped, not a zero
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.ci)
    assert describe([]).n == 0


def test_seeds_of_a_setting_are_one_row(sweep: Path) -> None:
    coll = collect([sweep])
    assert len(coll.runs) == 10 and coll.runs["setting_id"].nunique() == 5
    assert not coll.warnings  # configs differ only in run.* (the seed, a cache dir): repetitions
    agg = aggregate_settings(coll.runs, ["efficacy", "score"])
    assert set(agg["n_finished"]) == {2} and set(agg["seeds"]) == {"0,1"}
    row = agg[agg["label"] == "MEMIT + SPHERE (α=0.5, β=0.3)"].iloc[0]
    vals = [run_quality(True, 0.5, 0.3, s, N_EDITS)["efficacy"] for s in SEEDS]
    assert row["efficacy_mean"] == pytest.approx(np.mean(vals))
    assert row["efficacy_ci"] == pytest.approx(sps.t.ppf(0.975, 1) * np.std(vals, ddof=1) / math.sqrt(2))
    assert row["efficacy_err_kind"] == CI95
    base = agg[agg["label"] == "MEMIT"].iloc[0]
    assert math.isnan(base["alpha"]) or base["alpha"] is None  # α does not act without SPHERE


def test_setting_labels() -> None:
    assert setting_label({"editor": "alphaedit", "sphere": True, "alpha": 0.5, "beta": None, "rank": 64}) == (
        "AlphaEdit + SPHERE (α=0.5, r=64)"
    )
    assert (
        setting_label({"editor": "rome", "sphere": False, "alpha": None, "beta": None, "rank": None})
        == "ROME"
    )


# ------------------------------------------------------------------------------------ tables


def test_tables_markdown_latex_csv(sweep: Path) -> None:
    table = build_table(collect([sweep]).runs)
    keys = [c.key for c in table.columns]
    assert keys[:4] == ["efficacy", "generalization", "specificity", "fluency"]
    assert keys.index("score") > keys.index("specificity_top1")
    assert {"general/nli", "general/reasoning", "general/mean", "he_change_pct", "he_abs_change_pct"} <= set(
        keys
    )
    assert [r.kind for r in table.rows][:1] == ["pre"] and len(table.rows) == 6

    md = to_markdown(table)
    assert "| MEMIT + SPHERE (α=0.8, β=0.5)" in md and " ± " in md
    assert "[a]" in md and FLUENCY_NOTE in md  # non-canonical fluency: marker and footnote
    # no "best mean" bold: only a paired comparison can support one (tests/unit/test_paired.py)
    assert "**" not in md

    tex = to_latex(table)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"$\pm$", "[a]"):
        assert token in tex
    assert r"$\alpha$=0.8" in tex and "tiny-llama" in tex and "\\%" in tex
    assert r"\textbf{" not in tex.split(r"\toprule")[1]  # nothing bolded without paired support

    frame = pd.read_csv(__import__("io").StringIO(to_csv(table)))
    assert {"efficacy_mean", "efficacy_ci", "efficacy_n", "he_change_pct_mean"} <= set(frame.columns)
    row = frame[frame["label"] == "MEMIT"].iloc[0]
    vals = [run_quality(False, 0.8, 0.5, s, N_EDITS)["efficacy"] for s in SEEDS]
    assert row["efficacy_mean"] == pytest.approx(np.mean(vals)) and row["efficacy_n"] == 2
    assert row["efficacy_ci"] == pytest.approx(sps.t.ppf(0.975, 1) * np.std(vals, ddof=1) / math.sqrt(2))


# ----------------------------------------------------------------------------------- figures

FIGURES = (
    "metrics_vs_edits",
    "he_change_vs_edits",
    "plugin_bars",
    "heatmap_score_memit",
    "general_vs_edits",
    "angular_distribution",
    "he_vs_metric",
    "early_warning",
)


def test_every_figure_is_written(report) -> None:
    assert report.figures.skipped == []
    figdir = report.out_dir / "figures"
    for name in FIGURES:
        for ext in ("png", "svg"):
            f = figdir / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert (figdir / "metrics_vs_edits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The made-up data has quality falling as HE drifts: the scatter finds the negative correlation.
    scatter = next(f for f in report.figures.figures if f.name == "he_vs_metric")
    r = float(re.search(r"r = (-?[0-9.]+)", scatter.caption).group(1))
    assert r < -0.5


def test_within_group_correlation_is_the_partial_correlation_given_group_dummies() -> None:
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(6), 4)  # 6 evaluation points, 4 runs each
    trend = g * 1.0
    x = trend + rng.normal(size=g.size)
    y = -2 * trend + 0.5 * x + rng.normal(size=g.size)
    r, p, df = within_group_correlation(pd.Series(x), pd.Series(y), pd.Series(g))
    # the same r from residuals of an OLS on one dummy per group, and the t-test's p with df = n − 6 − 1
    dummies = (g[:, None] == np.arange(6)[None, :]).astype(float)
    res = [v - dummies @ np.linalg.lstsq(dummies, v, rcond=None)[0] for v in (x, y)]
    r_ols = float(np.corrcoef(*res)[0, 1])
    assert r == pytest.approx(r_ols, rel=1e-12) and df == g.size - 7
    t = r_ols * math.sqrt(df / (1 - r_ols**2))
    assert p == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-10)
    # a shared trend alone: pooled r is strong, the within-group r is not
    x2, y2 = trend + 0.1 * rng.normal(size=g.size), -trend + 0.1 * rng.normal(size=g.size)
    assert sps.pearsonr(x2, y2)[0] < -0.9
    assert abs(within_group_correlation(pd.Series(x2), pd.Series(y2), pd.Series(g))[0]) < 0.5
    # one point per group leaves nothing to correlate
    assert math.isnan(
        within_group_correlation(pd.Series([1.0, 2.0]), pd.Series([3.0, 1.0]), pd.Series([0, 1]))[0]
    )


def test_sphere_reference_splits_settings_only_when_not_the_editors_default() -> None:
    def ident(sphere: dict) -> dict:
        summary = {"editor": "memit", "model": "m", "dataset": "counterfact", "protocol": "p", "seed": 0}
        return identity(
            Run(
                Path("."),
                "r",
                {},
                summary | {"sphere": {"enabled": True, "alpha": 0.8, "beta": 0.5, **sphere}},
                [],
            )
        )

    old_auto = ident({"reference": "auto"})  # a run from before summaries recorded the resolution
    new_default = ident(
        {"reference": "current", "resolved": {"reference": "current", "default_reference": "current"}}
    )
    pretrained = ident(
        {"reference": "pretrained", "resolved": {"reference": "pretrained", "default_reference": "current"}}
    )
    assert setting_id(old_auto) == setting_id(new_default)
    assert setting_id(pretrained) != setting_id(new_default)
    assert setting_label(new_default) == "MEMIT + SPHERE (α=0.8, β=0.5)"
    assert setting_label(pretrained) == "MEMIT + SPHERE (α=0.8, β=0.5, U from W₀)"
    # PRUNE's default is W₀: there the live weights are the exception that is named
    prune_live = ident(
        {"reference": "current", "resolved": {"reference": "current", "default_reference": "pretrained"}}
    )
    assert setting_label(prune_live).endswith("U from the live W)")


def test_cosine_histogram_counts_pairs_and_samples_rows() -> None:
    w = np.random.default_rng(1).normal(size=(30, 8))
    assert cosine_histogram(w).sum() == 30 * 29 // 2
    assert sample_rows(100) is None
    rows = sample_rows(5000)
    assert rows is not None and len(rows) == 2048 and np.array_equal(rows, sample_rows(5000))
    same = np.ones((4, 3))  # identical directions: every pair in the last bin (cosine 1)
    assert cosine_histogram(same)[-1] == 6


# -------------------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_sortable(report) -> None:
    page = (report.out_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert page.count("data:image/png;base64,") == len(report.figures.figures) == len(FIGURES)
    assert "table.sortable" in page and "addEventListener('click'" in page
    assert page.count("class='data sortable'") == 2  # results (one block) and runs
    assert "10 runs" in page and "5 settings" in page and "seeds: 0, 1" in page and "0 unfinished" in page
    assert "How to read this" in page and FLUENCY_NOTE in page
    for f in (
        "tables/results.csv",
        "tables/results.md",
        "tables/results.tex",
        "tables/runs.csv",
        "tables/curves.csv",
        "tables/curves.md",
    ):
        assert (report.out_dir / f).is_file()


def test_curve_table_has_the_evaluation_points_with_seed_cis(report) -> None:
    md = (report.out_dir / "tables/curves.md").read_text()
    memit = [line for line in md.splitlines() if line.startswith("| MEMIT |")]
    # evaluation points only (HE alone at 10 and 30 edits is not a row), in order
    assert [int(line.split("|")[2]) for line in memit] == [0, 20, 40]
    # efficacy at 20 edits: 88 and 86.5 over two seeds → mean 87.25, t(0.975, 1)·sd/√2 = 9.53
    assert memit[1].split("|")[3].strip() == "87.25 ± 9.53"
    assert md.count("| MEMIT + SPHERE (α=0.8, β=0.5) |") == 3


# ------------------------------------------------------------------------------ partial data


def test_partial_runs_unfinished_no_checkpoint_damaged(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root, seed=0, checkpoint=False)
    write_run(root, seed=1, finished=False, cut_last_line=True)
    write_run(root, sphere=True, seed=0, checkpoint=False)
    bad = write_run(root, sphere=True, seed=1)
    (bad / "summary.json").write_text('{"model": "tiny-')
    rep = build_report([root], tmp_path / "out", formats=("png",))
    coll = rep.collection
    assert len(coll.runs) == 3
    assert any(str(bad) in w and "summary.json" in w for w in coll.warnings)
    assert any("unparseable" in w for w in coll.warnings)
    unfinished = coll.runs[~coll.runs["finished"]]
    assert len(unfinished) == 1 and unfinished.iloc[0]["n_edits"] == N_EDITS  # joins its setting
    assert (coll.curves["run_id"] == unfinished.iloc[0]["run_id"]).any()  # in the curves
    base = next(r for r in rep.table.rows if r.label == "MEMIT")
    assert base.n_finished == 1 and base.n_unfinished == 1
    assert base.cells["efficacy"].err_kind == SE and base.cells["efficacy"].err == pytest.approx(2.0)
    md = (rep.out_dir / "tables/results.md").read_text()
    assert "1 (+1 unfinished)" in md and "†" in md
    assert any(
        s.startswith("angular_distribution: no finished run with checkpoint") for s in rep.figures.skipped
    )
    assert any(s.startswith("heatmap:") for s in rep.figures.skipped)
    assert not any("failed" in s for s in rep.figures.skipped)
    page = (rep.out_dir / "report.html").read_text()
    assert "1 unfinished" in page and "Figures not drawn" in page and "summary.json" in page


def test_single_run_without_checkpoint(tmp_path: Path) -> None:
    run = write_run(tmp_path, seed=3, checkpoint=False)
    rep = build_report([run], tmp_path / "out", formats=("svg",))
    names = {f.name for f in rep.figures.figures}
    assert {"metrics_vs_edits", "he_change_vs_edits", "general_vs_edits"} <= names
    assert not names & {"plugin_bars", "angular_distribution", "he_vs_metric"}
    assert any(s.startswith("he_vs_metric: fewer than 3 evaluation points") for s in rep.figures.skipped)
    assert all(p.suffix == ".svg" for f in rep.figures.figures for p in f.files)
    assert "<svg" in (rep.out_dir / "report.html").read_text()  # inline SVG when no PNG


def test_mixed_configs_are_flagged(tmp_path: Path) -> None:
    write_run(tmp_path, seed=0, v_lr=0.5)
    write_run(tmp_path, seed=1, v_lr=0.1)
    coll = collect([tmp_path])
    assert any("editor.v_lr" in w for w in coll.warnings)


# --------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(tmp_path / "missing"), "-q"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "no run found under" in err and len(err.strip().splitlines()) == 1
    assert report_main([str(tmp_path), "--formats", "gif", "-q"]) == 2
    run = write_run(tmp_path / "runs", seed=0, checkpoint=False)
    assert report_main([str(run), "--formats", "png", "-q"]) == 0
    out = capsys.readouterr().out
    assert (run / "report" / "report.html").is_file() and "report.html" in out and "MEMIT" in out
    with pytest.raises(NoRunsError):
        collect([tmp_path / "empty"])


def test_summary_without_se_seed_notes_and_empty_metrics(tmp_path: Path) -> None:
    """Runs written before summary.json had ``_se``, ``seed`` and ``notes``; a run killed before its
    first metrics row: the report still builds, the seed comes from config.yaml."""
    old = write_run(tmp_path, seed=4, checkpoint=False)
    summary = json.loads((old / "summary.json").read_text())
    summary = {k: v for k, v in summary.items() if not k.endswith("_se") and k not in ("seed", "notes")}
    (old / "summary.json").write_text(json.dumps(summary))
    empty = write_run(tmp_path, sphere=True, seed=4, finished=False, checkpoint=False)
    (empty / "metrics.jsonl").write_text("")
    rep = build_report([tmp_path], tmp_path / "out", formats=("png",))
    runs = rep.collection.runs.set_index("run_id")
    assert set(runs["seed"]) == {4} and list(runs["n_edits"]) == [N_EDITS, N_EDITS]
    base = next(r for r in rep.table.rows if r.label == "MEMIT")
    assert (
        base.cells["efficacy"].err_kind == ""
        and cell_text(base.cells["efficacy"]) == f"{base.cells['efficacy'].mean:.2f}"
    )
    assert rep.table.footnotes == []
    assert (rep.out_dir / "report.html").is_file()


def test_he_change_keeps_three_significant_digits_where_edit_quality_keeps_two_decimals():
    from sphere.evaluation.he import HE_SIGNED as HE_COL
    from sphere.report.tables import Cell, cell_text, fmt_value

    assert fmt_value(0.0129, HE_COL) == "0.0129" and fmt_value(0.00716, HE_COL) == "0.00716"
    assert fmt_value(0.0129, "efficacy") == "0.01" and fmt_value(97.333, "efficacy") == "97.33"
    assert fmt_value(float("nan"), HE_COL) == "–"
    assert cell_text(Cell(mean=0.0129, err=0.0021, err_kind="ci95"), HE_COL) == "0.0129 ± 0.0021"
