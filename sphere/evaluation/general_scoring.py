"""Pure scoring functions of the general-ability tasks (reference spec §5 and AlphaEdit's glue_eval).

Everything here works on strings and label lists, never on a model, so each rule can be checked by
hand. The rules reproduce the reference's answer parsing *including its quirks* (substring matching
of yes/no/true/false, gold-number substring for GSM8K), because the point of the numbers is to be
comparable with the papers; docs/general_ability.md lists every quirk and whether it is kept.

Beside them, the *strict* rules (reported as ``general/<task>_strict``): the final number of a
GSM8K answer must equal the gold number, and a label task's answer is the label whose words are
most likely after the prompt (``pick_label``). On small models the reference's rules measure
mostly their own quirks ("18" inside "118"; every one-token RTE answer invalid); the strict ones
move with the model's ability (docs/general_ability.md, "Strict scoring").
"""

from __future__ import annotations

import math
import re
import string
import warnings
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from sklearn.metrics import f1_score, matthews_corrcoef

from sphere.evaluation import standard_error

INVALID = -1
"""The prediction of an answer that names none of the task's options (the reference's −1)."""

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def answer_after(text: str, marker: str) -> str:
    """The text after the **last** ``marker`` in ``text``, stripped (spec §5: every task reads its
    answer this way from prompt + generation). Without the marker, the whole text, stripped, as
    ``str.split(marker)[-1]`` gives in the reference."""
    return text.rsplit(marker, 1)[-1].strip()


# --- reasoning (GSM8K) ------------------------------------------------------------------------------


def gsm8k_parts(answer: str) -> tuple[str, str]:
    """(rationale, gold number) of a GSM8K worked solution ``"... #### 18"`` (spec §5).

    The rationale keeps its trailing newline, as the reference's prompt does. Raises ``ValueError``
    unless ``"#### "`` occurs exactly once (the reference would take the second piece silently).
    """
    pieces = answer.split("#### ")
    if len(pieces) != 2:
        raise ValueError(f"expected exactly one '#### ' before the final answer, found {len(pieces) - 1}")
    return pieces[0], pieces[1]


def contains_gold(answer: str, gold: str) -> bool:
    """GSM8K correctness (spec §5): the gold string is a *substring* of the answer text.

    Quirks kept: "18" counts as correct inside "118" or "18.5", and a gold written with thousands
    separators ("1,600") is missed by an answer "1600"."""
    return gold in answer


