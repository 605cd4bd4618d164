"""General ability as an evaluator: downstream tasks before editing, every ``eval.general.every``
edits and at the end (reference spec §5; task definitions in sphere/evaluation/general_tasks.py).

Why an evaluator with its own schedule: the paper plots general ability against the number of
edits (0, 1000, 2000, … in the reference's rect_eval), which is much coarser than the editing
batches, and one evaluation of four tasks × 500 prompts costs minutes. So the ``batch`` moment
measures only when the edit count crosses a multiple of ``every``; the last count seen is kept in
the evaluator's state, so a resumed run measures at the same points.

Each task is scored twice: by the reference's rules (``general/<task>``, comparable with the
papers) and by a strict rule (``general/<task>_strict``) where one is defined: the final number for
GSM8K, the most likely label after the prompt for the label tasks (docs/general_ability.md).
"""

from __future__ import annotations

import math
from typing import Any

from sphere.evaluation.catalogue import Metric
from sphere.evaluation.decoding import generate_texts
from sphere.evaluation.general_scoring import (
    accuracy_metrics,
    label_metrics,
    pick_label,
    strict_metrics,
)
from sphere.evaluation.general_tasks import TASKS, GeneralItem, GeneralTask, check_task_names, load_items
from sphere.evaluation.registry import EvalView, Moment, register_evaluator
from sphere.evaluation.scoring import score_continuations


def task_metrics(name: str, scores: dict[str, float]) -> dict[str, float]:
    """``general/<task>`` for the accuracy, ``general/<task>_<metric>`` for the rest (se, f1, mcc, invalid)."""
    return {
        (f"general/{name}" if key == "acc" else f"general/{name}_{key}"): value
        for key, value in scores.items()
    }


# How a task is named in a table; a task not listed is named after its key.
TASK_LABELS = {"nli": "NLI", "open_qa": "Open QA", "closed_qa": "Closed QA", "mmlu": "MMLU", "sst2": "SST-2",
               "mrpc": "MRPC", "cola": "CoLA", "rte": "RTE", "rte_alphaedit": "RTE (AlphaEdit)",
               "glue_nli": "GLUE NLI", "reasoning": "Reasoning"}  # fmt: skip


def _task_metrics() -> list[Metric]:
    """Accuracy per task, its strict variant, the means, and ``general/`` for any other task."""
    out = [Metric("general/", "accuracy", order=44)]
    for name in TASKS:
        label = TASK_LABELS.get(name, name.replace("_", " ").capitalize())
        out += [
            Metric(f"general/{name}", f"{label} acc.", order=40),
            Metric(f"general/{name}_strict", f"{label} acc. (strict)", order=41),
        ]
    return [
        *out,
        Metric("general/mean", "General mean", order=45),
        Metric("general/mean_strict", "General mean (strict)", order=46),
    ]


