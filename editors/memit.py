"""MEMIT (Meng et al., 2023): spread each batch's residual over several layers by least squares.

Algorithm (spec §2.2), per batch of requests:
  1. z = target values at the last edited layer (``compute_target_values``);
  2. for each edited layer l_i, ascending: K = keys at l_i, R_i = (Z − H_L) / (#layers − i),
     ΔW_i = R_iᵀ K (λC_i + KᵀK)⁻¹, applied temporarily so later layers see it (``spread_residual``);
  3. the batch's ΔW are committed together (``step`` transforms such as SPHERE act here).
C_i = E[k kᵀ] over a text corpus, collected once on the unedited model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from editors.core.context import EditContext
from editors.core.hparams import HELP, knob
from editors.core.solvers import memit_delta
from editors.core.spread import SPREAD_PLACEMENT, SpreadEditor
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

    def __post_init__(self) -> None:
        if not self.layers or sorted(set(self.layers)) != list(self.layers):
            raise ValueError(f"layers={self.layers} must be a non-empty ascending list of distinct layers")
        if self.v_num_grad_steps < 1:
            raise ValueError(f"v_num_grad_steps={self.v_num_grad_steps} must be >= 1")
        if self.v_max_rows < 0:
            raise ValueError(f"v_max_rows={self.v_max_rows} must be >= 0 (0: all rows of a batch at once)")
        if self.mom2_update_weight < 0:
            raise ValueError(f"mom2_update_weight={self.mom2_update_weight} must be >= 0")
        if self.solver_dtype not in ("float32", "float64"):
            raise ValueError(f"solver_dtype={self.solver_dtype!r} must be float32 or float64")


class MemitSolve:
    """ΔW_l = R_lᵀ K (λC_l + KᵀK)⁻¹: the minimiser of ‖ΔW Kᵀ − Rᵀ‖² + λ tr(ΔW C_l ΔWᵀ)."""

    wants_edited_keys = False

    def __init__(self, lam: float, dtype: torch.dtype) -> None:
        self.lam, self.dtype = lam, dtype
        self.cov: dict[int, torch.Tensor] = {}

    def setup(self, ctx: EditContext, layers: Sequence[int]) -> None:
        self.cov = ctx.stats(layers)

    def __call__(self, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        return memit_delta(keys, resid, self.cov[layer], self.lam, self.dtype)

    def remember(self, keys: dict[int, torch.Tensor]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}  # C comes from the run's statistics cache

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def memit_solve(hp: MEMITHParams) -> MemitSolve:
    return MemitSolve(hp.mom2_update_weight, getattr(torch, hp.solver_dtype))


@register_editor("memit", hparams=MEMITHParams, placement=SPREAD_PLACEMENT)
def memit(hp: MEMITHParams, ctx: EditContext) -> SpreadEditor:
    """Least squares spread over several layers (Meng et al., 2023)."""
    return SpreadEditor(hp, ctx, memit_solve(hp))
