"""MEMIT (Meng et al., 2023): spread each batch's residual over several layers by least squares.

Spec §2.2. For layer l_i (ascending) with keys K and residual R = Z − H_L:
ΔW_i = R_iᵀ K (λC + KᵀK)⁻¹ with R_i = R / (#layers − i). Later layers see earlier layers' updates
(applied temporarily, then restored); the caller's ``step`` transforms (SPHERE) act afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from editors.core.context import EditContext, commit_step
from editors.core.keys import compute_keys, subject_outputs
from editors.core.requests import EditRequest
from editors.core.solvers import memit_delta
from editors.core.templates import ContextTemplates, generate_context_templates
from editors.core.values import ValueOptions, compute_target_values
from editors.core.weights import LayerUpdate, UpdateTransform, apply_transforms, read_weight, write_weight
from editors.registry import register_editor


@dataclass
class MEMITHParams:
    """MEMIT knobs; names and defaults follow the reference hparams (GPT-2 XL / generic)."""

    layers: list[int] = field(default_factory=lambda: [4, 5, 6, 7, 8])
    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 0.75
    kl_factor: float = 0.0625
    mom2_update_weight: float = 15000.0
    fact_token: str = "subject_last"
    context_template_length_params: list[list[int]] = field(default_factory=lambda: [[10, 5]])
    solver_dtype: str = "float64"

    def __post_init__(self) -> None:
        if not self.layers or sorted(set(self.layers)) != list(self.layers):
            raise ValueError(
                f"editor.layers={self.layers} must be a non-empty ascending list of distinct layers"
            )
        if self.v_num_grad_steps < 1:
            raise ValueError(f"editor.v_num_grad_steps={self.v_num_grad_steps} must be >= 1")
        if self.mom2_update_weight < 0:
            raise ValueError(f"editor.mom2_update_weight={self.mom2_update_weight} must be >= 0")


def make_templates(ctx: EditContext, length_params, flat: bool) -> ContextTemplates:
    return generate_context_templates(ctx.model, ctx.tok, length_params, seed=ctx.seed, flat=flat)


def memit_deltas(
    ctx: EditContext,
    hp: MEMITHParams,
    templates: ContextTemplates,
    requests: Sequence[EditRequest],
    transforms: Sequence[UpdateTransform],
) -> dict[int, torch.Tensor]:
    """This batch's ΔW per layer; the model is left exactly as it was on entry."""
    model, tok, spec = ctx.model, ctx.tok, ctx.spec
    z_block = spec.block_name(hp.layers[-1])
    z, _ = compute_target_values(
        model, tok, spec, requests, z_block, templates.flat, ValueOptions.from_hparams(hp)
    )
    cov = ctx.stats(hp.layers)
    originals = {layer: read_weight(model, spec, layer) for layer in hp.layers}
    deltas: dict[int, torch.Tensor] = {}
    try:
        for i, layer in enumerate(hp.layers):
            keys = compute_keys(
                model,
                tok,
                spec,
                requests,
                [layer],
                templates,
                fact_token=hp.fact_token,
                batch_size=ctx.forward_batch_size,
            )[layer]
            h = subject_outputs(
                model, tok, z_block, requests, fact_token=hp.fact_token, batch_size=ctx.forward_batch_size
            )
            resid = (z - h) / (len(hp.layers) - i)
            delta = memit_delta(
                keys, resid, cov[layer], hp.mom2_update_weight, getattr(torch, hp.solver_dtype)
            )
            delta = apply_transforms(
                transforms, "layer", spec.weight_name(layer), layer, originals[layer], delta
            )
            deltas[layer] = delta
            write_weight(model, spec, layer, originals[layer] + delta)  # later layers see it
    finally:
        for layer, w in originals.items():
            write_weight(model, spec, layer, w)
    return deltas


@register_editor("memit")
class MEMIT:
    """Mass-editing memory in a transformer; SPHERE, if on, projects each batch's ΔW (``step``).

    Editors built on MEMIT's solve (RECT, PRUNE) override ``own_transforms`` and, for PRUNE's
    feedback variant, ``commit``; nothing else.
    """

    HParams = MEMITHParams

    def __init__(self, hp: MEMITHParams, ctx: EditContext):
        self.hp, self.ctx = hp, ctx
        # The editor's own transforms come first: "RECT then SPHERE" (spec §3.2).
        self.transforms: list[UpdateTransform] = [*self.own_transforms(), *ctx.transforms]
        self.templates: ContextTemplates | None = None

    @classmethod
    def sphere_defaults(cls, hp) -> tuple[str, str]:
        """(point, reference) where the reference code applies SPHERE for this editor (spec §3.2)."""
        return "step", "current"

    def own_transforms(self) -> list[UpdateTransform]:
        return []

    @property
    def layers(self) -> list[int]:
        return list(self.hp.layers)

    def setup(self) -> None:
        """Work on the unedited model: context templates and key statistics."""
        self.templates = self.templates or make_templates(
            self.ctx, self.hp.context_template_length_params, False
        )
        self.ctx.stats(self.hp.layers)

    def apply(self, requests: Sequence[EditRequest]) -> list[LayerUpdate]:
        self.setup()
        assert self.templates is not None
        return self.commit(memit_deltas(self.ctx, self.hp, self.templates, requests, self.transforms))

    def commit(self, deltas: dict[int, torch.Tensor]) -> list[LayerUpdate]:
        return commit_step(self.ctx, deltas, self.transforms)

    def state_dict(self) -> dict:
        return {"templates": self.templates.to_list() if self.templates else None}

    def load_state_dict(self, state: dict) -> None:
        self.templates = ContextTemplates.from_state(state) or self.templates
