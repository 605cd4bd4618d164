"""MEMIT (Meng et al., 2023): spread each batch's residual over several layers by least squares.

Algorithm (spec §2.2), per batch of requests:
  1. z = target values at the last edited layer (``compute_target_values``);
  2. for each edited layer l_i, ascending: K = keys at l_i, R_i = (Z − H_L) / (#layers − i),
     ΔW_i = R_iᵀ K (λC_i + KᵀK)⁻¹, applied temporarily so later layers see it (``spread_residual``);
  3. the batch's ΔW are committed together (``step`` transforms such as SPHERE act here).
C_i = E[k kᵀ] over a text corpus, collected once on the unedited model. ``past_edit_weight`` μ > 0
adds μ·Σ k kᵀ over earlier edits' keys to λC_i (not in the reference), so a batch cannot move the
outputs of earlier edits' keys for free: the reference leaves them to C_i alone, which on a model
with small MLP weights lets later batches overwrite earlier edits (docs/tuning.md, Gemma-3-270M).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from editors.core.context import EditContext
from editors.core.footprint import SOLVE, Footprint, PlanItem, ShapeInfo
from editors.core.hparams import HELP, knob
from editors.core.past_keys import PastKeys
from editors.core.solvers import GRAM_BLOCK_ROWS, memit_delta
from editors.core.spread import SPREAD_PLACEMENT, SpreadEditor, spread_footprint
from editors.core.values import check_compute_dtype
from editors.registry import register_editor


@dataclass
class MEMITHParams:
    """MEMIT knobs; defaults follow the reference's generic (GPT-2 XL) hparams."""

    layers: list[int] = knob([4, 5, 6, 7, 8], HELP["layers"])
    v_num_grad_steps: int = knob(25, HELP["v_num_grad_steps"])
    v_lr: float = knob(0.5, HELP["v_lr"])
    v_weight_decay: float = knob(0.5, HELP["v_weight_decay"])
    clamp_norm_factor: float = knob(0.75, HELP["clamp_norm_factor"])
    kl_factor: float = knob(0.0625, HELP["kl_factor"])
    mom2_update_weight: float = knob(15000.0, HELP["mom2_update_weight"])
    fact_token: str = knob("subject_last", HELP["fact_token"])
    context_template_length_params: list[list[int]] = knob([[10, 5]], HELP["context_template_length_params"])
    solver_dtype: str = knob("float64", HELP["solver_dtype"])
    v_max_rows: int = knob(0, HELP["v_max_rows"])
    v_compute_dtype: str = knob("float32", HELP["v_compute_dtype"])
    past_edit_weight: float = knob(
        0.0,
        "μ: weight of earlier edits' keys in the solve (λC + μC_past + KᵀK), which holds their outputs where "
        "they are; 0 is the reference's MEMIT, 1 weighs each earlier edit as much as the batch being made",
    )

    def __post_init__(self) -> None:
        if not self.layers or sorted(set(self.layers)) != list(self.layers):
            raise ValueError(f"layers={self.layers} must be a non-empty ascending list of distinct layers")
        if self.v_num_grad_steps < 1:
            raise ValueError(f"v_num_grad_steps={self.v_num_grad_steps} must be >= 1")
        if self.v_max_rows < 0:
            raise ValueError(f"v_max_rows={self.v_max_rows} must be >= 0 (0: all rows of a batch at once)")
        if self.mom2_update_weight < 0:
            raise ValueError(f"mom2_update_weight={self.mom2_update_weight} must be >= 0")
        if self.past_edit_weight < 0:
            raise ValueError(
                f"past_edit_weight={self.past_edit_weight} must be >= 0 (0: the reference's MEMIT)"
            )
        check_compute_dtype(self.v_compute_dtype)
        if self.solver_dtype not in ("float32", "float64"):
            raise ValueError(f"solver_dtype={self.solver_dtype!r} must be float32 or float64")


class MemitSolve:
    """ΔW_l = R_lᵀ K (λC_l + μC_past + KᵀK)⁻¹: the minimiser of ‖ΔW Kᵀ − Rᵀ‖² + λ tr(ΔW C_l ΔWᵀ)
    (+ μ‖ΔW K_pastᵀ‖² when μ = ``past_weight`` > 0, which makes it remember each batch's keys)."""

    def __init__(self, lam: float, dtype: torch.dtype, past_weight: float = 0.0) -> None:
        self.lam, self.dtype, self.past_weight = lam, dtype, past_weight
        self.wants_edited_keys = past_weight > 0
        self.cov: dict[int, torch.Tensor] = {}
        self.past = PastKeys()

    def setup(self, ctx: EditContext, layers: Sequence[int]) -> None:
        self.cov = ctx.covariance(layers)
        if self.wants_edited_keys:
            for layer in layers:
                self.past.ensure(layer, like=self.cov[layer])

    def __call__(self, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        past = self.past.gram.get(layer)  # None unless past_weight > 0 (setup starts the sums)
        return memit_delta(keys, resid, self.cov[layer], self.lam, self.dtype, past, self.past_weight)

    def remember(self, keys: dict[int, torch.Tensor]) -> None:
        self.past.add(keys)

    def state_dict(self) -> dict[str, Any]:
        return self.past.state_dict()  # C comes from the run's statistics cache

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.past.load_state_dict(state)

    def footprint(self, shape: ShapeInfo) -> Footprint:
        """C of every edited layer (the run's statistics); the d_ff × d_ff solve of one layer at a
        time (``memit_delta``), in the solve dtype: one matrix, A = λC + KᵀK built in place (KᵀK
        added GRAM_BLOCK_ROWS rows at a time), LU-factored in place and freed before ΔW is formed (in
        float32, counted with the layer loop). With ``past_weight`` > 0 the key cache Σkkᵀ
        (``PastKeys``) stays in host memory and is added to A a block of rows at a time."""
        ff = shape.d_ff
        sb, name = self.dtype.itemsize, str(self.dtype).removeprefix("torch.")
        rows = min(GRAM_BLOCK_ROWS, ff)
        past = Footprint()
        if self.wants_edited_keys:
            past = self.past.footprint(
                shape,
                "MEMIT past_edit_weight: key cache Σkkᵀ of earlier edits",
                "set editor.past_edit_weight=0 (the reference's MEMIT) or use fewer editor.layers",
            )
        workspace = PlanItem(
            f"solve workspace ({name}): A = λC + KᵀK in place",
            "device",
            ff**2 * sb + rows * ff * sb,
            f"{ff}² × {sb} B + {rows}×{ff} × {sb} B",
            (SOLVE,),
            "set editor.solver_dtype=float32"
            if sb == 8
            else "use a larger device (d_ff² is fixed by the model)",
        )
        return past + Footprint([workspace], covariance_layers=len(shape.layers))


def memit_solve(hp: MEMITHParams) -> MemitSolve:
    return MemitSolve(hp.mom2_update_weight, getattr(torch, hp.solver_dtype), hp.past_edit_weight)


def memit_footprint(shape: ShapeInfo, hp: MEMITHParams) -> Footprint:
    return spread_footprint(shape, hp, memit_solve(hp))


@register_editor(
    "memit", hparams=MEMITHParams, placement=SPREAD_PLACEMENT, display_name="MEMIT", footprint=memit_footprint
)
def memit(hp: MEMITHParams, ctx: EditContext) -> SpreadEditor:
    """Least squares spread over several layers (Meng et al., 2023)."""
    return SpreadEditor(hp, ctx, memit_solve(hp))
