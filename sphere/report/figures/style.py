"""How the report's figures look: what each metric is called and in which unit, the colour code of
the settings, and how axes are ticked.

Kept apart from the drawing code so that what a reader needs to read a figure right (units, which
line is the baseline and which + SPHERE, integer numbers of edits) is decided in one place that the
tests can check without drawing anything, and that the per-run figures (:mod:`.run_curves`) share
with the report's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sphere.evaluation import catalogue

# (baseline, + SPHERE) per editor: two neighbouring but clearly different hues of tab10, the lighter
# one for the baseline, so the family names the editor and the hue says off or on; the dash
# (baseline) and the filled marker (+ SPHERE) repeat it for greyscale print. All ten are distinct.
EDITOR_COLOURS = [
    ("#17becf", "#1f77b4"),  # cyan, blue
    ("#ff7f0e", "#d62728"),  # orange, red
    ("#bcbd22", "#2ca02c"),  # olive, green
    ("#e377c2", "#9467bd"),  # pink, purple
    ("#7f7f7f", "#8c564b"),  # grey, brown
]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
_SUPER = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def metric_info(metric: str) -> tuple[str, str]:
    """(label, unit) of a metric as its evaluator declared it (sphere.evaluation.catalogue); an
    unknown one is its own label, with no unit claimed."""
    m = catalogue.metric(metric)
    return m.label, m.unit


def axis_label(metric: str, exp: int = 0, label: str | None = None) -> str:
    """``Efficacy (%)``; with ``exp`` the values are drawn ×10^-exp: ``HE change (×10⁻³ %)``."""
    name, unit = metric_info(metric)
    label = label or name
    scale = f"×10{str(exp).translate(_SUPER)}" if exp else ""
    inner = " ".join(x for x in (scale, unit) if x)
    return f"{label} ({inner})" if inner else label


def is_bounded_percent(metric: str) -> bool:
    """A share of cases (0-100 %), so a CI band may be clipped to it (a change is not: HE)."""
    m = catalogue.metric(metric)
    return m.unit == "%" and m.better > 0


def scale_exponent(values: Any) -> int:
    """A multiple of 3 that brings tiny values (largest |v| < 0.1, such as HE changes of 0.01 %)
    to readable tick labels (12 rather than 0.012); 0 for everything else."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    top = float(v.max()) if v.size else 0.0
    if top == 0.0 or top >= 0.1:
        return 0
    return 3 * math.floor(math.log10(top) / 3)


def edits_axis(ax: Any, axis: str = "x", label: str = "number of edits", fontsize: float = 8) -> None:
    """A number-of-edits axis: integer ticks only (never "150.5 edits"), at most ~6 of them."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(nbins=6, integer=True, steps=[1, 2, 2.5, 5, 10]))
    getattr(ax, f"set_{axis}label")(label, fontsize=fontsize)


def editor_colours(editors: Any) -> dict[str, tuple[str, str]]:
    """{editor: (baseline colour, + SPHERE colour)}, the editors taken in sorted order."""
    return {e: EDITOR_COLOURS[i % len(EDITOR_COLOURS)] for i, e in enumerate(sorted(set(editors)))}


def setting_styles(settings: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """{setting_id: matplotlib style}: per editor (sorted), the baseline dashed in its light colour
    and no marker; each + SPHERE setting solid in its dark colour, shaded dark to light and with its
    own marker when a sweep has several, so they stay apart even where markers are not drawn."""
    from matplotlib.colors import to_rgb

    colours = editor_colours(settings["editor"])
    n_sphere = settings[settings["sphere"].astype(bool)].groupby("editor")["setting_id"].nunique().to_dict()
    styles: dict[str, dict[str, Any]] = {}
    counters: dict[str, int] = {}
    for _, s in settings.sort_values(["editor", "alpha", "beta", "rank"], na_position="first").iterrows():
        base, on = colours[s["editor"]]
        if s["sphere"]:
            k = counters.get(s["editor"], 0)
            counters[s["editor"]] = k + 1
            n = n_sphere.get(s["editor"], 1)
            f = -0.35 + 0.6 * k / (n - 1) if n > 1 else 0.0
            c = np.array(to_rgb(on))
            shade = c * (1 + f) if f < 0 else c + (1 - c) * f
            style: dict[str, Any] = {
                "color": tuple(shade),
                "linestyle": "-",
                "marker": MARKERS[k % len(MARKERS)],
            }
        else:
            style = {"color": to_rgb(base), "linestyle": "--", "marker": None}
        styles[s["setting_id"]] = {**style, "label": s["label"]}
    return styles
