"""The MEMIT family's layer loop, with the per-layer solve as a parameter.

MEMIT, RECT, PRUNE and AlphaEdit share one algorithm skeleton (spec §2.2, §2.5): optimise target
values z at the last edited layer, then for each edited layer l_i in ascending order read the keys
K at l_i and the current output H at the last layer, and solve for ΔW_i from the residual share
R_i = (Z − H) / (#layers − i) (mapped through the post-MLP norm where the model has one, Gemma 2/3:
editors/core/post_norm.py). Later layers see earlier layers' updates. They differ only in the
solve (MEMIT: covariance-regularised least squares; AlphaEdit: null-space projected), in their own
update transforms (RECT's mask, PRUNE's restraint) and in how a batch is committed (PRUNE with
feedback). ``SpreadEditor`` composes those pieces; it is never subclassed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from editors.core.context import EditContext, commit_step
from editors.core.footprint import (
    SOLVE,
    WHILE_TRANSFORMING,
    Footprint,
    PlanItem,
    ShapeInfo,
    combine,
    footprint_of,
)
from editors.core.keys import compute_keys, subject_outputs
from editors.core.model_spec import get_module
from editors.core.post_norm import through_post_norm
from editors.core.protocol import Placement
from editors.core.requests import EditRequest
from editors.core.templates import ContextTemplates
from editors.core.values import ValueOptions, compute_target_values, values_footprint
from editors.core.weights import (
    LayerUpdate,
    TransformPoint,
    UpdateTransform,
    apply_transforms,
)

# Where the family calls transforms: inside the loop (``layer``), once per batch (``step``), and the
# run's ``readout`` view. MEMIT, RECT: SPHERE at ``step`` on the live weights (spec §3.2).
SPREAD_POINTS = frozenset[TransformPoint]({"layer", "step", "readout"})
SPREAD_PLACEMENT = Placement(points=SPREAD_POINTS, default_point="step", default_reference="current")


class LayerSolve(Protocol):
    """The per-layer solve of a MEMIT-family editor, with whatever state it carries across batches."""

    wants_edited_keys: bool
    """True if ``remember`` must see this batch's keys read on the edited model (AlphaEdit)."""

    def setup(self, ctx: EditContext, layers: Sequence[int]) -> None:
        """Precompute from the unedited model (statistics, projectors); idempotent."""

    def __call__(self, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        """ΔW (d_model × d_ff) of ``layer`` from keys K (n × d_ff) and residual share R (n × d_model)."""
        ...

    def remember(self, keys: dict[int, torch.Tensor]) -> None:
        """Take note of a committed batch's keys (only called when ``wants_edited_keys``)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def spread_residual(
    ctx: EditContext,
    requests: Sequence[EditRequest],
    templates: ContextTemplates,
    *,
    layers: Sequence[int],
    values: ValueOptions,
    solve: LayerSolve,
    transforms: Sequence[UpdateTransform],
) -> dict[int, torch.Tensor]:
    """This batch's ΔW per layer, ``layer`` transforms applied; the model is left as it was on entry.

    Each layer's ΔW is on the device of its weight (keys, residual share and solve are moved there).
    """
    model, tok, spec, fb = ctx.model, ctx.tok, ctx.spec, ctx.forward_batch_size
    z_block = spec.block_name(layers[-1])
    z, _ = compute_target_values(model, tok, spec, requests, z_block, templates.flat, values)
    weights = ctx.weights
    originals: dict[int, torch.Tensor] = {}
    deltas: dict[int, torch.Tensor] = {}
    try:
        for i, layer in enumerate(layers):
            keys = compute_keys(
                model, tok, spec, requests, [layer], templates, fact_token=values.fact_token, batch_size=fb
            )[layer]
            h = subject_outputs(model, tok, z_block, requests, fact_token=values.fact_token, batch_size=fb)
            at = keys.device  # the layer's weight device (``compute_keys``): the solve runs there
            resid = (z.to(at) - h.to(at)) / (len(layers) - i)
            if spec.post_mlp_norm:  # Gemma 2/3: the share must pass the norm (editors/core/post_norm.py)
                mlp_out, norm = spec.weight_module_name(layer), spec.post_mlp_norm.format(layer)
                x = subject_outputs(
                    model, tok, mlp_out, requests, fact_token=values.fact_token, batch_size=fb
                )
                resid = through_post_norm(get_module(model, norm), x.to(at), resid)
            delta = solve(layer, keys, resid)
            # W of this layer before the batch (only lower layers were written so far), copied after
            # the solve: the copy and the solve's d_ff × d_ff workspace never exist at once.
            originals[layer] = weights.read(layer)
            delta = apply_transforms(
                transforms, "layer", spec.weight_name(layer), layer, originals[layer], delta
            )
            deltas[layer] = delta
            weights.write(layer, originals[layer] + delta)  # later layers see it
    finally:
        for layer, w in originals.items():
            weights.write(layer, w)
    return deltas


def loop_footprint(shape: ShapeInfo, n_layers: int) -> Footprint:
    """The float32 copies a batch holds on the device while it is solved and transformed: each
    edited layer's W before the batch and its ΔW (``spread_residual``'s ``originals`` and
    ``deltas``; ROME: W and ΔW of its one layer)."""
    return Footprint(
        [
            PlanItem(
                "layer loop: W before the batch and ΔW, float32",
                "device",
                2 * n_layers * shape.layer_bytes,
                f"2 × {n_layers} × {shape.matrix} × 4 B",
                (SOLVE, WHILE_TRANSFORMING),
                "use fewer editor.layers",
            )
        ]
    )


def spread_footprint(
    shape: ShapeInfo, hp: Any, solve: LayerSolve, own_transforms: Sequence[UpdateTransform] = ()
) -> Footprint:
    """What ``SpreadEditor(hp, ctx, solve, own_transforms=...)`` costs: the z optimisation of the
    whole batch (in chunks of ``hp.v_max_rows`` rows), the layer loop's copies, then whatever the
    solve and each own transform declare (their ``footprint(shape)``; one without it declares
    nothing). An editor's registry entry passes the same pieces as its builder."""
    values = values_footprint(
        shape,
        requests=shape.batch_size,
        template_params=hp.context_template_length_params,
        max_rows=ValueOptions.from_hparams(hp).max_rows,
        compute_dtype=ValueOptions.from_hparams(hp).compute_dtype,
        setting="set editor.v_max_rows (z in chunks of rows, same result) or lower dataset.batch_size",
    )
    pieces = [footprint_of(solve, shape), *(footprint_of(t, shape) for t in own_transforms)]
    return combine([values, loop_footprint(shape, len(hp.layers)), *pieces])