# A number as written in an answer: optional sign, digits with thousands commas only *between* digits
# (so "18, and" is 18), optional decimals (so "18." at a sentence end is 18).
_NUMBER = re.compile(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def final_number(text: str) -> Decimal | None:
    """The last number written in ``text`` ("The answer is 1,600." → 1600), or None if there is none."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only matches parseable numbers
        return None


def final_number_matches(answer: str, gold: str) -> bool:
    """Strict GSM8K correctness: the answer's final number equals the gold number, numerically.

    Unlike ``contains_gold``, "118" is not "18", "18.5" is not 18, and "1600" does match a gold
    "1,600"; an answer without a number is wrong."""
    value, target = final_number(answer), final_number(gold)
    return value is not None and target is not None and value == target


# --- open-domain QA (NQ) ---------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation (spec §5): lowercase, drop ASCII punctuation, drop the words
    a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def soft_exact_match(answer: str, golds: Sequence[str]) -> bool:
    """Open-QA correctness (spec §5): some contiguous run of words of the normalised answer equals a
    normalised gold answer. (The reference also tests the first and the last word separately; both
    are such runs, so the rule is the same.) An answer that normalises to nothing is wrong."""
    targets = {normalize_answer(g) for g in golds} - {""}
    words = normalize_answer(answer).split()
    return any(
        " ".join(words[i:j]) in targets for i in range(len(words)) for j in range(i + 1, len(words) + 1)
    )


# --- label tasks (NLI, BoolQ, GLUE) ----------------------------------------------------------------


def parse_label(answer: str, keywords: Sequence[tuple[str, int]]) -> int:
    """The label of the first keyword that occurs in the lowercased answer, else ``INVALID``.

    This is the reference's substring rule (spec §5, AlphaEdit glue_eval), order included: for BoolQ
    ``(("yes", 1), ("no", 0))`` makes "not", "know" or "none" a "no"; AlphaEdit's RTE checks "false"
    before "true", SPHERE's NLI "true" before "false"."""
    lower = answer.lower()
    for keyword, label in keywords:
        if keyword in lower:
            return label
    return INVALID


def pick_label(logprobs: Sequence[float], choices: Sequence[tuple[str, int]]) -> int:
    """The label of a multiple-choice answer read from likelihoods instead of a generation.

    ``logprobs[i]`` is the total log-probability of ``choices[i]``'s text after the prompt; a label
    with several surface forms ("True", "true") gets the log of their summed probabilities. The
    label with the highest score wins; an exact tie goes to the label listed first. Never
    ``INVALID``: every item gets one of the task's labels."""
    if len(logprobs) != len(choices) or not choices:
        raise ValueError(f"{len(logprobs)} scores for {len(choices)} choices")
    by_label: dict[int, list[float]] = {}
    for (_, label), logp in zip(choices, logprobs):
        by_label.setdefault(label, []).append(logp)

    def logsumexp(values: list[float]) -> float:
        top = max(values)
        return top if math.isinf(top) else top + math.log(sum(math.exp(v - top) for v in values))

    scores = {label: logsumexp(values) for label, values in by_label.items()}
    return max(scores, key=lambda label: scores[label])  # dict order = first listed, so ties go there


def weighted_f1(golds: Sequence[int], preds: Sequence[int]) -> float:
    """sklearn's support-weighted F1 over the classes, with ``INVALID`` predictions kept as their own
    class (as the reference passes them): an invalid answer lowers the recall of its gold class."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class with no support has weight 0; its warning is noise
        return float(f1_score(list(golds), list(preds), average="weighted", zero_division=0))


def mcc(golds: Sequence[int], preds: Sequence[int]) -> float:
    """Matthews correlation (multi-class form when ``INVALID`` or >2 labels occur); 0 when undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(matthews_corrcoef(list(golds), list(preds)))


def accuracy_metrics(correct: Sequence[bool]) -> dict[str, float]:
    """``acc`` (% correct) and ``se`` (its standard error over items, %; NaN below two items)."""
    values = [float(c) for c in correct]
    acc = 100.0 * sum(values) / len(values) if values else 0.0
    return {"acc": acc, "se": 100.0 * standard_error(values)}


def strict_metrics(scores: dict[str, float]) -> dict[str, float]:
    """A scorer's result under the strict names: ``acc`` → ``strict``, ``se`` → ``strict_se``, ...
    (``general/<task>_strict``, ``general/<task>_strict_se``, ...). ``invalid`` is dropped: a
    likelihood choice is never invalid."""
    return {
        ("strict" if key == "acc" else f"strict_{key}"): value
        for key, value in scores.items()
        if key != "invalid"
    }


def label_metrics(golds: Sequence[int], preds: Sequence[int], *, exclude_invalid: bool) -> dict[str, float]:
    """Accuracy, its standard error, weighted F1 (%), MCC and the invalid rate (%) of a label task.

    ``exclude_invalid``: SPHERE/RECT's NLI and BoolQ divide by correct + incorrect, leaving invalid
    answers out of the accuracy (spec §5; 0 when every answer is invalid); AlphaEdit's glue_eval
    counts them as wrong. F1 and MCC always see all items, invalid ones as class ``INVALID``.
    """
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    scored = [(g, p) for g, p in zip(golds, preds) if not (exclude_invalid and p == INVALID)]
    out = accuracy_metrics([g == p for g, p in scored])
    out["f1"] = 100.0 * weighted_f1(golds, preds) if golds else 0.0
    out["mcc"] = mcc(golds, preds) if golds else 0.0
    out["invalid"] = 100.0 * sum(p == INVALID for p in preds) / len(preds) if preds else 0.0
    return out
