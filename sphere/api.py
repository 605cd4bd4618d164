"""The Python API: edit a model you already hold, in a notebook or inside another framework.

    import sphere
    result = sphere.edit(model, tok, [{"prompt": "The mother tongue of {} is",
                                       "subject": "Danielle Darrieux", "target_new": "English"}],
                         editor="alphaedit", hparams={"layers": [4, 5, 6, 7, 8]},
                         sphere={"alpha": 0.5, "beta": 0.5})
    result.updates          # [LayerUpdate(layer, name, delta)], already added to the model
    result.editor.apply(more_requests)   # keep editing sequentially with the same editor state

``sphere-edit`` (the CLI) runs whole experiments from configs on the same pieces; ``run_config``
is its one entry point into this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from editors import get_editor
from editors.core.model_spec import spec_for
from editors.core.protocol import Editor
from editors.core.requests import EditRequest
from editors.core.weights import LayerUpdate
from sphere.data.records import EditRecord
from sphere.errors import warn_renamed
from sphere.method.placement import SphereConfig
from sphere.models.config import CovarianceConfig
from sphere.run.build import build_editor

RequestLike = EditRequest | EditRecord | Mapping[str, Any]


@dataclass
class EditResult:
    """What ``edit`` did.

    Attributes:
        updates: the total ΔW of every edited layer (all batches summed), already in the model.
        editor: the editor, with its sequential state (e.g. AlphaEdit's past keys); call
            ``editor.apply(requests)`` to continue editing.
        metrics: ``{"pre": ..., "post": ...}`` edit-quality metrics when asked and records given.
    """

    updates: list[LayerUpdate]
    editor: Editor
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def as_request(item: RequestLike, index: int = 0) -> EditRequest:
    """An ``EditRequest`` from a request, a dataset record or a dict with prompt/subject/target_new."""
    if isinstance(item, EditRequest):
        return item
    if isinstance(item, EditRecord):
        return item.request
    missing = {"prompt", "subject", "target_new"} - set(item)
    if missing:
        raise ValueError(
            f"request {index} lacks {sorted(missing)}; give prompt (with {{}}), subject, target_new"
        )
    return EditRequest(
        int(item.get("case_id", index)),
        item["prompt"],
        item["subject"],
        item["target_new"],
        item.get("target_true"),
    )


def edit(
    model: torch.nn.Module,
    tokenizer: Any,
    requests: Sequence[RequestLike],
    *,
    editor: str = "memit",
    hparams: Mapping[str, Any] | None = None,
    sphere: bool | Mapping[str, Any] | None = None,
    covariance: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    cache_dir: str | Path = ".cache/sphere",
    seed: int = 0,
    evaluate: bool = False,
    stats: Mapping[str, Any] | None = None,
) -> EditResult:
    """Edit ``model`` in place with ``requests``, optionally with SPHERE, and return the updates.

    Args:
        model, tokenizer: a Hugging Face causal LM (LLaMA, Qwen2/3, Mistral, Gemma2/3, GPT-2 layouts).
        requests: ``EditRequest``s, dataset ``EditRecord``s or dicts with prompt/subject/target_new.
        editor: a registered editor name (``editors.available_editors()``).
        hparams: overrides of the editor's hyperparameters (its dataclass defaults otherwise);
            ``layers`` usually needs setting for your model.
        sphere: ``None``/``False`` = off, ``True`` = the paper's defaults (α = 0.8, β = 0.5), or a
            dict of ``SphereConfig`` fields, e.g. ``{"alpha": 0.5, "beta": 0.5}``.
        covariance: ``CovarianceConfig`` fields for the key covariance C (default: the bundled
            Wikipedia sample).
        batch_size: requests per ``apply`` (default: all at once).
        cache_dir: where statistics and projectors are cached between calls.
        seed: seeds corpus sampling and context templates.
        evaluate: with ``EditRecord``s, measure edit quality before and after.
        stats: the old name of ``covariance`` (warns; goes in the next release).

    Raises:
        ValueError: unknown editor, bad hyperparameter or SPHERE value, malformed request.
    """
    if stats is not None:
        if covariance is not None:
            raise ValueError(
                "covariance and stats both given; stats is covariance's old name: pass covariance"
            )
        warn_renamed("sphere.edit(stats=...) is renamed covariance=...; stats goes in the next release")
        covariance = stats
    entry = get_editor(editor)
    hp = entry.hparams(**dict(hparams or {}))
    if isinstance(sphere, Mapping):
        sphere_cfg = SphereConfig(**{"enabled": True, **sphere})
    else:
        sphere_cfg = SphereConfig(enabled=bool(sphere))
    todo = [as_request(r, i) for i, r in enumerate(requests)]
    if not todo:
        raise ValueError("no requests to edit")
    built = build_editor(
        model,
        tokenizer,
        spec_for(model),
        str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__),
        editor,
        hp,
        sphere_cfg,
        covariance_cfg=CovarianceConfig(**dict(covariance or {})),
        cache_dir=cache_dir,
        seed=seed,
    )
    ed = built.editor
    built.ctx.remember_pretrained(ed.layers)
    records = [r for r in requests if isinstance(r, EditRecord)]
    metrics: dict[str, dict[str, float]] = {}
    if evaluate and records:
        metrics["pre"] = _quality(model, tokenizer, records)
    ed.setup()
    step = batch_size or len(todo)
    totals: dict[int, LayerUpdate] = {}
    for i in range(0, len(todo), step):
        for u in ed.apply(todo[i : i + step]):
            prev = totals.get(u.layer)
            totals[u.layer] = u if prev is None else LayerUpdate(u.layer, u.name, prev.delta + u.delta)
    if evaluate and records:
        metrics["post"] = _quality(model, tokenizer, records)
    return EditResult(updates=[totals[k] for k in sorted(totals)], editor=ed, metrics=metrics)


def _quality(model, tok, records: Sequence[EditRecord]) -> dict[str, float]:
    from sphere.evaluation import aggregate, evaluate_records

    return aggregate(evaluate_records(model, tok, records))


def run_config(cfg: Any, out_dir: Path) -> dict[str, Any]:
    """Run the experiment a composed Hydra config describes; the CLI's one call into the package
    (each job of a multirun sweep too). With ``run.plots`` the run's figures are drawn into
    ``out_dir`` by the report's ``plot_run``, here, above the run layer, which draws nothing."""
    from sphere.report.figures.run_curves import plot_run
    from sphere.run.experiment import run_experiment

    return run_experiment(cfg, out_dir, draw=plot_run)