class SpreadEditor:
    """A MEMIT-family editor composed of a solve, its own transforms and a commit function.

    ``hp`` needs the value-optimisation knobs (``ValueOptions.from_hparams``), ``layers`` and
    ``context_template_length_params``; everything else belongs to the solve.
    """

    def __init__(
        self,
        hp: Any,
        ctx: EditContext,
        solve: LayerSolve,
        *,
        own_transforms: Sequence[UpdateTransform] = (),
        commit=commit_step,
    ) -> None:
        self.hp, self.ctx, self.solve, self.commit = hp, ctx, solve, commit
        self.layers: list[int] = list(hp.layers)
        # The editor's own transforms come first: "RECT then SPHERE" (spec §3.2).
        self.transforms: list[UpdateTransform] = [*own_transforms, *ctx.transforms]
        self.templates: ContextTemplates | None = None

    def setup(self) -> None:
        """Work on the unedited model: context templates and the solve's statistics."""
        if self.templates is None:
            self.templates = self.ctx.context_templates(self.hp.context_template_length_params, flat=False)
        self.solve.setup(self.ctx, self.layers)

    def apply(self, requests: Sequence[EditRequest]) -> list[LayerUpdate]:
        self.setup()
        assert self.templates is not None
        values = ValueOptions.from_hparams(self.hp)
        deltas = spread_residual(
            self.ctx,
            requests,
            self.templates,
            layers=self.layers,
            values=values,
            solve=self.solve,
            transforms=self.transforms,
        )
        updates = self.commit(self.ctx, deltas, self.transforms)
        if self.solve.wants_edited_keys:
            self.solve.remember(
                compute_keys(
                    self.ctx.model,
                    self.ctx.tok,
                    self.ctx.spec,
                    requests,
                    self.layers,
                    self.templates,
                    fact_token=values.fact_token,
                    batch_size=self.ctx.forward_batch_size,
                )
            )
        return updates

    def state_dict(self) -> dict[str, Any]:
        return {"templates": self.templates.to_list() if self.templates else None, **self.solve.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.templates = ContextTemplates.from_state(state) or self.templates
        self.solve.load_state_dict(state)
