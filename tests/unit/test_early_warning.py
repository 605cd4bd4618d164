"""HE as an early warning (sphere.report.early_warning): the protocol's failure point, the per-batch
signals, thresholds calibrated on some seeds and judged on the others, and the report's table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from sphere.cli.report import main as report_main
from sphere.report import early_warning as ew
from sphere.report.collect import collect

N, BATCH, EVERY, HE0 = 200, 10, 50, 0.5
PRE = {"efficacy": 20.0, "specificity": 80.0}  # the unedited model (efficacy < 50 is not a failure)


def write(
    root: Path,
    seed: int,
    *,
    he_pct,
    efficacy=lambda n: 90.0,
    specificity=lambda n: 80.0,
    norm=lambda n: 1.0,
    top1=None,
) -> Path:
    """A finished MEMIT run: batches of 10 to 200 edits, evaluations every 50. ``he_pct(n)``: the
    mean |ΔHE| % after n edits, laid on two layers as +x and −x (the mean of magnitudes is x)."""
    d = root / f"memit_seed{seed}"
    d.mkdir(parents=True)
    cfg = {
        "run": {"seed": seed},
        "model": {"name": "tiny-llama"},
        "sphere": {"enabled": False, "alpha": 0.8, "beta": 0.5, "rank": None},
        "editor": {"name": "memit"},
        "dataset": {"kind": "counterfact", "limit": N, "batch_size": BATCH},
        "eval": {"protocol": "edited_so_far", "every": EVERY},
    }
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))

    def he(n: int) -> dict:
        x = he_pct(n) / 100.0
        return {"he/layer_0": HE0 * (1 + x), "he/layer_1": HE0 * (1 - x)}

    def quality(n: int) -> dict:
        return {
            "efficacy": efficacy(n),
            "specificity": specificity(n),
            **({"efficacy_top1": top1(n)} if top1 else {}),
        }

    rows = [{"n_edits": 0, **PRE, "he/layer_0": HE0, "he/layer_1": HE0}]
    for n in range(BATCH, N + 1, BATCH):
        row = {"n_edits": n, "update_norm/layer_0": norm(n), "update_norm/layer_1": norm(n), **he(n)}
        if n % EVERY == 0 and n < N:
            row.update(quality(n))
        rows.append(row)
    rows.append({"n_edits": N, "final": True, **quality(N), **he(N)})
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    summary = {"editor": "memit", "n_edits": N, "seed": seed, **quality(N), "pre": PRE}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def quiet(slope: float):
    return lambda n: slope * n


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Seeds 0 and 1 never fail (|ΔHE| up to 0.0105 and 0.0084 %: the threshold is 0.0105); seed 2
    fails at 150 edits (efficacy 40) while its |ΔHE| rises by 0.0001 % per edit, first above the
    threshold at 110 edits (0.011 %), 40 edits before; its update norm doubles from 140 edits. Seed 3
    never fails and stays below the threshold (0.0100 % at the end)."""
    root = tmp_path / "runs"
    write(root, 0, he_pct=quiet(0.0105 / N))
    write(root, 1, he_pct=quiet(0.0084 / N))
    write(
        root,
        2,
        he_pct=quiet(0.0001),
        efficacy=lambda n: 90.0 if n < 150 else 40.0,
        norm=lambda n: 1.0 if n < 140 else 2.0,
    )
    write(root, 3, he_pct=quiet(0.0100 / N))
    return root


def _row(df, seed: int, signal: str | None = None):
    sel = df["seed"] == seed
    if signal is not None:
        sel &= df["signal"] == signal
    (i,) = df.index[sel]
    return df.loc[i]


def test_failing_run_warns_40_edits_before_failure(runs: Path) -> None:
    res = ew.analyse(collect([runs]), calibration_seeds=(0, 1))
    f = res.failures
    assert _row(f, 2)["failed_at"] == 150 and _row(f, 2)["failed_by"] == ew.EFFICACY
    assert all(math.isnan(_row(f, s)["failed_at"]) for s in (0, 1, 3))
    assert _row(f, 2)["last_eval"] == N and _row(f, 2)["last_efficacy"] == 40.0
    assert _row(f, 0)["pre_specificity"] == 80.0

    thr = res.thresholds.set_index("signal")["threshold"]
    assert thr[ew.SIGNAL_HE] == pytest.approx(0.0105)
    assert thr[ew.SIGNAL_HE_STEP] == pytest.approx(0.0105 / 20)
    assert thr[ew.SIGNAL_UPDATE] == 1.0

    he = _row(res.judgement, 2, ew.SIGNAL_HE)
    assert (he["crossed_at"], he["failed_at"], he["lead"], he["role"]) == (110, 150, 40, "judged")
    assert not he["false_alarm"]
    upd = _row(res.judgement, 2, ew.SIGNAL_UPDATE)
    assert (upd["crossed_at"], upd["lead"]) == (140, 10)
    step = _row(res.judgement, 2, ew.SIGNAL_HE_STEP)
    assert (step["crossed_at"], step["lead"]) == (10, 140)  # 0.001 per batch from the first one

    # the run that never fails stays below every threshold: no false alarm
    for sig in ew.SIGNALS:
        r = _row(res.judgement, 3, sig)
        assert math.isnan(r["crossed_at"]) and not r["false_alarm"] and math.isnan(r["lead"])
    # the calibration runs raise none by construction (the threshold is their largest value)
    assert not res.judgement.loc[res.judgement["role"] == "calibration", "false_alarm"].any()


