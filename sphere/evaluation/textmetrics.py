"""Text statistics of generated text (reference §4.1): n-gram entropy (fluency) and TF-IDF cosine
similarity (consistency). Pure functions: no model, no files.

Tokenisation: the reference calls ``nltk.word_tokenize``, which needs NLTK's ``punkt`` sentence
model, a download that is not possible offline. ``word_tokenize`` is punkt's sentence split followed
by ``NLTKWordTokenizer`` on each sentence; here the split is punkt when it is installed and a
regular expression after ``.``, ``!`` or ``?`` followed by whitespace otherwise (the difference: a
few abbreviations such as "Dr." end a sentence), then the same ``NLTKWordTokenizer``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1)
def uses_punkt() -> bool:
    """Whether NLTK's punkt sentence model is installed (else the regular-expression split)."""
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except (LookupError, ImportError, OSError):
        return False


def _sentence_splitter():
    if uses_punkt():
        import nltk

        return nltk.sent_tokenize
    return lambda text: [s for s in _SENTENCE_END.split(text) if s]


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` up to the sentence splitter (see the module docstring)."""
    from nltk.tokenize import NLTKWordTokenizer

    tok = NLTKWordTokenizer()
    return [w for sentence in _sentence_splitter()(text) for w in tok.tokenize(sentence)]


def entropy_of_ngrams(tokens: Sequence[str], n: int) -> float:
    """H = −Σ f log₂ f over the relative frequencies f of the text's n-grams (0 for no n-gram)."""
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0


def ngram_entropy(
    texts: Sequence[str], ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)
) -> float:
    """The reference's fluency of a set of generations: per text, the arithmetic mean of the weighted
    bigram and trigram entropies (⅔·H₂, 4⁄3·H₃); then the mean over texts. NaN for no text."""
    if not texts:
        return math.nan
    scores = []
    for text in texts:
        tokens = word_tokenize(text)
        scores.append(sum(w * entropy_of_ngrams(tokens, n) for n, w in zip(ns, weights)) / len(ns))
    return sum(scores) / len(scores)


def tfidf_similarity(text_a: str, text_b: str, vectorizer) -> float:
    """Cosine of the TF-IDF vectors of two texts under a fitted ``TfidfVectorizer`` (0 when either
    text has no word of the vocabulary)."""
    m = vectorizer.transform([text_a, text_b])
    a, b = m[0], m[1]
    na, nb = math.sqrt(a.multiply(a).sum()), math.sqrt(b.multiply(b).sum())
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a.multiply(b).sum() / (na * nb))
