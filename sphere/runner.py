"""The sequential-edit loop: stream batches into the editor, measure, log, checkpoint, resume.

The runner knows nothing of particular editors: it builds the one named in the config through the
registry, hands it the run's resources (``EditContext``), and calls ``setup`` / ``apply``.
Transforms at the ``readout`` point (PRUNE) are applied to a view of the weights for evaluation
and HE only, never fed back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from editors import get_editor
from editors.core.context import EditContext
from editors.core.covariance import CovarianceCache, StatsOptions, weights_digest
from editors.core.model_spec import num_layers, spec_for
from editors.core.weights import apply_transforms, read_weight, write_weight
from sphere.checkpoint import load_checkpoint, save_checkpoint
from sphere.config import Settings
from sphere.corpus import corpus_texts
from sphere.data.records import EditRecord
from sphere.energy import hyperspherical_energy
from sphere.evaluation import HEADLINE, aggregate, evaluate_records
from sphere.io import atomic_write
from sphere.projection import SphereProjection
from sphere.tracking import Tracker

log = logging.getLogger(__name__)


def build_sphere(s: Settings, editor_cls: type) -> SphereProjection | None:
    """The SPHERE transform, placed where the reference places it for this editor unless overridden."""
    if not s.sphere.enabled:
        return None
    default_point, default_reference = editor_cls.sphere_defaults(s.editor)
    point = default_point if s.sphere.point == "auto" else s.sphere.point
    reference = default_reference if s.sphere.reference == "auto" else s.sphere.reference
    return SphereProjection(
        s.sphere.alpha,
        beta=None if s.sphere.rank is not None else s.sphere.beta,
        rank=s.sphere.rank,
        reference=reference,
        point=point,
        layers=s.sphere.layers,
        method=s.sphere.method,
    )


class SequentialRun:
    """One run: model + editor + records → metrics.jsonl, summary.json, checkpoints."""

    def __init__(self, s: Settings, model, tok, model_id: str, records: Sequence[EditRecord], out_dir: Path):
        self.s, self.model, self.tok, self.records, self.out_dir = s, model, tok, list(records), out_dir
        self.spec = spec_for(model)
        editor_cls = get_editor(s.editor_name)
        stats_opts = StatsOptions(
            corpus=s.model.stats.corpus,
            n_samples=s.model.stats.n_samples,
            max_length=s.model.stats.max_length,
            batch_size=s.model.stats.batch_size,
            dtype=s.model.stats.dtype,
        )
        cache = CovarianceCache(Path(s.run.cache_dir) / "stats", s.model.stats.precomputed)
        digest = weights_digest(model, self.spec, range(num_layers(model)))

        def stats(layers):
            texts = lambda: corpus_texts(stats_opts.corpus, s.run.seed)  # noqa: E731
            return cache.get(model, tok, self.spec, layers, stats_opts, model_id, texts, digest)

        artifacts = Path(s.run.cache_dir) / "artifacts" / model_id.strip("/").replace("/", "__")
        scope = cache.key(model_id, digest, "artifacts", stats_opts)

        def cached(key: str, compute):
            """Tensors derived from the unedited model and its statistics, kept on disk."""
            path = artifacts / f"{key}.{scope}.safetensors"
            if path.exists():
                return load_file(path)["value"]
            value = compute()
            atomic_write(path, lambda tmp: save_file({"value": value.contiguous().cpu()}, tmp))
            return value

        sphere = build_sphere(s, editor_cls)
        self.sphere = sphere
        self.ctx = EditContext(
            model=model,
            tok=tok,
            spec=self.spec,
            stats=stats,
            transforms=[sphere] if sphere else [],
            seed=s.run.seed,
            forward_batch_size=s.run.forward_batch_size,
            cached=cached,
        )
        self.editor = editor_cls(s.editor, self.ctx)
        self.layers: list[int] = self.editor.layers
        self.w0 = {layer: read_weight(model, self.spec, layer).cpu() for layer in self.layers}

    # ----------------------------------------------------------------------------------- views
    @property
    def has_readout(self) -> bool:
        return any(t.point == "readout" for t in self.editor.transforms)

    @contextlib.contextmanager
    def evaluated_weights(self) -> Iterator[None]:
        """The weights that are evaluated and saved: live W, or W₀ + T(W − W₀) for readout transforms."""
        if not self.has_readout:
            yield
            return
        live = {layer: read_weight(self.model, self.spec, layer) for layer in self.layers}
        try:
            for layer, w in live.items():
                w0 = self.w0[layer].to(w.device)
                name = self.spec.weight_name(layer)
                acc = apply_transforms(self.editor.transforms, "readout", name, layer, w0, w - w0)
                write_weight(self.model, self.spec, layer, w0 + acc)
            yield
        finally:
            for layer, w in live.items():
                write_weight(self.model, self.spec, layer, w)

    def measure(self, records: Sequence[EditRecord]) -> tuple[dict[str, float], list[dict]]:
        rows = evaluate_records(self.model, self.tok, records, batch_size=self.s.eval.batch_size)
        return aggregate(rows), rows

    def energies(self) -> dict[str, float]:
        he = self.s.eval.he
        return {
            str(layer): hyperspherical_energy(
                read_weight(self.model, self.spec, layer),
                power=he.power,
                eps=he.eps,
                block_size=he.block_size,
                normalized=he.normalized,
            )
            for layer in self.layers
        }

    # ------------------------------------------------------------------------------- the loop
    def run(self, tracker: Tracker) -> dict[str, Any]:
        s, n_total = self.s, len(self.records)
        bs = s.dataset.batch_size
        batches = [self.records[i : i + bs] for i in range(0, n_total, bs)]
        ckpt_dir = self.out_dir / "checkpoint"
        state = load_checkpoint(ckpt_dir) if s.run.resume else None
        timings = {"setup_s": 0.0, "edit_s": 0.0, "eval_s": 0.0}
        if state is None:
            t0 = time.perf_counter()
            self.editor.setup()  # templates, statistics, projectors: on the unedited model
            timings["setup_s"] = time.perf_counter() - t0
            progress: dict[str, Any] = {
                "batches_done": 0,
                "n_edits": 0,
                "immediate": [],
                "pre": None,
                "he_pre": None,
            }
        else:
            progress = self._restore(state)
            log.info("resumed from %s after %d edits", ckpt_dir, progress["n_edits"])

        if progress["pre"] is None:
            t0 = time.perf_counter()
            pre = self.measure(self.records)[0] if s.eval.pre else {}
            progress["he_pre"] = self.energies()
            progress["pre"] = pre
            timings["eval_s"] += time.perf_counter() - t0
            tracker.log({"n_edits": 0, **pre, **{f"he/layer_{k}": v for k, v in progress["he_pre"].items()}})

        bar = tqdm(total=n_total, initial=progress["n_edits"], desc=f"editing ({s.editor_name})", unit="edit")
        for b in range(progress["batches_done"], len(batches)):
            batch = batches[b]
            t0 = time.perf_counter()
            updates = self.editor.apply([r.request for r in batch])
            edit_s = time.perf_counter() - t0
            timings["edit_s"] += edit_s
            progress["batches_done"] = b + 1
            progress["n_edits"] += len(batch)
            n = progress["n_edits"]
            row: dict[str, Any] = {"n_edits": n, "batch_time_s": edit_s}
            with self.evaluated_weights():
                row.update({f"he/layer_{k}": v for k, v in self.energies().items()})
                for u in updates:
                    row[f"update_norm/layer_{u.layer}"] = float(u.delta.norm())
                if self.sphere is not None:
                    for st in self.sphere.pop_stats():
                        row[f"sphere_r/layer_{st['layer']}"] = st["r"]
                t0 = time.perf_counter()
                if s.eval.protocol == "last_batch":
                    metrics, rows = self.measure(batch)
                    progress["immediate"].extend(rows)
                    row.update({f"batch/{k}": v for k, v in metrics.items()})
                if s.eval.every and n // s.eval.every > (n - len(batch)) // s.eval.every and n < n_total:
                    row.update(self._scheduled_eval(progress))
                timings["eval_s"] += time.perf_counter() - t0
            tracker.log(row)
            bar.update(len(batch))
            if s.run.checkpoint_every and (b + 1) % s.run.checkpoint_every == 0 or b + 1 == len(batches):
                self._checkpoint(ckpt_dir, progress)
        bar.close()

        t0 = time.perf_counter()
        with self.evaluated_weights():
            final = self._scheduled_eval(progress)
            he = self.energies()
        timings["eval_s"] += time.perf_counter() - t0
        tracker.log(
            {
                "n_edits": progress["n_edits"],
                "final": True,
                **final,
                **{f"he/layer_{k}": v for k, v in he.items()},
            }
        )
        return self._summary(progress, final, he, timings)

    def _scheduled_eval(self, progress: dict[str, Any]) -> dict[str, float]:
        if self.s.eval.protocol == "last_batch":
            return aggregate(progress["immediate"])
        return self.measure(self.records[: progress["n_edits"]])[0]

    def _checkpoint(self, ckpt_dir: Path, progress: dict[str, Any]) -> None:
        save_checkpoint(
            ckpt_dir,
            weights={str(layer): read_weight(self.model, self.spec, layer) for layer in self.layers},
            w0={str(k): v for k, v in self.w0.items()},
            editor_state=self.editor.state_dict(),
            transform_states=[
                t.state_dict() if hasattr(t, "state_dict") else {} for t in self.editor.transforms
            ],
            progress=progress,
        )

    def _restore(self, state: dict[str, Any]) -> dict[str, Any]:
        for key, w in state["weights"].items():
            write_weight(self.model, self.spec, int(key), w)
        self.w0 = {int(k): v for k, v in state["w0"].items()}
        self.editor.load_state_dict(state["editor"])
        for t, st in zip(self.editor.transforms, state["transforms"]):
            if hasattr(t, "load_state_dict"):
                t.load_state_dict(st)
        return state["progress"]

    def _summary(self, progress, final, he, timings) -> dict[str, Any]:
        s = self.s
        he_pre = progress["he_pre"]
        return {
            "model": s.model.name,
            "editor": s.editor_name,
            "sphere": asdict(s.sphere),
            "dataset": s.dataset.kind,
            "protocol": s.eval.protocol,
            "n_edits": progress["n_edits"],
            **final,
            "pre": progress["pre"],
            "he": he,
            "he_pre": he_pre,
            "he_change_pct": {k: 100.0 * (he[k] - he_pre[k]) / he_pre[k] if he_pre[k] else 0.0 for k in he},
            "time": timings,
        }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table a person can read at the end of a run."""
    pre = summary.get("pre") or {}
    sphere = summary["sphere"]
    sel = f"r={sphere['rank']}" if sphere["rank"] else f"β={sphere['beta']}"
    with_sphere = f" + SPHERE(α={sphere['alpha']}, {sel})" if sphere["enabled"] else ""
    title = (
        f"{summary['model']} | {summary['editor']}{with_sphere} | {summary['n_edits']} "
        f"{summary['dataset']} edits | protocol {summary['protocol']}"
    )
    lines = [title, f"{'metric':<24}{'pre':>10}{'post':>10}"]
    for k in (*HEADLINE, "score"):
        if k in summary:
            p = pre.get(k)
            lines.append(f"{k:<24}{'' if p is None else f'{p:.2f}':>10}{summary[k]:>10.2f}")
    lines.append(f"{'HE (normalised) layer':<24}{'pre':>10}{'post':>10}{'change %':>12}")
    for k, v in summary["he"].items():
        lines.append(f"{k:<24}{summary['he_pre'][k]:>10.6g}{v:>10.6g}{summary['he_change_pct'][k]:>+12.3e}")
    t = summary["time"]
    lines.append(
        f"time: setup {t['setup_s']:.1f} s, editing {t['edit_s']:.1f} s, evaluation {t['eval_s']:.1f} s"
    )
    return "\n".join(lines)
