"""AlphaEdit (Fang et al., 2025): MEMIT's residual spreading, with each update confined to the null
space of the preserved keys' covariance, so ΔW k₀ ≈ 0 for the knowledge to keep (spec §2.5).

Setup, on the unedited model: P_l = Û Ûᵀ over the eigenvectors of C_l with eigenvalue below
``nullspace_threshold`` (a symmetric ``eigh``, on the GPU when there is one, instead of the
reference's CPU SVD), cached on disk. Per batch and layer (ascending), with K the keys and R the
spread residual: ΔW = Xᵀ, (P(KᵀK + C_past) + L2·I) X = P Kᵀ R; the update is applied at once,
inside the layer loop (later layers and SPHERE, if on, see it: SPHERE's default point here is
``layer``). Afterwards C_past += KᵀK of this batch's keys on the edited model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editors.core.context import EditContext
from editors.core.keys import compute_keys, subject_outputs
from editors.core.requests import EditRequest
from editors.core.solvers import alphaedit_delta, nullspace_projector
from editors.core.templates import ContextTemplates
from editors.core.values import ValueOptions, compute_target_values
from editors.core.weights import LayerUpdate, UpdateTransform, add_to_weight, apply_transforms, read_weight
from editors.memit import MEMITHParams, make_templates
from editors.registry import register_editor


@dataclass
class AlphaEditHParams(MEMITHParams):
    """MEMIT's value knobs plus the null-space threshold and the ridge term L2 (reference: 10)."""

    nullspace_threshold: float = 2e-2
    L2: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nullspace_threshold <= 0:
            raise ValueError(f"editor.nullspace_threshold={self.nullspace_threshold} must be > 0")
        if self.L2 <= 0:
            raise ValueError(f"editor.L2={self.L2} must be > 0 (it keeps the projected system invertible)")


@register_editor("alphaedit")
class AlphaEdit:
    """Null-space constrained editing; the cache of past keys is part of the editor's state."""

    HParams = AlphaEditHParams

    def __init__(self, hp: AlphaEditHParams, ctx: EditContext):
        self.hp, self.ctx = hp, ctx
        self.transforms: list[UpdateTransform] = list(ctx.transforms)
        if any(t.point == "step" for t in self.transforms):
            raise ValueError(
                "alphaedit writes each layer's update inside its layer loop; use sphere.point=layer "
                "(the reference) or readout, not step"
            )
        self.templates: ContextTemplates | None = None
        self.projectors: dict[int, torch.Tensor] = {}
        self.past: dict[int, torch.Tensor] = {}  # Σ k kᵀ of all edited keys, per layer (d_ff × d_ff)

    @classmethod
    def sphere_defaults(cls, hp) -> tuple[str, str]:
        return "layer", "current"

    @property
    def layers(self) -> list[int]:
        return list(self.hp.layers)

    def setup(self) -> None:
        """Templates and null-space projectors, from the unedited model."""
        self.templates = self.templates or make_templates(
            self.ctx, self.hp.context_template_length_params, False
        )
        missing = [layer for layer in self.layers if layer not in self.projectors]
        if not missing:
            return
        cov = self.ctx.stats(self.layers)
        for layer in missing:
            c = cov[layer]
            name = self.ctx.spec.weight_module_name(layer)
            key = f"alphaedit_P.{name}.thr{self.hp.nullspace_threshold:g}"
            self.projectors[layer] = self.ctx.cached(
                key, lambda c=c: nullspace_projector(c, self.hp.nullspace_threshold)
            )
            self.past.setdefault(layer, torch.zeros_like(c))

    def apply(self, requests: Sequence[EditRequest]) -> list[LayerUpdate]:
        self.setup()
        assert self.templates is not None
        model, tok, spec, hp = self.ctx.model, self.ctx.tok, self.ctx.spec, self.hp
        fb = self.ctx.forward_batch_size
        z_block = spec.block_name(self.layers[-1])
        z, _ = compute_target_values(
            model, tok, spec, requests, z_block, self.templates.flat, ValueOptions.from_hparams(hp)
        )
        updates = []
        for i, layer in enumerate(self.layers):
            keys = compute_keys(
                model, tok, spec, requests, [layer], self.templates, fact_token=hp.fact_token, batch_size=fb
            )[layer]
            h = subject_outputs(model, tok, z_block, requests, fact_token=hp.fact_token, batch_size=fb)
            resid = (z - h) / (len(self.layers) - i)
            delta = alphaedit_delta(keys, resid, self.projectors[layer], self.past[layer], hp.L2)
            name = spec.weight_name(layer)
            delta = apply_transforms(
                self.transforms, "layer", name, layer, read_weight(model, spec, layer), delta
            )
            add_to_weight(model, spec, layer, delta)
            updates.append(LayerUpdate(layer=layer, name=name, delta=delta))
        # Remember this batch's keys (read on the edited model) so later batches preserve them too.
        keys = compute_keys(
            model, tok, spec, requests, self.layers, self.templates, fact_token=hp.fact_token, batch_size=fb
        )
        for layer, k in keys.items():
            self.past[layer] = self.past[layer] + (k.T @ k).to(self.past[layer].device)
        return updates

    def state_dict(self) -> dict:
        return {
            "templates": self.templates.to_list() if self.templates else None,
            **{f"past.{layer}": c for layer, c in self.past.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.templates = ContextTemplates.from_state(state) or self.templates
        self.past.update({int(k[5:]): v for k, v in state.items() if k.startswith("past.")})
