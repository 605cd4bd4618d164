"""What a run is built from: the edit stream, and the editor wired to its SPHERE transform and its
resources. One place for each, so that the sequential run, ``sphere-eval`` and ``sphere-export``
(which rebuild a saved run through the runner) and the Python API (``sphere.edit``) cannot wire an
editor differently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editors import get_editor
from editors.core.context import EditContext
from editors.core.model_spec import ModelSpec
from editors.core.protocol import Editor, Placement
from sphere.data.records import RecordList
from sphere.errors import ConfigError
from sphere.method.placement import SphereConfig, sphere_transform
from sphere.method.projection import SphereProjection
from sphere.models.config import CovarianceConfig
from sphere.run.covariance import FORWARD_BATCH_SIZE, build_context

if TYPE_CHECKING:
    from sphere.run.config import Settings


@dataclass
class BuiltEditor:
    """A base editor built on its context, and what the run reports about its SPHERE stage.

    Attributes:
        editor: the editor (``Editor`` protocol), set up lazily by ``editor.setup()``.
        ctx: its resources: weights, statistics, artifact cache, outside transforms, W₀.
        placement: where the editor calls transforms (its declaration in the registry).
        sphere: the SPHERE transform in ``ctx.transforms``, or None when SPHERE is off.
    """

    editor: Editor
    ctx: EditContext
    placement: Placement
    sphere: SphereProjection | None


def build_editor(
    model: Any,
    tok: Any,
    spec: ModelSpec,
    model_id: str,
    editor: str,
    hparams: Any,
    sphere: SphereConfig,
    *,
    covariance_cfg: CovarianceConfig,
    cache_dir: str | Path,
    seed: int = 0,
    forward_batch_size: int = FORWARD_BATCH_SIZE,
) -> BuiltEditor:
    """editor → placement → SPHERE → context → build.

    The registry's entry for ``editor`` says where it calls transforms; SPHERE's config is resolved
    against that (``method.placement``); the context gets the statistics, the caches and the SPHERE
    transform (``covariance.build_context``); the entry builds the editor on it. W₀ is not
    snapshotted here (``ctx.remember_pretrained``): the run checks the layers against the model first.
    """
    entry = get_editor(editor)
    placement = entry.placement(hparams)
    projection = sphere_transform(sphere, placement, editor)
    ctx = build_context(
        model,
        tok,
        spec,
        model_id,
        covariance_cfg=covariance_cfg,
        cache_dir=cache_dir,
        seed=seed,
        forward_batch_size=forward_batch_size,
        transforms=[projection] if projection else [],
    )
    return BuiltEditor(entry.build(hparams, ctx), ctx, placement, projection)


def edit_stream(s: Settings) -> RecordList:
    """The edit stream: all usable records, shuffled with the run seed if asked, cut to the limit.

    A limit above the number of usable records is an error, not a silently shorter run.
    """
    from sphere.data import load_records

    records = load_records(
        s.dataset.kind,
        s.dataset.path,
        limit=None,
        skip_malformed=s.dataset.skip_malformed,
        zsre_target=s.dataset.zsre_target,
    )
    limit = s.dataset.limit
    if limit is not None and limit > len(records):
        raise ConfigError(
            f"dataset.limit={limit} but {s.dataset.path} has only {len(records)} usable records; "
            "lower dataset.limit or set it to null for all"
        )
    if s.dataset.shuffle:
        order = list(range(len(records)))
        random.Random(s.run.seed).shuffle(order)
        picked = [records[i] for i in order[:limit]]
    else:
        picked = list(records[:limit])
    return RecordList(picked, skipped=records.skipped)  # the count goes into the summary
