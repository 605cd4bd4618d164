"""Pure scoring functions of the general-ability tasks (reference spec §5 and AlphaEdit's glue_eval).

Everything here works on strings and label lists, never on a model, so each rule can be checked by
hand. The rules reproduce the reference's answer parsing *including its quirks* (substring matching
of yes/no/true/false, gold-number substring for GSM8K), because the point of the numbers is to be
comparable with the papers; docs/general_ability.md lists every quirk and whether it is kept.
"""

from __future__ import annotations

import re
import string
import warnings
from collections.abc import Sequence

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
