"""SPHERE's settings, and the one place that maps them onto an editor's declared ``Placement``.

Editors say where they call update transforms and which reference weights they offer
(``editors.core.protocol.Placement``); they know nothing of SPHERE. Here ``sphere.point`` and
``sphere.reference`` are resolved against that declaration: ``auto`` takes the editor's default
(the reference implementation's choice), an explicit point the editor never calls is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from editors.core.footprint import ALWAYS, Footprint, PlanItem, ShapeInfo, dtype_name
from editors.core.protocol import Placement
from sphere.errors import check_choice
from sphere.method.projection import (
    FLOAT64_MAX_NUMEL,
    METHODS,
    POINTS,
    REFERENCES,
    SphereProjection,
    check_alpha,
    check_beta_or_rank,
)

# The phases of a batch in which SPHERE's workspaces live (the run plan: sphere/run/plan.py).
SPHERE_DIRS, SPHERE_PROJ = "SPHERE directions", "SPHERE projection"
SPHERE_PHASES = (SPHERE_DIRS, SPHERE_PROJ)


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


def sphere_footprint(cfg: SphereConfig, placement: Placement, editor: str, shape: ShapeInfo) -> Footprint:
    """SPHERE's workspace per edited matrix W (m × c = d_model × d_ff; projection.py), or nothing
    when SPHERE is off.

    U comes from an eigh of the m × m Gram matrix (``method`` gram, auto when m < c) or of the
    c × c covariance (naive), in float64 for matrices up to FLOAT64_MAX_NUMEL entries, else
    float32: normalised rows X̂ (m × c), the matrix and its eigenvectors (with the flipped copy and
    the eigh workspace ≈ 4 k²), then U = X̂ᵀV/√(mλ) (c × r, scaled in place). r ≤ min(m, c)
    (``sphere.rank`` when set; β chooses it at run time, so the bound is used). Projecting,
    ΔW − (αΔW U)Uᵀ makes one m × c float32 product, overwritten by the projected update. With
    ``reference=pretrained`` U is computed once per layer and kept on the device, and W₀ is
    snapshotted in host memory (and saved in checkpoints).
    """
    if not cfg.enabled:
        return Footprint()
    _, reference = resolve_placement(cfg, placement, editor)
    m, c = shape.d_model, shape.d_ff
    cb = 8 if m * c <= FLOAT64_MAX_NUMEL else 4
    method = cfg.method if cfg.method != "auto" else ("gram" if m < c else "naive")
    k = m if method == "gram" else c
    r = cfg.rank or min(m, c)
    n = len(cfg.layers) if cfg.layers is not None else len(shape.layers)
    gram = "set sphere.method=gram" if method == "naive" else ""
    items = [
        PlanItem(
            f"SPHERE normalised rows ({dtype_name(cb)})",
            "device",
            m * c * cb,
            f"{m}×{c} × {cb} B",
            (SPHERE_DIRS,),
            gram,
        ),
        PlanItem(
            f"SPHERE {method} eigh ({dtype_name(cb)}): matrix, vectors",
            "device",
            4 * k * k * cb,
            f"4 × {k}² × {cb} B",
            (SPHERE_DIRS,),
            gram,
        ),
        PlanItem(
            f"SPHERE directions U (r ≤ {min(m, c)})",
            "device",
            c * r * cb + (c * r * 4 if cb != 4 else 0),
            f"{c}×{r} × {cb} B" + (f" + {c}×{r} × 4 B" if cb != 4 else ""),
            SPHERE_PHASES,
            "set a smaller sphere.rank",
        ),
        PlanItem("SPHERE projection temporaries", "device", m * c * 4, f"{m}×{c} × 4 B", (SPHERE_PROJ,)),
    ]
    if reference == "pretrained":
        items += [
            PlanItem(
                "SPHERE: U kept per layer (pretrained)", "device", n * c * r * 4, f"{n} × {c}×{r} × 4 B"
            ),
            PlanItem(
                "SPHERE: W₀ snapshots (pretrained)",
                "host",
                n * m * c * 4,
                f"{n} × {m}×{c} × 4 B",
                (ALWAYS,),
                checkpointed=True,
            ),
        ]
    return Footprint(items)