def test_signals_per_batch(runs: Path) -> None:
    s = ew.batch_signals(collect([runs]))
    s2 = s[s["run_id"].str.endswith("seed2")].set_index("n_edits")
    assert list(s2.index) == list(range(BATCH, N + 1, BATCH))
    assert s2.loc[110, ew.SIGNAL_HE] == pytest.approx(0.011)  # +x and −x: the mean magnitude
    assert s2.loc[110, ew.SIGNAL_HE_STEP] == pytest.approx(0.001)
    assert s2.loc[150, ew.SIGNAL_UPDATE] == 2.0


def test_specificity_rule_fails_a_run_on_its_own(tmp_path: Path) -> None:
    # efficacy stays at 90; specificity exactly 20 points below the unedited 80 from 100 edits
    write(tmp_path, 0, he_pct=quiet(1e-5), specificity=lambda n: 80.0 if n < 100 else 60.0)
    write(tmp_path, 1, he_pct=quiet(1e-5), specificity=lambda n: 80.0 if n < 100 else 60.5)
    f = ew.failure_points(collect([tmp_path]))
    assert _row(f, 0)["failed_at"] == 100 and _row(f, 0)["failed_by"] == ew.SPECIFICITY
    assert math.isnan(_row(f, 1)["failed_at"])  # 19.5 points below is not a failure
    assert ew.has_failed(49.9, 80.0, 80.0) and not ew.has_failed(50.0, 61.0, 80.0)


def test_a_collapse_the_line_cannot_see_shows_in_top1(tmp_path: Path) -> None:
    """Efficacy and specificity drift to ~55 % (a model near chance) and never cross the line; the
    table puts top-1 efficacy at the first and the last evaluation beside them."""
    write(tmp_path, 0, he_pct=quiet(1e-5), efficacy=lambda n: 95.0 - 0.2 * n, specificity=lambda n: 65.0,
          top1=lambda n: 70.0 if n <= 50 else 2.5)  # fmt: skip
    write(tmp_path, 1, he_pct=quiet(1e-5))  # no top-1 logged
    res = ew.analyse(collect([tmp_path]))
    r = _row(res.failures, 0)
    assert math.isnan(r["failed_at"]) and r["last_efficacy"] == 55.0
    assert (r["first_eval"], r["first_efficacy_top1"], r["last_efficacy_top1"]) == (50, 70.0, 2.5)
    assert math.isnan(_row(res.failures, 1)["last_efficacy_top1"])
    md = ew.to_markdown(res)
    assert "| 70.00 (50) → 2.50 (200) |" in md and "| 80.00 | – |" in md
    assert "cannot see a collapse" in md


def test_calibration_without_a_failing_run_says_so(runs: Path) -> None:
    coll = collect([runs])
    res = ew.analyse(coll, calibration_seeds=(0, 1))
    assert ew.NO_FAILING_CALIBRATION in res.notes
    assert ew.NO_FAILING_CALIBRATION[1:] in ew.to_markdown(res)
    assert ew.NO_FAILING_CALIBRATION not in ew.analyse(coll, calibration_seeds=(0, 2)).notes
    # every calibration run fails: no threshold, no crossing, and it is said
    alone = ew.analyse(coll, calibration_seeds=(2,))
    assert alone.thresholds["threshold"].isna().all()
    assert alone.judgement["crossed_at"].isna().all()
    assert any("every calibration run fails" in n for n in alone.notes)


def test_no_failing_run_sentence(tmp_path: Path) -> None:
    write(tmp_path, 0, he_pct=quiet(1e-5))
    md = ew.to_markdown(ew.analyse(collect([tmp_path])))
    assert "No run failed by the protocol's definition" in md and "| no |" in md
    assert "--warn-calibration-seeds" in md  # no thresholds without calibration seeds


def test_report_writes_the_early_warning_table_and_figure(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = report_main([str(runs), "-o", str(out), "--formats", "png", "-q", "--warn-calibration-seeds", "0,1"])
    assert rc == 0
    md = (out / "tables" / "early_warning.md").read_text()
    assert "### Thresholds (calibrated on seeds 0, 1)" in md
    assert "| 150 (efficacy) |" in md and "| 110 | 150 | +40 | no |" in md
    csv = (out / "tables" / "early_warning.csv").read_text().splitlines()
    assert len(csv) == 5 and f"lead/{ew.SIGNAL_HE}" in csv[0]
    assert (out / "figures" / "early_warning.png").stat().st_size > 1000
    assert "HE as an early warning" in (out / "report.html").read_text()
    assert report_main([str(runs), "-o", str(out), "--warn-calibration-seeds", "0,x"]) == 2
