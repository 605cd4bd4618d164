"""AlphaEdit (Fang et al., 2025): MEMIT's residual spreading, with each update confined to the null
space of the preserved keys' covariance, so ΔW k₀ ≈ 0 for the knowledge to keep (spec §2.5).

Algorithm:
  setup, on the unedited model: P_l = Û Ûᵀ over the eigenvectors of C_l with eigenvalue below
    ``nullspace_threshold`` (a symmetric ``eigh``, on the GPU when there is one, instead of the
    reference's CPU SVD), cached on disk by the run; ``nullspace_rule=trace`` instead keeps the
    directions that hold a fraction of tr(C), a rule that does not depend on the model's key scale;
  per batch: z, then for each layer (ascending, ``spread_residual``) with K the keys and R the
    residual share: ΔW = Xᵀ, (P(KᵀK + C_past) + L2·I) X = P Kᵀ R. SPHERE's default point here is
    ``layer`` (inside the loop: later layers and the key cache see the projected update);
  after the batch is written: C_past += KᵀK of its keys read on the edited model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from editors.core.context import EditContext
from editors.core.footprint import SETUP, SOLVE, Footprint, PlanItem, ShapeInfo
from editors.core.hparams import knob
from editors.core.past_keys import PastKeys
from editors.core.progress import progress
from editors.core.protocol import Placement
from editors.core.solvers import NULLSPACE_RULES, alphaedit_delta, nullspace_projector
from editors.core.spread import SPREAD_POINTS, SpreadEditor, spread_footprint
from editors.memit import MEMITHParams
from editors.registry import register_editor

log = logging.getLogger(__name__)


@dataclass
class AlphaEditHParams(MEMITHParams):
    """MEMIT's value knobs plus the null-space threshold and the ridge term L2."""

    nullspace_threshold: float = knob(
        2e-2,
        "absolute rule: eigenvalues of C below this span the null space (reference: 0.02); trace rule: the "
        "null space holds at most this fraction of tr(C)",
    )
    nullspace_rule: str = knob(
        "absolute", "absolute (the reference's eigenvalue cut) or trace (a fraction of the key energy)"
    )
    L2: float = knob(10.0, "ridge term of the projected system; keeps it invertible (reference: 10)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nullspace_threshold <= 0:
            raise ValueError(f"nullspace_threshold={self.nullspace_threshold} must be > 0")
        if self.nullspace_rule not in NULLSPACE_RULES:
            raise ValueError(
                f"nullspace_rule={self.nullspace_rule!r} must be one of {', '.join(NULLSPACE_RULES)}"
            )
        if self.nullspace_rule == "trace" and self.nullspace_threshold >= 1:
            raise ValueError(
                f"nullspace_threshold={self.nullspace_threshold} is a fraction of tr(C) under nullspace_rule=trace; "
                "use a value in (0, 1), e.g. 0.01"
            )
        if self.past_edit_weight:
            raise ValueError(
                f"past_edit_weight={self.past_edit_weight} is MEMIT's option; AlphaEdit always solves with its "
                "past keys (C_past), so leave it at 0"
            )
        if self.L2 <= 0:
            raise ValueError(f"L2={self.L2} must be > 0 (it keeps the projected system invertible)")


class NullSpaceSolve:
    """ΔW = Xᵀ with (P(KᵀK + C_past) + L2·I) X = P Kᵀ R; remembers every committed batch's keys."""

    wants_edited_keys = True

    def __init__(self, threshold: float, l2: float, rule: str = "absolute") -> None:
        self.threshold, self.l2, self.rule = threshold, l2, rule
        self.projectors: dict[int, torch.Tensor] = {}
        self.past = PastKeys()  # C_past: Σ k kᵀ of all edited keys, per layer

    def setup(self, ctx: EditContext, layers: Sequence[int]) -> None:
        missing = [layer for layer in layers if layer not in self.projectors]
        if not missing:
            return
        cov = ctx.covariance(layers)
        # one step per layer: an eigh of a d_ff² matrix (or a cached projector read back)
        for layer in progress(missing, "AlphaEdit null-space projectors", "layer"):
            c = cov[layer]
            rule = "" if self.rule == "absolute" else f".{self.rule}"  # absolute keeps its old cache name
            key = f"alphaedit_P.{ctx.spec.weight_module_name(layer)}.thr{self.threshold:g}{rule}"
            P = ctx.cached(key, partial(nullspace_projector, c, self.threshold, self.rule))
            self.projectors[layer] = P
            log.info(
                "AlphaEdit layer %d: null space %d of %d key directions (nullspace_rule=%s, threshold %g)",
                layer,
                round(float(P.diagonal().sum())),
                P.shape[0],
                self.rule,
                self.threshold,
            )
            self.past.ensure(layer, like=c)

    def __call__(self, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        return alphaedit_delta(keys, resid, self.projectors[layer], self.past[layer], self.l2)

    def remember(self, keys: dict[int, torch.Tensor]) -> None:
        self.past.add(keys)

    def state_dict(self) -> dict[str, Any]:
        return self.past.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.past.load_state_dict(state)

    def footprint(self, shape: ShapeInfo) -> Footprint:
        """C of every edited layer (the run's statistics); the projectors P and the key cache Σkkᵀ,
        d_ff² float32 per layer each, in host memory (moved to the device one layer at a time); P
        from an eigh of C on the CPU (eigenvectors + LAPACK workspace ≈ 3 d_ff²), cached on disk by
        the run. The solve (``alphaedit_delta``), float32: P, C_past, KᵀK and their sum (4), then
        P, M = P(…) and M's LU (3)."""
        n, ff = len(shape.layers), shape.d_ff
        ff2 = ff**2
        projectors = PlanItem(
            "AlphaEdit: null-space projectors P",
            "host",
            n * ff2 * 4,
            f"{n} × {ff}² × 4 B",
            setting="use fewer editor.layers",
        )
        past = self.past.footprint(
            shape, "AlphaEdit: key cache Σkkᵀ of edited keys", "use fewer editor.layers"
        )
        rest = [
            PlanItem("AlphaEdit: eigh of C for P", "host", 3 * ff2 * 4, f"3 × {ff}² × 4 B", (SETUP,)),
            PlanItem(
                "solve workspace (float32): P, C_past, KᵀK, sum",
                "device",
                4 * ff2 * 4,
                f"4 × {ff}² × 4 B",
                (SOLVE,),
                "use a larger device (d_ff² is fixed by the model)",
            ),
            PlanItem("projector cache (run.cache_dir)", "disk", n * ff2 * 4, f"{n} × {ff}² × 4 B"),
        ]
        return Footprint([projectors]) + past + Footprint(rest, covariance_layers=n)


ALPHAEDIT_PLACEMENT = Placement(points=SPREAD_POINTS, default_point="layer", default_reference="current")


def nullspace_solve(hp: AlphaEditHParams) -> NullSpaceSolve:
    return NullSpaceSolve(hp.nullspace_threshold, hp.L2, hp.nullspace_rule)


def alphaedit_footprint(shape: ShapeInfo, hp: AlphaEditHParams) -> Footprint:
    return spread_footprint(shape, hp, nullspace_solve(hp))


@register_editor(
    "alphaedit",
    hparams=AlphaEditHParams,
    placement=ALPHAEDIT_PLACEMENT,
    display_name="AlphaEdit",
    footprint=alphaedit_footprint,
)
def alphaedit(hp: AlphaEditHParams, ctx: EditContext) -> SpreadEditor:
    """Null-space constrained editing with a cache of past keys (Fang et al., 2025)."""
    return SpreadEditor(hp, ctx, nullspace_solve(hp))
