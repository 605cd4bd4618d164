"""Shared test helpers (functions and constants; the fixtures live in tests/conftest.py).

Tests import them as ``from helpers import ...``: ``tests/`` is on ``sys.path`` through
``pythonpath = ["tests"]`` in pyproject.toml. No test imports from ``conftest`` or from another
``test_*`` module (tests/unit/test_layout.py checks it).

* tiny random models built in-process from the configs' architectures with the bundled real
  tokenizers (``tiny``), composed run settings (``settings``), the save/restore of a shared model's
  weights (``restored``), random PSD matrices (``random_psd``), the repository root and the bundled
  8-record CounterFact file (``ROOT``, ``DISTINCT8``);
* the run directories of the report tests, written from sphere-edit's run-directory contract
  (``write_run`` and its made-up metrics ``run_quality`` and ``run_he``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DISTINCT8 = str(ROOT / "tests" / "assets" / "counterfact_distinct8.json")  # see tests/assets/README.md


# ---------------------------------------------------------------------------------------------
# Tiny models, settings, weights


def tiny(arch: str, *, layers: int = 4, hidden: int = 64, ff: int = 128, seed: int = 0, init: float = 0.06):
    """(model, tok) of a small random model; the same builder the ``tiny-*`` configs use."""
    from sphere.models import load_model
    from sphere.models.config import ModelConfig

    tiny_cfg = dict(
        seed=seed,
        num_hidden_layers=layers,
        max_position_embeddings=256,
        initializer_range=init,
    )
    if arch == "gpt2":
        tiny_cfg.update(n_embd=hidden, n_inner=ff, n_head=4, n_layer=layers, n_positions=256)
        tiny_cfg.pop("num_hidden_layers")
        tiny_cfg.pop("max_position_embeddings")
    else:
        tiny_cfg.update(
            hidden_size=hidden,
            intermediate_size=ff,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
    cfg = ModelConfig(name=f"tiny-{arch}", source="tiny", arch=arch, tiny=tiny_cfg, device="cpu")
    return load_model(cfg)


def random_psd(d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, 2 * d, generator=g, dtype=dtype)
    return a @ a.T / (2 * d)


@contextlib.contextmanager
def restored(model: torch.nn.Module) -> Iterator[None]:
    """Undo every weight change made inside the block (tiny models are shared across tests)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(before[n])


def settings(*overrides: str, tmp: Path):
    """Validated settings of ``sphere-edit <overrides>`` with W&B off and a private cache."""
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    return validate(compose_config(["logger=none", f"run.cache_dir={tmp / 'cache'}", *overrides]))


# ---------------------------------------------------------------------------------------------
# Run directories for the report tests (tests/unit/test_report.py, test_paired.py, ...)

N_EDITS, BATCH, EVERY, LAYERS = 40, 10, 20, ("0", "1", "2")
FLUENCY_NOTE = "n-gram entropy over edit prompts (no generation_prompts in this dataset)"


def run_quality(sphere: bool, alpha: float, beta: float, seed: int, n: int) -> dict[str, float]:
    """Deterministic made-up metrics: quality decays with edits, less with SPHERE (more with α, β)."""
    decay = 0.6 if not sphere else 0.6 * (1 - 0.5 * alpha) * (1 - 0.5 * beta)
    noise = 1.5 * seed
    eff = 100 - decay * n - noise
    gen = 90 - 1.2 * decay * n - noise
    spe = 80 - 0.5 * decay * n + noise
    out: dict[str, float] = {}
    for k, v in (("efficacy", eff), ("generalization", gen), ("specificity", spe)):
        out[k], out[f"{k}_se"] = v, 2.0 + 0.1 * seed
        out[f"{k}_top1"], out[f"{k}_top1_se"] = v - 20, 3.0
    out["score"] = 3 / (1 / eff + 1 / gen + 1 / spe)
    out["n_records"] = n or N_EDITS
    out["fluency"], out["fluency_se"] = 620 - decay * n, 1.0
    for task, acc in (("nli", 70 - decay * n / 4), ("reasoning", 50 - decay * n / 8)):
        out[f"general/{task}"], out[f"general/{task}_se"] = acc, 1.0
    out["general/mean"] = (out["general/nli"] + out["general/reasoning"]) / 2
    return out


