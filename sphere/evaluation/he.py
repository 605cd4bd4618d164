"""Hyperspherical energy of every edited matrix as an evaluator (``he/layer_<l>`` columns)."""

from __future__ import annotations

from typing import Any

from editors.core.weights import weight_param
from sphere.evaluation.registry import EvalView, Moment, register_evaluator
from sphere.method.energy import hyperspherical_energy


@register_evaluator("he")
class EditedLayerEnergy:
    """HE (eval.he settings) of each edited layer: before editing, after every batch, at the end."""

    moments = frozenset({"pre", "batch", "final"})

    def __init__(self, cfg: Any) -> None:
        self.he = cfg.he

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        return {
            f"he/layer_{layer}": hyperspherical_energy(
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