@register_evaluator("general", metrics=_task_metrics())
class GeneralAbility:
    """Accuracy (%) and its standard error on each of ``eval.general.tasks``; F1 (%), MCC and the
    invalid-answer rate (%) where the reference reports them; ``general/mean`` over the tasks.
    The strict variant beside them: ``general/<task>_strict`` (with ``_se``, and ``_f1``/``_mcc``
    for label tasks) and ``general/mean_strict`` over the tasks that have one."""

    moments = frozenset({"pre", "batch", "final"})

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg.general
        check_task_names(self.cfg.tasks)
        # Loaded now so a missing or malformed file stops the run before any editing.
        self.items: dict[str, list[GeneralItem]] = {}
        self.notes: dict[str, str] = {}
        for name in dict.fromkeys(self.cfg.tasks):
            self.items[name], self.notes[f"general/{name}"] = load_items(
                TASKS[name], self.cfg.source, self.cfg.n_items
            )
        when = f"every {self.cfg.every} edits" if self.cfg.every > 0 else "before and after editing only"
        self.notes["general"] = (
            f"general ability: source {self.cfg.source}, up to {self.cfg.n_items} items per task, {when}; "
            "greedy, batched generation with left padding; general/<task> scored by the reference's "
            "rules, general/<task>_strict by the final number (reasoning) or the most likely label "
            "(label tasks) (docs/general_ability.md)"
        )
        self.last_n_edits = 0
        # The batch that reaches the last edit is often a multiple of ``every`` too (15,000 / 1,000):
        # the final moment then reuses that measurement of the same weights instead of repeating it.
        self.last_result: tuple[int, dict[str, float]] | None = None

    def due(self, moment: Moment, n_edits: int) -> bool:
        """Whether to measure now: always at pre/final; after a batch when ``n_edits`` reached the next
        multiple of ``every`` since the last count seen (several multiples in one batch: measured once)."""
        if moment != "batch":
            return True
        every = self.cfg.every
        return every > 0 and n_edits // every > self.last_n_edits // every

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        due = self.due(moment, view.n_edits)
        self.last_n_edits = view.n_edits
        if not due:
            return {}
        if moment == "final" and self.last_result and self.last_result[0] == view.n_edits:
            return dict(self.last_result[1])
        out: dict[str, float] = {}
        for name, items in self.items.items():
            out.update(task_metrics(name, self.evaluate_task(name, items, view)))
        accuracies = [out[f"general/{name}"] for name in self.items]
        out["general/mean"] = sum(accuracies) / len(accuracies) if accuracies else math.nan
        strict = [out[f"general/{name}_strict"] for name in self.items if f"general/{name}_strict" in out]
        if strict:
            out["general/mean_strict"] = sum(strict) / len(strict)
        self.last_result = (view.n_edits, out) if moment == "batch" else None
        return out

    def evaluate_task(self, name: str, items: list[GeneralItem], view: EvalView) -> dict[str, float]:
        """All of a task's prompts in one batched greedy generation, then the task's scorer; the
        strict rule on the same generations (numbers) or on label likelihoods (label tasks)."""
        task = TASKS[name]
        prompts = [item.prompt for item in items]
        golds = [item.gold for item in items]
        continuations = generate_texts(
            view.model,
            view.tok,
            prompts,
            max_new_tokens=task.max_new_tokens,
            batch_size=self.cfg.batch_size,
            top_k=0,
            desc=f"general ability: {name} ({len(prompts)} prompts, generation)",
        )
        preds = [task.predict(p, c) for p, c in zip(prompts, continuations)]
        out = task.score(preds, golds)
        if task.strict_correct is not None:
            out |= strict_metrics(accuracy_metrics([task.strict_correct(p, g) for p, g in zip(preds, golds)]))
        if task.choices:
            chosen = likeliest_labels(
                view, task, prompts, self.cfg.batch_size, desc=f"general ability: {name} (label likelihoods)"
            )
            out |= strict_metrics(label_metrics(golds, chosen, exclude_invalid=False))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"last_n_edits": self.last_n_edits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_n_edits = int(state.get("last_n_edits", 0))


def likeliest_labels(
    view: EvalView, task: GeneralTask, prompts: list[str], batch_size: int, desc: str | None = None
) -> list[int]:
    """Each prompt's label by likelihood: every ``task.choices`` text is scored as the continuation
    of the prompt (teacher forcing, ``score_continuations``), and ``pick_label`` takes the label
    with the most probability.

    The prompt's trailing whitespace is moved into the choice (``"answer: "`` + ``"yes"`` is scored
    as ``"answer:"`` + ``" yes"``): a tokenizer's word tokens carry their leading space, so a prompt
    ending in a bare space would make every choice an unnatural token sequence."""
    pairs = [(prompt.rstrip(), text) for prompt in prompts for text, _ in task.choices]
    scores = score_continuations(view.model, view.tok, pairs, batch_size=batch_size, desc=desc)
    k = len(task.choices)
    logprobs = [-score.nll * len(score.token_correct) for score in scores]  # total, not per token
    return [pick_label(logprobs[i * k : (i + 1) * k], task.choices) for i in range(len(prompts))]
