"""The report's figures can be read right: baseline and + SPHERE differ in colour (not only in dash),
numbers of edits are ticked as integers, each metric's axis names its own unit (fluency is no
percentage), tiny HE changes get a scaled unit, and the figures draw from small synthetic runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from helpers import write_run
from matplotlib.colors import to_rgb

from sphere.report.build import build_report
from sphere.report.figures.style import (
    EDITOR_COLOURS,
    axis_label,
    edits_axis,
    is_bounded_percent,
    metric_info,
    scale_exponent,
    setting_styles,
)


def _settings(editors: list[str], sweep: int = 1) -> pd.DataFrame:
    rows = []
    for e in editors:
        rows.append(
            dict(setting_id=f"{e}-off", editor=e, sphere=False, alpha=None, beta=None, rank=None, label=e)
        )
        for k in range(sweep):
            a = 0.5 + 0.1 * k
            rows.append(dict(setting_id=f"{e}-on{k}", editor=e, sphere=True, alpha=a, beta=0.5, rank=None,
                             label=f"{e} + SPHERE (α={a})"))  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("editors", [["memit", "alphaedit"], ["rome", "memit", "prune", "rect", "alphaedit"]])
def test_every_setting_has_its_own_colour_and_off_on_differ_in_colour(editors: list[str]) -> None:
    styles = setting_styles(_settings(editors))
    colours = [tuple(round(c, 6) for c in st["color"]) for st in styles.values()]
    assert len(set(colours)) == len(colours) == 2 * len(editors)
    for e in editors:
        off, on = styles[f"{e}-off"], styles[f"{e}-on0"]
        assert off["color"] != on["color"]
        assert (off["linestyle"], on["linestyle"]) == ("--", "-") and on["marker"]  # the greyscale cue


def test_a_sweep_of_one_editor_stays_apart_and_editors_keep_their_pair() -> None:
    styles = setting_styles(_settings(["memit", "alphaedit"], sweep=3))
    on = [styles[f"memit-on{k}"]["color"] for k in range(3)]
    assert len(set(on)) == 3 and len({styles[f"memit-on{k}"]["marker"] for k in range(3)}) == 3
    # editors sorted: alphaedit gets the first pair, memit the second, whatever the row order
    assert styles["alphaedit-off"]["color"] == to_rgb(EDITOR_COLOURS[0][0])
    assert styles["memit-off"]["color"] == to_rgb(EDITOR_COLOURS[1][0])
    assert len({c for pair in EDITOR_COLOURS for c in pair}) == 2 * len(EDITOR_COLOURS)


def test_edit_axis_ticks_are_integers() -> None:
    fig, ax = plt.subplots()
    for hi in (3, 7, 40, 301, 10_000):
        ax.set_xlim(0, hi)
        edits_axis(ax)
        ticks = [t for t in ax.xaxis.get_major_locator()() if 0 <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), (hi, ticks)
    assert ax.get_xlabel() == "number of edits"
    plt.close(fig)


def test_units_per_metric() -> None:
    assert "%" not in axis_label("fluency") and "entropy" in axis_label("fluency")
    assert "%" not in axis_label("consistency") and "cosine" in axis_label("consistency_proxy")
    for m in ("efficacy", "generalization_top1", "specificity", "score", "general/nli", "he_change_pct/7"):
        assert axis_label(m).endswith("(%)"), m
    assert metric_info("general/nli") == ("NLI acc.", "%") and metric_info("something_new") == (
        "something_new",
        "",
    )
    assert axis_label("something_new") == "something_new"
    assert is_bounded_percent("efficacy") and not is_bounded_percent("he_change_pct/3")
    assert not is_bounded_percent("fluency")


def test_tiny_he_changes_get_a_scaled_unit() -> None:
    assert scale_exponent([0.0123, -0.004, float("nan")]) == -3
    assert scale_exponent([0.06]) == -3 and scale_exponent([0.0009]) == -6
    assert scale_exponent([12.0, 0.01]) == 0 and scale_exponent([0.0]) == 0 and scale_exponent([]) == 0
    assert axis_label("he_abs_change_pct", -3) == "HE ∣Δ∣ (mean over layers) (×10⁻³ %)"


def test_figures_draw_from_synthetic_runs_with_two_editors(tmp_path: Path) -> None:
    for editor in ("memit", "alphaedit"):
        for sphere in (False, True):
            write_run(tmp_path / "runs", editor=editor, sphere=sphere, seed=0, checkpoint=False)
    rep = build_report([tmp_path / "runs"], tmp_path / "out", formats=("png",))
    names = {f.name for f in rep.figures.figures}
    assert {
        "metrics_vs_edits",
        "he_change_vs_edits",
        "plugin_bars",
        "general_vs_edits",
        "he_vs_metric",
    } <= names
    assert not any("failed" in s for s in rep.figures.skipped)
    page = (rep.out_dir / "report.html").read_text()
    assert "overflow-x:auto" in page
    results = page.split("<h2>Results</h2>", 1)[1].split("<h2>", 1)[0]
    assert "[a]" in results  # the fluency note of write_run, marked in brackets ...
    assert not set("⁰¹²³⁴⁵⁶⁷⁸⁹") & set(results)  # ... never as a superscript that reads as an exponent
