"""ROME (Meng et al., 2022): one rank-one update per fact at a single layer (spec §2.1).

For each request in turn (the SPHERE reference edits only the first request of a batch; we edit
all of them, one after the other, each seeing the previous ones):
k̄ = mean key over the context templates, u = C⁻¹k̄ (``mom2_adjustment``) or k̄, normalised;
z = MLP output at the subject that makes the model say the target (δ added to the MLP output);
k*, W k* = input and output of the edited matrix at the subject of the bare prompt;
ΔW = (z − W k*) uᵀ / (u·k*), so that (W + ΔW) k* = z exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editors.core.context import EditContext, commit_step
from editors.core.footprint import SETUP, SOLVE, Footprint, PlanItem, ShapeInfo
from editors.core.hparams import HELP, knob
from editors.core.keys import compute_keys, read_at_subject
from editors.core.protocol import Placement
from editors.core.requests import EditRequest
from editors.core.solvers import full_precision
from editors.core.spread import loop_footprint
from editors.core.templates import ContextTemplates
from editors.core.values import ValueOptions, check_compute_dtype, compute_target_values, values_footprint
from editors.core.weights import LayerUpdate, TransformPoint, UpdateTransform
from editors.registry import register_editor


@dataclass
class ROMEHParams:
    """ROME knobs; defaults are the reference's GPT-2 XL file, per-model values in editor_model/."""

    layers: list[int] = knob([5], "the one edited layer; set per model in configs/model/<model>.yaml")
    v_num_grad_steps: int = knob(20, HELP["v_num_grad_steps"])
    v_lr: float = knob(0.5, HELP["v_lr"])
    v_weight_decay: float = knob(0.5, HELP["v_weight_decay"])
    clamp_norm_factor: float = knob(4.0, HELP["clamp_norm_factor"])
    kl_factor: float = knob(0.0625, HELP["kl_factor"])
    mom2_adjustment: bool = knob(True, "u = C⁻¹k̄ (true) or k̄ (false) as the update's key direction")
    fact_token: str = knob("subject_last", HELP["fact_token"])
    context_template_length_params: list[list[int]] = knob(
        [[5, 10], [10, 10]], HELP["context_template_length_params"]
    )
    v_compute_dtype: str = knob("float32", HELP["v_compute_dtype"])

    def __post_init__(self) -> None:
        check_compute_dtype(self.v_compute_dtype)
        if len(self.layers) != 1:
            raise ValueError(f"layers={self.layers}: ROME edits exactly one layer, e.g. layers=[5]")


def rank_one_delta(
    u: torch.Tensor, k_star: torch.Tensor, w_k_star: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """ΔW = (z − W k*) uᵀ / (u·k*): the rank-one update along u that maps k* to z."""
    out = torch.promote_types(z.dtype, torch.float32)
    with full_precision():
        u, k_star, w_k_star, z = (t.double() for t in (u, k_star, w_k_star, z))
        return (torch.outer(z - w_k_star, u) / (u @ k_star)).to(out)


# ROME commits each rank-one update at once: it calls ``step`` transforms (and the run ``readout``).
ROME_PLACEMENT = Placement(points=frozenset[TransformPoint]({"step", "readout"}), default_point="step")


def rome_footprint(shape: ShapeInfo, hp: ROMEHParams) -> Footprint:
    """z of one request at a time, with δ at the MLP inside the edited block (so that block's
    tensors are kept too); W and ΔW of the one layer; with ``mom2_adjustment``, C of that layer
    (the run's statistics) and C⁻¹ in host memory (inverted once in float64: ≈ 3 d_ff² float64),
    moved to the device for each request."""
    values = values_footprint(
        shape,
        requests=1,
        template_params=hp.context_template_length_params,
        inside_block=True,
        compute_dtype=hp.v_compute_dtype,
        setting="use fewer templates (editor.context_template_length_params)",
    )
    total = values + loop_footprint(shape, len(hp.layers))
    if not hp.mom2_adjustment:
        return total
    ff = shape.d_ff
    ff2 = ff**2
    inverse = [
        PlanItem("ROME: C⁻¹", "host", ff2 * 4, f"{ff}² × 4 B", setting="set editor.mom2_adjustment=false"),
        PlanItem("ROME: C⁻¹ on the device", "device", ff2 * 4, f"{ff}² × 4 B", (SOLVE,)),
        PlanItem("ROME: inverting C (float64)", "host", 3 * ff2 * 8, f"3 × {ff}² × 8 B", (SETUP,)),
    ]
    return total + Footprint(inverse, covariance_layers=1)


@register_editor(
    "rome", hparams=ROMEHParams, placement=ROME_PLACEMENT, display_name="ROME", footprint=rome_footprint
)
class ROME:
    """Rank-one model editing, one fact at a time (Meng et al., 2022)."""

    def __init__(self, hp: ROMEHParams, ctx: EditContext):
        self.hp, self.ctx = hp, ctx
        self.layers: list[int] = list(hp.layers)
        self.transforms: list[UpdateTransform] = list(ctx.transforms)
        self.templates: ContextTemplates | None = None
        self._c_inv: torch.Tensor | None = None

    def setup(self) -> None:
        if self.templates is None:
            self.templates = self.ctx.context_templates(self.hp.context_template_length_params, flat=True)
        if self.hp.mom2_adjustment and self._c_inv is None:
            layer = self.layers[0]
            c = self.ctx.covariance([layer])[layer]
            # Inverted once in float64 (the reference caches an fp32 inverse); C is fixed for the run.
            self._c_inv = torch.linalg.inv(c.double()).float()

    def apply(self, requests: Sequence[EditRequest]) -> list[LayerUpdate]:
        self.setup()
        total: torch.Tensor | None = None
        for request in requests:
            (update,) = commit_step(self.ctx, {self.layers[0]: self.delta(request)}, self.transforms)
            total = update.delta if total is None else total + update.delta
        assert total is not None
        return [
            LayerUpdate(layer=self.layers[0], name=self.ctx.spec.weight_name(self.layers[0]), delta=total)
        ]

    def delta(self, request: EditRequest) -> torch.Tensor:
        """This request's rank-one ΔW against the current model (not applied)."""
        model, tok, spec, layer = self.ctx.model, self.ctx.tok, self.ctx.spec, self.layers[0]
        assert self.templates is not None
        k_bar = compute_keys(
            model, tok, spec, [request], [layer], self.templates, fact_token=self.hp.fact_token
        )[layer][0]
        u = self._c_inv.to(k_bar.device) @ k_bar if self._c_inv is not None else k_bar
        u = u / u.norm()
        z, _ = compute_target_values(
            model,
            tok,
            spec,
            [request],
            spec.mlp_name(layer),
            self.templates.flat,
            ValueOptions.from_hparams(self.hp),
        )
        name = spec.weight_module_name(layer)
        items = [(request.prompt, request.subject)]
        k_star = read_at_subject(model, tok, items, [name], inputs=True, fact_token=self.hp.fact_token)[name][
            0
        ]
        w_k_star = read_at_subject(model, tok, items, [name], inputs=False, fact_token=self.hp.fact_token)[
            name
        ][0]
        at = k_bar.device  # the weight's (``compute_keys``); z comes from the LM head's device
        return rank_one_delta(u, k_star.to(at), w_k_star.to(at), z[0].to(at))

    def state_dict(self) -> dict:
        return {"templates": self.templates.to_list() if self.templates else None}

    def load_state_dict(self, state: dict) -> None:
        self.templates = ContextTemplates.from_state(state) or self.templates
