"""The sequential-edit loop: stream batches into the editor, measure, log, checkpoint, resume.

The paper's protocol, and nothing else: measure the unedited model; for each batch, edit, log the
update and what the evaluators scheduled for a batch return, checkpoint; measure the final model.
The runner knows no editor and no metric by name: the editor comes from the registry with its
resources and SPHERE's transform (``sphere.run.build.build_editor``), the metrics from the
evaluators named in ``eval.evaluators``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from editors.core.faults import kill_point
from editors.core.model_spec import spec_for
from editors.core.progress import progress as progress_bar
from editors.core.weights import (
    MetricTransform,
    NonFiniteUpdateError,
    OffloadedWeightError,
    StatefulTransform,
    accumulated_view,
)
from sphere.data.records import EditRecord
from sphere.errors import ConfigError
from sphere.evaluation.registry import EvalView, Moment, OutcomeSource, get_evaluator
from sphere.run.build import build_editor
from sphere.run.checkpoint import CHECKPOINT_DIR, load_checkpoint, map_w0, save_checkpoint, write_w0
from sphere.run.config import Settings, check_against_model
from sphere.run.eval_subset import edited_subset, subset_positions
from sphere.run.identity import resume_mode
from sphere.run.outcomes import merge_outcomes, write_outcomes
from sphere.run.provenance import collect as collect_provenance
from sphere.run.provenance import one_line
from sphere.run.rundir import UPDATE_NORM_PREFIX
from sphere.run.saved import kept_path, save_kept
from sphere.run.state import Progress
from sphere.run.summary import build_summary
from sphere.run.tracking import Tracker

log = logging.getLogger(__name__)


class SequentialRun:
    """One run: model + editor + records → metrics.jsonl rows, a summary, checkpoints."""

    def __init__(self, s: Settings, model, tok, model_id: str, records: Sequence[EditRecord], out_dir: Path):
        self.s, self.model, self.tok, self.records, self.out_dir = s, model, tok, list(records), out_dir
        self.model_id = model_id
        self.spec = spec_for(model)
        built = build_editor(
            model,
            tok,
            self.spec,
            model_id,
            s.editor_name,
            s.editor,
            s.sphere,
            covariance_cfg=s.model.covariance,
            cache_dir=s.run.cache_dir,
            seed=s.run.seed,
            forward_batch_size=s.run.forward_batch_size,
        )
        self.placement, self.sphere = built.placement, built.sphere
        self.ctx, self.editor = built.ctx, built.editor
        self.layers: list[int] = list(self.editor.layers)
        check_against_model(s, model, self.spec, self.layers)
        if self.spec.post_mlp_norm:
            log.info(
                "%s: the MLP output passes %s before the residual add; residual targets are mapped "
                "through it (editors/core/post_norm.py; docs/tuning.md, 'Gemma-3-270M')",
                self.spec.arch,
                self.spec.post_mlp_norm.format("L"),
            )
        try:  # W₀'s snapshot is the first read of the edited layers: it refuses offloaded ones
            self.ctx.remember_pretrained(self.layers)
        except OffloadedWeightError as e:  # a device map setting to change, found before any work
            raise ConfigError(str(e)) from None
        self.evaluators = {name: get_evaluator(name)(s.eval) for name in s.eval.evaluators}
        self._last_checkpoint = time.monotonic()

    @contextlib.contextmanager
    def evaluated_weights(self) -> Iterator[None]:
        """The weights that are evaluated and saved: live W, or W₀ + T(W − W₀) for readout transforms."""
        if not any(t.point == "readout" for t in self.editor.transforms):
            yield
            return

        def view(layer: int, w):
            name, w0 = self.spec.weight_name(layer), self.ctx.pretrained(layer).to(w.device)
            return accumulated_view(self.editor.transforms, "readout", name, layer, w0, w)

        with self._replaced_weights(view):
            yield

    @contextlib.contextmanager
    def _replaced_weights(self, replacement: Callable[[int, Any], Any]) -> Iterator[None]:
        """``replacement(layer, live W)`` written into every edited layer for the block, the live
        weights written back after it, whatever happens inside."""
        weights = self.ctx.weights
        live = {layer: weights.read(layer) for layer in self.layers}
        try:
            for layer, w in live.items():
                weights.write(layer, replacement(layer, w))
            yield
        finally:
            for layer, w in live.items():
                weights.write(layer, w)

    def evaluated_layers(self) -> dict[int, Any]:
        """The edited layers' weights as evaluated (readout transforms applied), on the CPU."""
        with self.evaluated_weights():
            return {layer: self.ctx.weights.read(layer).detach().cpu() for layer in self.layers}

    def _keep(self, n_edits: int) -> None:
        """Save the evaluated weights after ``n_edits`` edits under kept/ (``run.keep_at``)."""
        if n_edits == 0:
            weights = {layer: self.ctx.pretrained(layer).detach().cpu() for layer in self.layers}
        else:
            weights = self.evaluated_layers()
        names = {layer: self.spec.weight_name(layer) for layer in self.layers}
        log.info(
            "kept the edited layers after %d edits: %s",
            n_edits,
            save_kept(self.out_dir, n_edits, weights, names),
        )

    def measure(self, moment: Moment, records: Sequence[EditRecord], n_edits: int) -> dict[str, float]:
        """Every evaluator scheduled for ``moment``, merged into one row."""
        view = EvalView(self.model, self.tok, self.spec, self.layers, records, n_edits)
        out: dict[str, float] = {}
        for evaluator in self.evaluators.values():
            if moment in evaluator.moments:
                out.update(evaluator(moment, view))
        return out

    def run(self, tracker: Tracker, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Edit every batch not done yet, measuring as scheduled; ``state``: a loaded checkpoint to
        continue from (read from ``<out_dir>/checkpoint`` when ``run.resume=true`` and none is
        given; ``run_experiment`` decides and passes it, ``sphere.run.identity``)."""
        s, n_total, bs = self.s, len(self.records), self.s.dataset.batch_size
        provenance = self._provenance()
        batches = [self.records[i : i + bs] for i in range(0, n_total, bs)]
        ckpt_dir = self.out_dir / CHECKPOINT_DIR
        if state is None and resume_mode(s.run.resume) == "true":
            state = load_checkpoint(ckpt_dir)
        if state is None:
            progress = Progress()
            self._pretrained_from_file(ckpt_dir, fresh=True)
            with _timed(progress, "setup_s"):
                self.editor.setup()  # templates, statistics, projectors: on the unedited model
        else:
            progress = self.restore(state)
            self._pretrained_from_file(ckpt_dir, fresh=False)

        if s.run.keep_at and not kept_path(self.out_dir, 0).exists():
            self._keep(0)  # W₀, the reference's edit_0: what the edited weights are compared with
        if progress.pre is None:
            with _timed(progress, "eval_s"):
                progress.pre = self.measure_unedited(progress)
            row = {"n_edits": 0, **progress.pre}
            if progress.n_edits:  # after later rows (an extended run): first in the file all the same
                tracker.log_first(row)
            else:
                tracker.log(row)

        bar = progress_bar(n_total, f"editing ({s.editor_name})", "edit", initial=progress.n_edits)
        for b in range(progress.batches_done, len(batches)):
            row = self._edit_batch(b, batches, progress)
            tracker.log(row)
            kill_point("batch.logged")  # tests: between a batch's row and its checkpoint
            bar.update(len(batches[b]))
            n = progress.n_edits
            if any(n - len(batches[b]) < k <= n for k in s.run.keep_at):
                self._keep(n)
            if self._checkpoint_due(b, len(batches)):
                self._checkpoint(ckpt_dir, progress)
        bar.close()

        edited = self.edited_records(batches, progress)
        with _timed(progress, "eval_s"), self.evaluated_weights():
            final = self.measure("final", edited, progress.n_edits)
        tracker.log({"n_edits": progress.n_edits, "final": True, **final})
        self._write_outcomes(progress.n_edits)
        header = {
            "model": s.model.name,
            "editor": s.editor_name,
            # the config as given, plus where "auto" resolved for this editor (the report tells
            # runs with U from W₀ and from the live weights apart by it)
            "sphere": asdict(s.sphere) | ({"resolved": self._resolved_sphere()} if self.sphere else {}),
            "dataset": s.dataset.kind,
            "protocol": s.eval.protocol,
            "n_edits": progress.n_edits,
            "seed": s.run.seed,
            "provenance": provenance,
        }
        notes = {k: v for ev in self.evaluators.values() for k, v in getattr(ev, "notes", {}).items()}
        if notes:
            header["notes"] = notes
        if progress.skipped:
            header["skipped_batches"] = [b + 1 for b in progress.skipped]
        if progress.extended_from:
            header["extended_from"] = list(progress.extended_from)
        return build_summary(header, pre=progress.pre or {}, final=final, timings=progress.timings)

    def measure_unedited(self, progress: Progress) -> dict[str, float]:
        """The "pre" measurement of every record of the stream on the unedited model. After edits
        (an extended run, ``sphere.run.extend``: its first one covered a shorter stream) W₀ is put
        back in the edited layers for it, and the evaluators' states (schedules) are kept as they
        were: the measurement must not count as one of the run's."""
        if not progress.n_edits:
            return self.measure("pre", self.records, 0)
        states = {name: copy.deepcopy(ev.state_dict()) for name, ev in self.evaluators.items()}
        try:
            with self._replaced_weights(lambda layer, w: self.ctx.pretrained(layer).to(w.device)):
                return self.measure("pre", self.records, 0)
        finally:
            for name, ev in self.evaluators.items():
                ev.load_state_dict(states[name])

    def _provenance(self) -> dict[str, Any]:
        """Code, software, machine, model and data identity for summary.json, logged in one line."""
        t0 = time.perf_counter()
        provenance = collect_provenance(self.s, self.model, self.model_id)
        log.info("%s (%.2f s)", one_line(provenance), time.perf_counter() - t0)
        return provenance

    def _write_outcomes(self, n_edits: int) -> None:
        """outcomes.jsonl: the per-record rows of the evaluators that offer them (``OutcomeSource``),
        merged by case_id; no file when none does."""
        sources = [
            rows
            for ev in self.evaluators.values()
            if isinstance(ev, OutcomeSource) and (rows := ev.final_outcomes()) is not None
        ]
        if sources:
            write_outcomes(self.out_dir, merge_outcomes(sources, n_edits))

    def _resolved_sphere(self) -> dict[str, str]:
        """Where SPHERE acted and which weights U came from, with the editor's defaults beside them."""
        assert self.sphere is not None
        return {
            "point": self.sphere.point,
            "reference": self.sphere.reference,
            "default_point": self.placement.default_point,
            "default_reference": self.placement.default_reference,
        }

    def _edit_batch(self, b: int, batches: list[list[EditRecord]], progress: Progress) -> dict[str, Any]:
        """Apply batch ``b``, measure what is scheduled; the metrics row. A non-finite update stops
        the run naming the batch (nothing of it is written), or with ``run.on_nonfinite=skip`` the
        batch is undone and recorded as skipped."""
        batch = batches[b]
        snapshot = self._snapshot() if self.s.run.on_nonfinite == "skip" else None
        t0 = time.perf_counter()
        try:
            updates = self.editor.apply([r.request for r in batch])
        except NonFiniteUpdateError as e:
            where = f"batch {b + 1}/{len(batches)} (case_ids {batch[0].case_id}..{batch[-1].case_id})"
            if snapshot is None:
                raise NonFiniteUpdateError(f"{where}: {e}") from None
            self._undo(snapshot)
            progress.batches_done = b + 1
            progress.skipped.append(b)
            log.warning("%s skipped: %s", where, e)
            return {"n_edits": progress.n_edits, "skipped_batch": b + 1, "skip_reason": str(e)}
        edit_s = time.perf_counter() - t0
        progress.timings["edit_s"] += edit_s
        progress.batches_done, progress.n_edits = b + 1, progress.n_edits + len(batch)
        n, n_total = progress.n_edits, len(self.records)
        row: dict[str, Any] = {"n_edits": n, "batch_time_s": edit_s}
        row.update({f"{UPDATE_NORM_PREFIX}{u.layer}": float(u.delta.norm()) for u in updates})
        with _timed(progress, "eval_s"), self.evaluated_weights():
            row.update(self.measure("batch", batch, n))
            every = self.s.eval.every
            if every and n // every > (n - len(batch)) // every and n < n_total:
                row.update(self._scheduled(batches, progress, n))
        for t in self.editor.transforms:  # after the view: readout transforms report there
            if isinstance(t, MetricTransform):
                row.update(t.pop_metrics())
        return row

    def _scheduled(self, batches: list[list[EditRecord]], progress: Progress, n: int) -> dict[str, Any]:
        """The intermediate evaluation: the records edited so far, or with ``eval.subset`` those of
        them in a fixed random subset of the stream (``sphere.run.eval_subset``), whose number the
        row then gives as ``eval_n_records``. The final evaluation always measures all of them."""
        if self.s.eval.subset is None:
            return self.measure("scheduled", self.edited_records(batches, progress), n)
        keep = subset_positions(len(self.records), self.s.eval.subset, self.s.run.seed)
        records = edited_subset(batches, progress.batches_done, progress.skipped, keep)
        return {**self.measure("scheduled", records, n), "eval_n_records": len(records)}

    @staticmethod
    def edited_records(batches: list[list[EditRecord]], progress: Progress) -> list[EditRecord]:
        """The records edited so far (skipped batches left out)."""
        return [
            r
            for i, batch in enumerate(batches[: progress.batches_done])
            if i not in progress.skipped
            for r in batch
        ]

    def _snapshot(self) -> tuple[dict[int, Any], dict[str, Any]]:
        state = {
            k: v.clone() if hasattr(v, "clone") else copy.deepcopy(v)
            for k, v in self.editor.state_dict().items()
        }
        return {layer: self.ctx.weights.read(layer) for layer in self.layers}, state

    def _undo(self, snapshot: tuple[dict[int, Any], dict[str, Any]]) -> None:
        weights, state = snapshot
        for layer, w in weights.items():
            self.ctx.weights.write(layer, w)
        self.editor.load_state_dict(state)

    def _checkpoint_due(self, b: int, n_batches: int) -> bool:
        """After batch ``b``: every ``run.checkpoint_every`` batches, when ``run.checkpoint_minutes``
        have passed since the last checkpoint (or the start), and after the last batch."""
        every, minutes = self.s.run.checkpoint_every, self.s.run.checkpoint_minutes
        return (
            b + 1 == n_batches
            or bool(every)
            and (b + 1) % every == 0
            or bool(minutes)
            and time.monotonic() - self._last_checkpoint >= 60 * minutes
        )

    def _checkpoint(self, ckpt_dir: Path, progress: Progress) -> None:
        progress.evaluators = {name: ev.state_dict() for name, ev in self.evaluators.items()}
        save_checkpoint(
            ckpt_dir,
            weights={str(layer): self.ctx.weights.read(layer) for layer in self.layers},
            w0={str(k): v for k, v in self.ctx.w0.items()},
            editor_state=self.editor.state_dict(),
            transform_states=[
                t.state_dict() if isinstance(t, StatefulTransform) else {} for t in self.editor.transforms
            ],
            progress=progress.to_dict(),
        )
        self._last_checkpoint = time.monotonic()

    def _pretrained_from_file(self, ckpt_dir: Path, *, fresh: bool) -> None:
        """Keep W₀ in its checkpoint file (``w0.safetensors``) instead of process memory.

        W₀ is read only by PRUNE's restraint, readout transforms and the kept weights of edit 0, yet
        it was held for the whole run: 448 MiB of the 8B-width test model's peak, 1.1 GiB for
        LLaMA3-8B's five layers. The file is written once anyway; written before the first edit
        instead of at the first checkpoint, W₀ can be the file's mapped pages (``map_w0``), read on
        use. A fresh run rewrites the file even if one is there (left by an earlier run in this
        directory); a resumed one writes it only if it is missing (older checkpoints kept W₀ inside).
        """
        if not self.ctx.w0:
            return
        write_w0(ckpt_dir, {str(k): v for k, v in self.ctx.w0.items()}, force=fresh)
        self.ctx.w0 = {int(k): v for k, v in map_w0(ckpt_dir).items()}

    def restore(self, state: dict[str, Any]) -> Progress:
        """Put a loaded checkpoint (``load_checkpoint``) back: weights, W₀, editor, transform and
        evaluator states; returns its progress. Resuming and re-evaluating a saved run use it."""
        for key, w in state["weights"].items():
            self.ctx.weights.write(int(key), w)
        self.ctx.w0 = {int(k): v for k, v in state["w0"].items()}
        self.editor.load_state_dict(state["editor"])
        for t, st in zip(self.editor.transforms, state["transforms"]):
            if isinstance(t, StatefulTransform):
                t.load_state_dict(st)
        progress = Progress.from_dict(state["progress"])
        for name, ev in self.evaluators.items():
            ev.load_state_dict(progress.evaluators.get(name, {}))
        return progress


@contextlib.contextmanager
def _timed(progress: Progress, key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        progress.timings[key] += time.perf_counter() - t0
