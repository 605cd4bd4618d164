"""Paired statistics of the report against hand-computed cases: the exact sign-flip test and its
floor, the paired t-test, Holm's correction, McNemar on per-record outcomes, pairing of runs that
differ only in SPHERE, the per-layer |ΔHE| headline, and correlations with the run as the unit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_run  # the run-directory writer of the report tests
from scipy import stats as sps

from sphere.evaluation.he import he_summaries
from sphere.report.build import build_report
from sphere.report.collect import collect
from sphere.report.correlation import correlate
from sphere.report.mcnemar import McNemar, mcnemar_pair
from sphere.report.paired import compare, exact_floor, exact_sign_flip_p, find_pairs, holm, paired_test


def test_sign_flip_p_by_hand() -> None:
    # [1, 2, 3]: of the 8 sign assignments only ±(1+2+3) reach |6| -> 2/8
    assert exact_sign_flip_p([1, 2, 3]) == pytest.approx(0.25)
    # [3, -1, 2]: sums 6, 2, 4, 0, 0, -4, -2, -6; |s| >= 4 in four of eight
    assert exact_sign_flip_p([3, -1, 2]) == pytest.approx(0.5)
    assert exact_sign_flip_p([1, -1]) == pytest.approx(1.0)
    assert exact_sign_flip_p([0.5] * 6) == pytest.approx(2 / 64)


def test_exact_floor_says_when_005_is_out_of_reach() -> None:
    assert exact_floor(3) == pytest.approx(0.25) and exact_floor(5) == pytest.approx(0.0625)
    assert exact_floor(6) == pytest.approx(0.03125)
    # the floor is attained: all differences of one sign
    for n in range(1, 9):
        assert exact_sign_flip_p([1.0 + i for i in range(n)]) == pytest.approx(exact_floor(n))
    t3, t6 = paired_test([2, 3, 4], [1, 1, 1]), paired_test([2] * 5 + [3], [1] * 6)
    assert not t3.can_reach and t6.can_reach and t6.p_exact < 0.05


def test_paired_t_by_hand() -> None:
    t = paired_test([2, 4, 6], [1, 2, 3])  # differences 1, 2, 3
    assert t.diffs == (1, 2, 3) and t.mean == pytest.approx(2.0) and t.sd == pytest.approx(1.0)
    assert t.t == pytest.approx(2 / (1 / math.sqrt(3)))  # 3.4641
    assert t.p_t == pytest.approx(2 * sps.t.sf(2 * math.sqrt(3), 2)) and t.p_t == pytest.approx(
        0.0742, abs=1e-4
    )
    assert t.ci == pytest.approx(sps.t.ppf(0.975, 2) / math.sqrt(3))
    assert (t.n_pos, t.n_neg) == (3, 0)
    # a pair where one run did not measure the metric is dropped, not counted as 0
    assert paired_test([1.0, float("nan"), 3.0], [0.0, 1.0, 1.0]).n == 2


def test_holm_by_hand() -> None:
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adj = holm([0.2, float("nan"), 0.01])
    assert adj[0] == pytest.approx(0.2) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 0.8·2 capped at 1, then the running max


def test_mcnemar_counts_discordant_records_only() -> None:
    off = {
        i: {"case_id": i, "rewrite_success_prompts": [1.0], "neighborhood_success_prompts": [1.0, 0.0]}
        for i in range(10)
    }
    on = {
        i: {
            "case_id": i,
            "rewrite_success_prompts": [0.0 if i < 6 else 1.0],
            "neighborhood_success_prompts": [1.0, 1.0],
        }
        for i in range(10)
    }
    eff = mcnemar_pair(off, on, "efficacy")
    assert eff == McNemar(units=10, lost=6, gained=0, unit="records") and eff.p == pytest.approx(2 / 64)
    spec = mcnemar_pair(off, on, "specificity")
    assert spec is not None and (spec.units, spec.lost, spec.gained, spec.unit) == (20, 0, 10, "prompts")
    assert spec.p == pytest.approx(sps.binomtest(10, 10).pvalue)
    assert mcnemar_pair(off, on, "generalization") is None  # neither run has paraphrase outcomes


def test_he_headline_is_the_mean_magnitude_not_the_signed_mean() -> None:
    out = he_summaries({"4": -0.004, "8": 0.004})
    assert out["he_change_pct"] == pytest.approx(0.0)  # cancels
    assert out["he_abs_change_pct"] == pytest.approx(0.004)
    assert out["he_abs_change_pct/4"] == pytest.approx(0.004) and out["he_change_pct/4"] == pytest.approx(
        -0.004
    )


def _study(tmp_path: Path, seeds=(0, 1, 2), outcomes: bool = True) -> Path:
    root = tmp_path / "study"
    for seed in seeds:
        for sphere in (False, True):
            d = write_run(root, sphere=sphere, alpha=0.8, beta=0.5, seed=seed, checkpoint=False)
            if outcomes:  # SPHERE loses record 0 and gains records 1-2 in every seed
                rows = []
                for case in range(5):
                    ok = (case != 0) if sphere else (case not in (1, 2))
                    rows.append(
                        {
                            "case_id": case,
                            "rewrite_success": float(ok),
                            "rewrite_success_prompts": [float(ok)],
                        }
                    )
                (d / "outcomes.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # a baseline run that differs in a learning rate pairs with nothing
    write_run(root / "other", sphere=False, seed=7, v_lr=0.1, checkpoint=False)
    write_run(root / "other", sphere=True, seed=7, checkpoint=False)
    return root


def test_pairs_are_runs_that_differ_only_in_sphere(tmp_path: Path) -> None:
    coll = collect([_study(tmp_path)])
    pairs, warnings = find_pairs(coll)
    assert sorted(pairs["seed"]) == [0, 1, 2]
    assert any("v_lr" in w and "not a SPHERE pair" in w for w in warnings)
    comps, _ = compare(coll, ["efficacy", "he_abs_change_pct"])
    (comp,) = comps
    eff = comp.tests["efficacy"]
    by_id = coll.runs.set_index("run_id")
    expected = [by_id.at[on, "efficacy"] - by_id.at[off, "efficacy"] for off, on in comp.run_ids]
    assert eff.diffs == pytest.approx(expected) and comp.seeds == [0, 1, 2]
    # the synthetic SPHERE runs decay less in every seed: 3 of 3 up, but 3 pairs cannot reach 0.05
    assert eff.n_pos == 3 and eff.p_exact == pytest.approx(0.25) and not comp.supported("efficacy")
    assert list(comp.holm_exact.values()) == pytest.approx(holm([t.p_exact for t in comp.tests.values()]))


def test_report_writes_the_paired_section(tmp_path: Path) -> None:
    report = build_report([_study(tmp_path)], tmp_path / "out", formats=("png",))
    md = (tmp_path / "out" / "tables" / "paired.md").read_text()
    assert "cannot give p < 0.05" in md and "Holm" in md and "∣ΔHE∣" in md
    frame = pd.read_csv(tmp_path / "out" / "tables" / "paired.csv")
    assert {"mean_diff", "ci95", "p_t", "p_exact", "p_exact_floor", "p_exact_holm", "p_t_holm"} <= set(
        frame.columns
    )
    assert "he_abs_change_pct" in set(frame["metric"]) and "he_abs_change_pct/2" in set(frame["metric"])
    mc = pd.read_csv(tmp_path / "out" / "tables" / "mcnemar.csv")
    pooled = mc[(mc["seed"] == "all") & (mc["metric"] == "efficacy")].iloc[0]
    assert (pooled["lost"], pooled["gained"], pooled["units"]) == (3, 6, 15)
    assert pooled["p"] == pytest.approx(sps.binomtest(6, 9).pvalue)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Paired comparisons" in html and "McNemar" in html
    # no "best mean" bold in the results table: 3 pairs can never support a difference
    assert "**" not in (tmp_path / "out" / "tables" / "results.md").read_text()
    assert not report.table.rows or all(not c.best for r in report.table.rows for c in r.cells.values())


def test_bold_only_where_six_pairs_support_it(tmp_path: Path) -> None:
    report = build_report(
        [_study(tmp_path, seeds=range(6), outcomes=False)], tmp_path / "out", formats=("png",)
    )
    (comp,) = report.inference.comparisons
    assert comp.tests["efficacy"].p_exact == pytest.approx(2 / 64)
    bold = {(r.label, k) for r in report.table.rows for k, c in r.cells.items() if c.best}
    assert all(comp.supported(k) for _, k in bold)
    if comp.supported("efficacy"):
        assert (comp.label, "efficacy") in bold


def test_correlation_within_points_with_runs_permuted() -> None:
    # 4 runs x 3 points; within each number of edits the run with more HE has lower quality
    rows = []
    for run, (he, q) in enumerate([(1.0, 4.0), (2.0, 3.0), (3.0, 2.0), (4.0, 1.0)]):
        for n in (10, 20, 30):
            rows.append(
                {
                    "run_id": f"r{run}",
                    "setting_id": "s",
                    "block": "b",
                    "n_edits_done": n,
                    "x": he + n,
                    "y": q - n,
                }
            )
    out = correlate(pd.DataFrame(rows), "block")
    assert out["r_within"] == pytest.approx(-1.0)
    # 4! = 24 permutations, exact; |r| = 1 only for the identity and the reversed order
    assert out["permutations"] == 24 and out["p_runs_permuted"] == pytest.approx(2 / 24)
    assert out["n_runs"] == 4 and out["n_points"] == 12 and out["df_per_run"] == 4 - 1 - 1


def test_report_carries_each_runs_provenance(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    new = write_run(root, seed=0, checkpoint=False)
    write_run(root, seed=1, checkpoint=False)  # an older run, without provenance
    summary = json.loads((new / "summary.json").read_text())
    summary["provenance"] = {
        "code": {"commit": "a" * 40, "dirty": True},
        "versions": {"sphere-edit": "0.1.0", "torch": "2.13.0", "transformers": "5.0"},
        "machine": {"device": "cpu"},
        "model": {"digest": "sha256:abc"},
        "data": {"sha256": "b" * 64},
    }
    (new / "summary.json").write_text(json.dumps(summary))
    build_report([root], tmp_path / "out", formats=("png",))
    runs = pd.read_csv(tmp_path / "out" / "tables" / "runs.csv")
    assert set(runs["commit"].dropna()) == {"a" * 12 + "+"} and runs["commit"].isna().sum() == 1
    html = (tmp_path / "out" / "report.html").read_text()
    assert "a" * 12 + "+" in html and "1 run(s) without provenance" in html and "b" * 12 in html
