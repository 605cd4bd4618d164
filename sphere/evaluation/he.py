"""Hyperspherical energy of every edited matrix as an evaluator (``he/layer_<l>`` columns)."""

from __future__ import annotations

import math
from typing import Any

from editors.core.weights import weight_param
from sphere.evaluation.catalogue import Metric
from sphere.evaluation.registry import EvalView, Moment, register_evaluator
from sphere.method.energy import hyperspherical_energy

# HE change from the unedited model, % per edited layer. The run's headline is the mean of the
# per-layer magnitudes: edits push some layers' HE down and others' up, and a signed mean over
# layers cancels (MEMIT seed 0 of the long study: layer 5 +0.0002 % without SPHERE, −0.0036 % with
# it, while the deep layers rise). The signed mean is kept as a secondary, labelled column.
HE_ABS = "he_abs_change_pct"
HE_SIGNED = "he_change_pct"


def he_summaries(per_layer: dict[str, float]) -> dict[str, float]:
    """From {layer: signed HE change %}: per layer ``he_change_pct/<l>`` and ``he_abs_change_pct/<l>``,
    and over layers the mean magnitude (``he_abs_change_pct``, the headline) and the signed mean
    (``he_change_pct``). NaN layers are left out of the means."""
    out: dict[str, float] = {}
    for layer, v in per_layer.items():
        out[f"{HE_SIGNED}/{layer}"] = v
        out[f"{HE_ABS}/{layer}"] = abs(v)
    finite = [v for v in per_layer.values() if not math.isnan(v)]
    out[HE_SIGNED] = sum(finite) / len(finite) if finite else math.nan
    out[HE_ABS] = sum(abs(v) for v in finite) / len(finite) if finite else math.nan
    return out


LAYER_PREFIX = "he/layer_"  # the logged HE of edited layer <l>

# HE per edited layer (logged), and what the report derives from it: the relative change from the
# unedited model per layer, and over layers the mean magnitude (the headline: a signed mean cancels
# between layers whose HE falls and layers whose HE rises) and the signed mean (secondary).
METRICS = [
    Metric(
        "he_abs_change_pct",
        "HE ∣Δ∣ (mean over layers)",
        better=-1,
        order=50,
        header="HE ∣Δ∣ % (mean over layers)",
    ),
    Metric("he_change_pct", "HE Δ (signed mean)", better=0, order=51, header="HE Δ % (signed mean)"),
    Metric("he_abs_change_pct/", "HE ∣Δ∣", better=-1, table=False, per_layer=True, order=52),
    Metric("he_change_pct/", "HE change", better=0, table=False, per_layer=True, order=53),
    Metric("he/", "HE", unit="normalised energy", better=0, table=False, per_layer=True, order=54),
]


@register_evaluator("he", metrics=METRICS)
class EditedLayerEnergy:
    """HE (eval.he settings) of each edited layer: before editing, after every batch, at the end."""

    moments = frozenset({"pre", "batch", "final"})

    def __init__(self, cfg: Any) -> None:
        self.he = cfg.he

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        return {
            f"{LAYER_PREFIX}{layer}": hyperspherical_energy(
                _matrix(view, layer),
                power=self.he.power,
                eps=self.he.eps,
                block_size=self.he.block_size,
                normalized=self.he.normalized,
            )
            for layer in view.layers
        }

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _matrix(view: EvalView, layer: int):
    """The edited matrix itself in the (d_model × d_ff) layout, not a float32 copy (``read_weight``):
    ``hyperspherical_energy`` makes the one copy it needs, in float64."""
    w = weight_param(view.model, view.spec, layer).detach()
    return w.T if view.spec.conv1d else w
