"""SPHERE's settings, and the one place that maps them onto an editor's declared ``Placement``.

Editors say where they call update transforms and which reference weights they offer
(``editors.core.protocol.Placement``); they know nothing of SPHERE. Here ``sphere.point`` and
``sphere.reference`` are resolved against that declaration: ``auto`` takes the editor's default
(the reference implementation's choice), an explicit point the editor never calls is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from editors.core.protocol import Placement
from sphere.method.projection import (
    METHODS,
    POINTS,
    REFERENCES,
    SphereProjection,
    check_alpha,
    check_beta_or_rank,
    check_choice,
)


def _help(default, text: str):
    return field(default=default, metadata={"help": text})


@dataclass
class SphereConfig:
    """SPHERE: project ΔW away from the top principal directions of W, ΔW ← ΔW(I − αUUᵀ).

    Paper defaults: β = 0.5; α = 0.8 on MEMIT, PRUNE, RECT and α = 0.5 on AlphaEdit (set by
    configs/editor/alphaedit.yaml).
    """

    enabled: bool = _help(False, "apply SPHERE to every weight update")
    alpha: float = _help(0.8, "projection strength α in [0, 1]: 0 = off, 1 = remove span U")
    beta: float | None = _help(0.5, "r = smallest rank whose eigenvalues hold more than β of the energy")
    rank: int | None = _help(None, "r directly (wins over beta when set)")
    reference: str = _help("auto", "weights U comes from: current | pretrained | auto (editor's default)")
    point: str = _help("auto", "where the projection acts: layer | step | readout | auto (editor's default)")
    layers: list[int] | None = _help(None, "layers to project (null = every edited layer)")
    method: str = _help("auto", "gram (m×m eigh when rows < cols) | naive (c×c eigh) | auto")

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_beta_or_rank(None if self.rank is not None else self.beta, self.rank)
        check_choice("sphere.reference", self.reference, ("auto", *REFERENCES))
        check_choice("sphere.point", self.point, ("auto", *POINTS))
        check_choice("sphere.method", self.method, METHODS)


def resolve_placement(cfg: SphereConfig, placement: Placement, editor: str) -> tuple[str, str]:
    """(point, reference) for this editor; raises ValueError for a point the editor never calls."""
    point = placement.default_point if cfg.point == "auto" else cfg.point
    if point not in placement.points:
        raise ValueError(
            f"sphere.point={point} does nothing with editor {editor}, which calls transforms only at "
            f"{', '.join(sorted(placement.points))}; choose one of those or auto"
        )
    reference = placement.default_reference if cfg.reference == "auto" else cfg.reference
    return point, reference


def sphere_transform(cfg: SphereConfig, placement: Placement, editor: str) -> SphereProjection | None:
    """The SPHERE transform for this editor, or None when SPHERE is off."""
    if not cfg.enabled:
        return None
    point, reference = resolve_placement(cfg, placement, editor)
    return SphereProjection(
        cfg.alpha,
        beta=None if cfg.rank is not None else cfg.beta,
        rank=cfg.rank,
        reference=reference,  # type: ignore[arg-type]
        point=point,  # type: ignore[arg-type]
        layers=cfg.layers,
        method=cfg.method,  # type: ignore[arg-type]
    )
