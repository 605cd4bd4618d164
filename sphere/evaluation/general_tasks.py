"""The general-ability tasks, one declarative entry each: file, reader, prompt, budget, gold, scorer.

Two families, each exactly as its reference builds prompts and reads answers:

* SPHERE/RECT (reference spec §5, [S] RECT_eval): ``reasoning`` (GSM8K), ``nli`` (RTE),
  ``open_qa`` (Natural Questions with a generated passage), ``closed_qa`` (BoolQ). Items are the
  first N rows of each file, zero-shot.
* AlphaEdit glue_eval ([A] glue_eval/*_eval.py, the pickles converted to JSON in shared/data §6):
  ``sst2``, ``mrpc``, ``cola``, ``rte``, ``mmlu``, ``glue_nli``. The reference keeps the first 10
  rows of every set as few-shot examples (used with 0 shots) and tests the rows after them, so the
  items here start at row 10 as well. ``rte_alphaedit`` is ``rte`` scored as AlphaEdit did: its
  code reads GLUE label 1 as "True", but in GLUE RTE label 1 is *not_entailment* (see
  docs/general_ability.md); ``rte`` uses the right polarity.

Sources: ``bundled`` reads data/general_ability/ (SPHERE sets: first 100 rows; AlphaEdit sets:
complete), ``full`` the complete SPHERE files that ``scripts/download_data.py`` puts under
data/full/general_ability/ (the AlphaEdit sets have no other source than the bundled conversion).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sphere.data.download import DEFAULT_DEST, FILES, verify_sidecar
from sphere.data.reading import RecordProblem, describe, get_field, read_json_list, read_text
from sphere.evaluation.general_scoring import (
    accuracy_metrics,
    answer_after,
    contains_gold,
    final_number_matches,
    gsm8k_parts,
    label_metrics,
    parse_label,
    soft_exact_match,
)
from sphere.paths import bundled_data_dir

BUNDLED_DIR = bundled_data_dir() / "general_ability"
SOURCES = ("bundled", "full")

# AlphaEdit's load_data_split reserves this many leading rows for few-shot prompts.
ALPHAEDIT_RESERVED = 10


@dataclass(frozen=True)
class GeneralItem:
    """One test item: the exact prompt fed to the model and what a correct answer must match."""

    prompt: str
    gold: Any  # str (reasoning), tuple[str, ...] (open_qa), int label (the others)


@dataclass(frozen=True)
class GeneralTask:
    """A general-ability task.

    Attributes:
        name: the config/metric name (``general/<name>``).
        title: what it is, for notes and docs.
        bundled: file under data/general_ability/.
        download: the ``sphere.data.download.FILES`` key of the complete file; ``None`` when the
            bundled file already is the complete set.
        read: file → raw rows (dicts).
        fields: (field, type) every row must have.
        build: checked row → item (raises ``RecordProblem`` for a bad value).
        max_new_tokens: the reference's generation budget.
        predict: (prompt, continuation) → prediction (answer text or label).
        score: (predictions, golds) → metrics; ``acc`` and ``se`` always, ``f1``, ``mcc``,
            ``invalid`` where the reference reports them.
        skip: leading rows the reference never tests (AlphaEdit's few-shot pool).
        strict_correct: the strict rule for a generated answer, (prediction, gold) → correct
            (GSM8K: the final number equals the gold number); reported as ``general/<name>_strict``.
        choices: the strict rule for a label task: (text, label) pairs, each text scored by its
            likelihood after the prompt (``general_scoring.pick_label``); no generation involved.
    """

    name: str
    title: str
    bundled: str
    download: str | None
    read: Callable[[Path], list[Any]]
    fields: tuple[tuple[str, type], ...]
    build: Callable[[dict[str, Any]], GeneralItem]
    max_new_tokens: int
    predict: Callable[[str, str], Any]
    score: Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]
    skip: int = 0
    strict_correct: Callable[[Any, Any], bool] | None = None
    choices: tuple[tuple[str, int], ...] = ()


# --- readers ------------------------------------------------------------------------------------------


def _text(path: Path) -> str:
    text = read_text(path)
    if not text.strip():
        raise ValueError(f"{path}: file is empty; expected task data")
    return text


def read_jsonl(path: Path) -> list[Any]:
    """One JSON object per non-blank line (``.jsonl`` or ``.jsonl.gz``)."""
    rows = []
    for lineno, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: line {lineno} is not valid JSON ({err.msg} at column {err.colno}); "
                "re-download or repair the file"
            ) from None
    return rows


NLI_COLUMNS = ("index", "sentence1", "sentence2", "label")


def read_nli_tsv(path: Path) -> list[Any]:
    """GLUE RTE's tab-separated layout: a header ``index sentence1 sentence2 label``, then 4 fields a row.

    Read without CSV quoting: the reference's ``csv.reader`` treats a field that starts with ``"`` as
    quoted and drops those quotes (69 of 2,489 rows), which changes the sentences; here they stay."""
    rows = list(csv.reader(io.StringIO(_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(rows[0]) != NLI_COLUMNS:
        got = " | ".join(rows[0]) if rows else "nothing"
        raise ValueError(f"{path}: expected the tab-separated header {' | '.join(NLI_COLUMNS)}, got {got}")
    out = []
    for lineno, row in enumerate(rows[1:], 2):
        if len(row) != len(NLI_COLUMNS):
            raise ValueError(
                f"{path}: line {lineno} has {len(row)} tab-separated fields, expected {len(NLI_COLUMNS)}"
            )
        out.append(dict(zip(NLI_COLUMNS, row)))
    return out


def read_json(path: Path) -> list[Any]:
    """A JSON list of objects (the AlphaEdit sets, converted from their pickles)."""
    return read_json_list(path)


# --- item builders --------------------------------------------------------------------------------------


def _one_of(value: Any, allowed: dict[Any, int], name: str) -> int:
    if isinstance(value, bool) or value not in allowed:  # True == 1, so booleans are refused first
        raise RecordProblem(f"field {name!r} is {describe(value)}; allowed: {', '.join(map(repr, allowed))}")
    return allowed[value]


def _nonempty_strs(row: dict[str, Any], key: str) -> list[str]:
    value = row[key]
    if not value or not all(isinstance(v, str) for v in value):
        raise RecordProblem(f"field {key!r} must be a non-empty list of strings, got {describe(value)}")
    return value


def build_reasoning(row: dict[str, Any]) -> GeneralItem:
    """GSM8K with the gold chain of thought in the prompt; gold = the number after ``#### `` (spec §5)."""
    try:
        rationale, gold = gsm8k_parts(row["answer"])
    except ValueError as err:
        raise RecordProblem(f"field 'answer': {err}") from None
    prompt = (
        f"Q: {row['question']} A:Let's think step by step. {rationale} "
        "Therefore, the answer (arabic numerals) is:"
    )
    return GeneralItem(prompt, gold)


def build_nli(row: dict[str, Any]) -> GeneralItem:
    label = _one_of(row["label"], {"entailment": 1, "not_entailment": 0}, "label")
    return GeneralItem(f"{row['sentence1']} entails {row['sentence2']}. True or False? answer:", label)


def build_open_qa(row: dict[str, Any]) -> GeneralItem:
    passage = _nonempty_strs(row, "output")[0]
    golds = tuple(_nonempty_strs(row, "answer"))
    prompt = (
        "Refer to the passage below and answer the following question.\n"
        f"Passage: {passage}\nQuestion: {row['question']}\nAnswer:"
    )
    return GeneralItem(prompt, golds)


def build_closed_qa(row: dict[str, Any]) -> GeneralItem:
    prompt = (
        "Please answer the given question based on the passage. The answer should be exact 'yes' or 'no'. "
        f"passage: {row['passage']} question: {row['question']}. answer: "
    )
    return GeneralItem(prompt, 1 if row["answer"] else 0)


_BINARY = {0: 0, 1: 1}


def build_sst2(row: dict[str, Any]) -> GeneralItem:
    # no space after "Review :" — the reference's zero-shot prompt is written that way
    return GeneralItem(f"Review :{row['sentence']}\nSentiment :", _one_of(row["label"], _BINARY, "label"))


def build_mrpc(row: dict[str, Any]) -> GeneralItem:
    prompt = (
        "Are the sentences paraphrases of each other.\n"
        f"Sentence 1: {row['sentence1']}\nSentence 2: {row['sentence2']}\nAnswer:"
    )
    return GeneralItem(prompt, _one_of(row["label"], _BINARY, "label"))


def build_cola(row: dict[str, Any]) -> GeneralItem:
    prompt = f"Is this sentence linguistically acceptable?\nSentence: {row['sentence']}\nAnswer: "
    return GeneralItem(prompt, _one_of(row["label"], _BINARY, "label"))


def _rte_prompt(row: dict[str, Any]) -> str:
    return f"{row['sentence1']}\nquestion: {row['sentence2']} True or False?\nanswer:"


def build_rte(row: dict[str, Any]) -> GeneralItem:
    """GLUE RTE: label 0 = entailment → "True" (1), label 1 = not_entailment → "False" (0)."""
    return GeneralItem(_rte_prompt(row), 1 - _one_of(row["label"], _BINARY, "label"))


def build_rte_alphaedit(row: dict[str, Any]) -> GeneralItem:
    """AlphaEdit's reading: the GLUE label itself is the "True" (1) / "False" (0) answer (inverted)."""
    return GeneralItem(_rte_prompt(row), _one_of(row["label"], _BINARY, "label"))


def build_mmlu(row: dict[str, Any]) -> GeneralItem:
    choices = row["choices"]
    if len(choices) != 4 or not all(isinstance(c, str) for c in choices):
        raise RecordProblem(f"field 'choices' must be a list of 4 strings, got {describe(choices)}")
    options = "".join(f"({letter}) {text}\n" for letter, text in zip("ABCD", choices))
    prompt = f"Question: {row['question']}\n{options}Answer:"
    return GeneralItem(prompt, _one_of(row["answer"], {0: 0, 1: 1, 2: 2, 3: 3}, "answer"))


def build_glue_nli(row: dict[str, Any]) -> GeneralItem:
    # "entails the" is the reference's wording; any label but "entailment" counts as 0 there, here it is an error
    label = _one_of(row["label"], {"entailment": 1, "not_entailment": 0}, "label")
    return GeneralItem(f"{row['sentence1']} entails the {row['sentence2']} True or False? Answer:", label)


# --- predictions and scores ----------------------------------------------------------------------------


def _after(marker: str) -> Callable[[str, str], str]:
    """Answer text = prompt + generation after the last ``marker`` (the reference decodes both)."""
    return lambda prompt, continuation: answer_after(prompt + continuation, marker)


def _label_after(marker: str | None, keywords: tuple[tuple[str, int], ...]) -> Callable[[str, str], int]:
    """Label parsed from the text after ``marker``; ``None``: from the generation alone (AlphaEdit MMLU)."""
    if marker is None:
        return lambda prompt, continuation: parse_label(continuation, keywords)
    return lambda prompt, continuation: parse_label(answer_after(prompt + continuation, marker), keywords)


def score_reasoning(preds: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
    return accuracy_metrics([contains_gold(p, g) for p, g in zip(preds, golds)])


def score_open_qa(preds: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
    return accuracy_metrics([soft_exact_match(p, g) for p, g in zip(preds, golds)])


def score_sphere_labels(preds: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
    return label_metrics(golds, preds, exclude_invalid=True)


def score_glue_labels(preds: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
    return label_metrics(golds, preds, exclude_invalid=False)


_TRUE_FALSE = (("true", 1), ("false", 0))
_YES_NO = (("yes", 1), ("no", 0))
_FALSE_TRUE = (("false", 0), ("true", 1))  # AlphaEdit RTE checks "false" first
_MMLU = (("a\n", 0), ("b\n", 1), ("c\n", 2), ("d\n", 3))

# Strict label choices: each label in the casings a model may use (the probabilities are summed).
_CHOOSE_TRUE_FALSE = (("True", 1), ("true", 1), ("False", 0), ("false", 0))
_CHOOSE_YES_NO = (("Yes", 1), ("yes", 1), ("No", 0), ("no", 0))
_CHOOSE_SENTIMENT = (("positive", 1), ("Positive", 1), ("negative", 0), ("Negative", 0))
_CHOOSE_LETTER = (("A", 0), ("B", 1), ("C", 2), ("D", 3))
_GLUE_PAIR = (("sentence1", str), ("sentence2", str), ("label", int))


def _glue(
    name: str,
    title: str,
    fields: tuple[tuple[str, type], ...],
    build: Callable[[dict[str, Any]], GeneralItem],
    predict: Callable[[str, str], Any],
    choices: tuple[tuple[str, int], ...],
) -> GeneralTask:
    """An AlphaEdit glue_eval task: complete bundled set, 5 new tokens, rows from 10 on, invalid = wrong."""
    return GeneralTask(
        name=name,
        title=title,
        bundled=f"alphaedit/{name.removesuffix('_alphaedit').removeprefix('glue_')}.json.gz",
        download=None,
        read=read_json,
        fields=fields,
        build=build,
        max_new_tokens=5,
        predict=predict,
        score=score_glue_labels,
        skip=ALPHAEDIT_RESERVED,
        choices=choices,
    )


_TASK_LIST = (
    GeneralTask(
        name="reasoning",
        title="GSM8K (reasoning)",
        bundled="test-reasoning.jsonl.gz",
        download="rect_reasoning",
        read=read_jsonl,
        fields=(("question", str), ("answer", str)),
        build=build_reasoning,
        max_new_tokens=5,
        predict=_after("Therefore, the answer (arabic numerals) is:"),
        score=score_reasoning,
        strict_correct=final_number_matches,
    ),
    GeneralTask(
        name="nli",
        title="RTE (natural language inference)",
        bundled="test-NLI.tsv.gz",
        download="rect_nli",
        read=read_nli_tsv,
        fields=(("sentence1", str), ("sentence2", str), ("label", str)),
        build=build_nli,
        max_new_tokens=1,
        predict=_label_after("answer:", _TRUE_FALSE),
        score=score_sphere_labels,
        choices=_CHOOSE_TRUE_FALSE,
    ),
    GeneralTask(
        name="open_qa",
        title="Natural Questions (open-domain QA)",
        bundled="test-OpenDomainQA.jsonl.gz",
        download="rect_open_qa",
        read=read_jsonl,
        fields=(("question", str), ("answer", list), ("output", list)),
        build=build_open_qa,
        max_new_tokens=20,
        predict=_after("Answer:"),
        score=score_open_qa,
    ),
    GeneralTask(
        name="closed_qa",
        title="BoolQ (closed-domain QA)",
        bundled="test-ClosedDomainQA.jsonl.gz",
        download="rect_closed_qa",
        read=read_jsonl,
        fields=(("question", str), ("passage", str), ("answer", bool)),
        build=build_closed_qa,
        max_new_tokens=1,
        predict=_label_after("answer: ", _YES_NO),
        score=score_sphere_labels,
        choices=_CHOOSE_YES_NO,
    ),
    _glue(
        "sst2",
        "SST-2 (sentiment)",
        (("sentence", str), ("label", int)),
        build_sst2,
        _label_after("Sentiment :", (("positive", 1), ("negative", 0))),
        _CHOOSE_SENTIMENT,
    ),
    _glue(
        "mrpc", "MRPC (paraphrase)", _GLUE_PAIR, build_mrpc, _label_after("Answer:", _YES_NO), _CHOOSE_YES_NO
    ),
    _glue(
        "cola",
        "CoLA (acceptability)",
        (("sentence", str), ("label", int)),
        build_cola,
        _label_after("Answer:", _YES_NO),
        _CHOOSE_YES_NO,
    ),
    _glue(
        "rte",
        "RTE (GLUE subset)",
        _GLUE_PAIR,
        build_rte,
        _label_after("answer:", _FALSE_TRUE),
        _CHOOSE_TRUE_FALSE,
    ),
    _glue(
        "rte_alphaedit",
        "RTE (GLUE subset, AlphaEdit's inverted labels)",
        _GLUE_PAIR,
        build_rte_alphaedit,
        _label_after("answer:", _FALSE_TRUE),
        _CHOOSE_TRUE_FALSE,
    ),
    _glue(
        "mmlu",
        "MMLU (multiple choice)",
        (("question", str), ("choices", list), ("answer", int)),
        build_mmlu,
        _label_after(None, _MMLU),
        _CHOOSE_LETTER,
    ),
    _glue(
        "glue_nli",
        "RTE train (AlphaEdit's nli set)",
        (("sentence1", str), ("sentence2", str), ("label", str)),
        build_glue_nli,
        _label_after("True or False? Answer:", _TRUE_FALSE),
        _CHOOSE_TRUE_FALSE,
    ),
)
TASKS: dict[str, GeneralTask] = {t.name: t for t in _TASK_LIST}


def check_task_names(names: Sequence[str]) -> None:
    """Raise a one-line ``ValueError`` for names that are not tasks, listing the known ones."""
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(
            f"unknown general-ability task(s) {', '.join(map(repr, unknown))}; known: {', '.join(TASKS)}"
        )


def task_path(task: GeneralTask, source: str) -> Path:
    """The file a task reads from ``source`` (``bundled`` or ``full``)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "full" and task.download is not None:
        return DEFAULT_DEST / FILES[task.download]
    return BUNDLED_DIR / task.bundled


def load_rows(task: GeneralTask, path: Path) -> list[GeneralItem]:
    """Every row of ``path`` as a checked item; a bad row is one ``ValueError`` naming file and row."""
    if not path.is_file():
        hint = (
            f"run `python scripts/download_data.py {task.download}`"
            if task.download and path.is_relative_to(DEFAULT_DEST)
            else "it is bundled with the repository; restore it with `git checkout data/general_ability`"
        )
        raise FileNotFoundError(f"general-ability task {task.name!r}: {path} not found; {hint}")
    verify_sidecar(path)
    items = []
    for i, row in enumerate(task.read(path)):
        try:
            if not isinstance(row, dict):
                raise RecordProblem(f"row is {describe(row)}, not an object")
            for key, kind in task.fields:
                get_field(row, key, kind=kind)
            items.append(task.build(row))
        except RecordProblem as problem:
            raise ValueError(f"{path}: malformed {task.name} row {i}: {problem}") from None
    return items


def load_items(task: GeneralTask, source: str, n_items: int) -> tuple[list[GeneralItem], str]:
    """The items a task tests (``n_items`` after the reference's reserved rows) and a note saying
    which file and rows they are."""
    path = task_path(task, source)
    rows = load_rows(task, path)
    items = rows[task.skip : task.skip + n_items]
    if not items:
        raise ValueError(f"{path}: no {task.name} items after the {task.skip} reserved rows")
    where = "bundled" if path.is_relative_to(BUNDLED_DIR) else "downloaded"
    note = f"{task.title}: {len(items)} items (rows {task.skip}..{task.skip + len(items) - 1}) of {where} {path.name}"
    if len(items) < n_items:
        note += f"; {n_items} were asked for, the file has {len(rows) - task.skip}"
    if where == "bundled" and task.download is not None:
        note += f"; bundled sample of the first {len(rows)} rows: not comparable with the paper's 500"
    elif task.download is None:
        note += " (the complete AlphaEdit set)"
    return items, note