def run_he(sphere: bool, alpha: float, layer: int, n: int, base: float = 0.5) -> float:
    """Made-up HE of one layer after ``n`` edits: drifts up, less with SPHERE."""
    drift = 0.002 if not sphere else 0.002 * (1 - alpha)
    return base * (1 + drift * n * (layer + 1) / 10)


def write_run(
    root: Path,
    *,
    editor: str = "memit",
    sphere: bool = False,
    alpha: float = 0.8,
    beta: float = 0.5,
    seed: int = 0,
    finished: bool = True,
    checkpoint: bool = True,
    cut_last_line: bool = False,
    v_lr: float = 0.5,
) -> Path:
    """A run directory as sphere-edit writes it: config.yaml, metrics.jsonl, summary.json, checkpoint/."""
    import yaml

    from sphere.run.checkpoint import save_checkpoint

    name = f"{editor}_s{int(sphere)}_a{alpha}_b{beta}_seed{seed}" if sphere else f"{editor}_base_seed{seed}"
    d = root / name
    d.mkdir(parents=True)
    cfg = {
        "run": {"seed": seed, "cache_dir": f"/tmp/cache{seed}"},
        "model": {"name": "tiny-llama", "layers": {"multi": [0, 1, 2]}},
        "sphere": {"enabled": sphere, "alpha": alpha, "beta": beta, "rank": None},
        "editor": {"name": editor, "v_lr": v_lr},
        "dataset": {"kind": "counterfact", "limit": N_EDITS, "batch_size": BATCH},
        "eval": {"protocol": "edited_so_far", "every": EVERY},
        "logger": {"wandb": False},
    }
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [
        {
            "n_edits": 0,
            **run_quality(sphere, alpha, beta, seed, 0),
            **{f"he/layer_{la}": 0.5 for la in LAYERS},
        }
    ]
    last = N_EDITS if finished else 2 * BATCH
    for n in range(BATCH, last + 1, BATCH):
        row: dict = {"n_edits": n, "batch_time_s": 1.0}
        row.update({f"update_norm/layer_{la}": 1.0 for la in LAYERS})
        row.update({f"he/layer_{la}": run_he(sphere, alpha, int(la), n) for la in LAYERS})
        if n % EVERY == 0 and n < N_EDITS:
            row.update(run_quality(sphere, alpha, beta, seed, n))
        rows.append(row)
    final = run_quality(sphere, alpha, beta, seed, N_EDITS)
    if finished:
        rows.append(
            {
                "n_edits": N_EDITS,
                "final": True,
                **final,
                **{f"he/layer_{la}": run_he(sphere, alpha, int(la), N_EDITS) for la in LAYERS},
            }
        )
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    if cut_last_line:
        text += '{"n_edits": 50, "he/lay'
    (d / "metrics.jsonl").write_text(text)
    if finished:
        he = {la: run_he(sphere, alpha, int(la), N_EDITS) for la in LAYERS}
        summary = {
            "model": "tiny-llama",
            "editor": editor,
            "sphere": {"enabled": sphere, "alpha": alpha, "beta": beta, "rank": None},
            "dataset": "counterfact",
            "protocol": "edited_so_far",
            "n_edits": N_EDITS,
            "seed": seed,
            **final,
            "pre": run_quality(sphere, alpha, beta, seed, 0),
            "he": he,
            "he_pre": dict.fromkeys(LAYERS, 0.5),
            "he_change_pct": {la: 100 * (v - 0.5) / 0.5 for la, v in he.items()},
            "notes": {"fluency": FLUENCY_NOTE},
            "time": {"setup_s": 1.0, "edit_s": 2.0, "eval_s": 3.0},
        }
        (d / "summary.json").write_text(json.dumps(summary))
    if checkpoint:
        g = torch.Generator().manual_seed(0)
        w0 = {la: torch.randn(48, 24, generator=g) for la in LAYERS}
        gs = torch.Generator().manual_seed(100 + seed)
        scale = 3.0 if not sphere else 3.0 * (1 - alpha)
        direction = torch.randn(1, 24, generator=gs)
        weights = {la: w + scale * torch.randn(48, 1, generator=gs) @ direction for la, w in w0.items()}
        save_checkpoint(
            d / "checkpoint",
            weights=weights,
            w0=w0,
            editor_state={},
            transform_states=[],
            progress={"n_edits": last},
        )
    return d
