"""Fluency and consistency: hand-computed n-gram entropy and TF-IDF cosine, the canonical files,
the labelled substitute, and the evaluator on a tiny model."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from sphere.data.records import EditRecord
from sphere.evaluation.config import EvalConfig, GenerationConfig
from sphere.evaluation.generation import GenerationQuality
from sphere.evaluation.registry import EvalView
from sphere.evaluation.textmetrics import entropy_of_ngrams, ngram_entropy, tfidf_similarity, word_tokenize


def test_ngram_entropy_by_hand():
    # "a b a b": bigrams ab, ba, ab → f = 2/3, 1/3; trigrams aba, bab → f = 1/2, 1/2
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    h3 = 1.0
    assert entropy_of_ngrams(["a", "b", "a", "b"], 2) == pytest.approx(h2)
    assert ngram_entropy(["a b a b"]) == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 2)
    # a repeated word has no n-gram diversity: the degenerate text a collapsed model writes
    assert ngram_entropy(["the the the the the"]) == 0.0
    assert ngram_entropy(["a b a b", "the the the"]) == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 4)
    assert math.isnan(ngram_entropy([]))


def test_word_tokenize_splits_sentences_and_punctuation():
    assert word_tokenize("Hello, world. It's fine.") == ["Hello", ",", "world", ".", "It", "'s", "fine", "."]


def test_tfidf_cosine_by_hand():
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocab = {"paris": 0, "france": 1, "city": 2}
    idf = np.array([2.0, 1.0, 3.0])
    vec = TfidfVectorizer(vocabulary=vocab)
    vec.idf_ = idf
    # a: paris×2, city×1 → (4, 0, 3); b: france, city → (0, 1, 3); cosine = 9 / (5 · √10)
    assert tfidf_similarity("Paris paris city", "France city", vec) == pytest.approx(9 / (5 * math.sqrt(10)))
    assert tfidf_similarity("nothing known", "paris", vec) == 0.0


def _record(case_id=0, **kw) -> EditRecord:
    base = dict(
        case_id=case_id,
        kind="counterfact",
        prompt="The mother tongue of {} is",
        subject="Danielle Darrieux",
        target_new="English",
        target_true="French",
        paraphrase_prompts=("Danielle Darrieux speaks",),
    )
    return EditRecord(**{**base, **kw})


def _view(model, tok, records):
    return EvalView(model, tok, None, [], records, 0)  # type: ignore[arg-type]


def _cfg(**kw) -> SimpleNamespace:
    return SimpleNamespace(generation=GenerationConfig(**{"max_length": 24, "batch_size": 4, **kw}))


def test_easyedit_records_skip_with_a_note(tiny_llama):
    model, tok = tiny_llama
    ev = GenerationQuality(_cfg())
    assert ev("final", _view(model, tok, [_record()])) == {}
    assert "no CounterFact records with generation_prompts" in ev.notes["fluency"]


def test_proxy_consistency_is_labelled_and_computed(tiny_llama):
    model, tok = tiny_llama
    ev = GenerationQuality(_cfg(prompts="edit_prompts", top_k=0))
    records = [_record(0), _record(1, target_new="Zzyzx-not-an-article")]
    out = ev("final", _view(model, tok, records))
    assert "consistency" not in out and 0.0 <= out["consistency_proxy"] <= 100.0
    assert out["consistency_proxy_n"] == 1.0  # "English" has an article ("English language"), the other not
    assert out["n_generation_records"] == 2.0 and out["fluency"] >= 0.0
    assert "NOT the paper's consistency" in ev.notes["consistency_proxy"]
    assert "rewrite + paraphrase prompts" in ev.notes["fluency"]
    # the number is the cosine of what was generated against the article, recomputed here
    judge = ev._consistency
    text = " ".join(ev.last_texts[0])
    want = 100 * tfidf_similarity(text, judge.reference(records[0]), judge.vectorizer)
    assert out["consistency_proxy"] == pytest.approx(want)
    again = GenerationQuality(_cfg(prompts="edit_prompts", top_k=0))("final", _view(model, tok, records))
    assert again["fluency"] == out["fluency"]  # greedy and seeded: the same texts


def test_canonical_consistency_from_the_reference_files(tiny_llama, tmp_path):
    model, tok = tiny_llama
    snippets = [
        {
            "relation_id": "P103",
            "target_id": "Q1860",
            "samples": [{"name": "X", "text": "English speaking people"}],
        }
    ]
    (tmp_path / "attribute_snippets.json").write_text(json.dumps(snippets))
    (tmp_path / "tfidf_vocab.json").write_text(json.dumps({"english": 0, "people": 1, "speaking": 2}))
    np.save(tmp_path / "idf.npy", np.array([1.0, 2.0, 3.0]))
    cfg = _cfg(snippets=str(tmp_path / "attribute_snippets.json"), tfidf=str(tmp_path), top_k=0)
    ev = GenerationQuality(cfg)
    rec = _record(
        relation_id="P103", target_new_id="Q1860", generation_prompts=("Danielle Darrieux's language is",)
    )
    out = ev("final", _view(model, tok, [rec]))
    assert "consistency_proxy" not in out and 0.0 <= out["consistency"] <= 100.0
    judge = ev._consistency
    assert judge.reference(rec) == "English speaking people"
    want = 100 * tfidf_similarity(" ".join(ev.last_texts[0]), "English speaking people", judge.vectorizer)
    assert out["consistency"] == pytest.approx(want)
    assert ev.notes["consistency"].startswith("canonical")


def test_generation_config_checks():
    with pytest.raises(ValueError, match="eval.generation.prompts"):
        GenerationConfig(prompts="nope")
    assert EvalConfig().generation.top_k == 5  # the reference samples from the top 5
