"""Hyperparameter fields that carry their own help line (``sphere-edit --describe editor=memit``).

Each editor's knobs are one dataclass; its defaults are the only defaults (YAML files hold only
per-model values). Knobs shared by several editors take their help from ``HELP`` so the text is
written once.
"""

from __future__ import annotations

import copy
from dataclasses import MISSING, Field, field
from typing import Any

HELP = {
    "layers": "edited layers (ascending); set per model in configs/model/<model>.yaml",
    "v_num_grad_steps": "Adam steps of the target-value (z) optimisation",
    "v_max_rows": "z optimisation: prompt rows per forward/backward, whole requests (0: the whole batch at "
    "once); gradients are accumulated, so z is the same, and activation memory is bounded",
    "v_lr": "learning rate of the z optimisation",
    "v_compute_dtype": "dtype of the z optimisation's forward and backward: float32 (the reference) or bfloat16 "
    "(torch.autocast; weights, δ, losses and the solve stay float32); several times faster on CPUs with AMX "
    "and on GPU tensor cores, z then differs at bfloat16 rounding",
    "v_weight_decay": "weight of the ‖δ‖²/‖h₀‖² penalty in the z loss",
    "clamp_norm_factor": "‖δ‖ is clamped to this factor × ‖h₀‖",
    "kl_factor": "weight of the KL term on '{subject} is a' that keeps the subject's meaning",
    "fact_token": "where keys and values are read: subject_last, subject_first, last",
    "context_template_length_params": "[[max_tokens, count], ...] of the random prefixes templates add",
    "mom2_update_weight": "λ: weight of the key covariance C in the least squares (λC + KᵀK)",
    "solver_dtype": "dtype of the least-squares solve (float64 as the reference's double solve)",
}


def knob(default: Any, help: str) -> Any:
    """A dataclass field with ``help`` in its metadata; mutable defaults are copied per instance."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def field_default(f: Field) -> Any:
    """The default a dataclass field gives a new instance (None if it has none)."""
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default
