"""CounterFact generation test as an evaluator: fluency and consistency (reference §4.1).

For every ``eval.generation.every_case``-th CounterFact record (the reference: every 100th case) the
model writes a continuation of each generation prompt (top-k 5 sampling, 100 tokens in all, as the
reference; seeded). Fluency is the n-gram entropy of those texts; consistency the TF-IDF cosine
between them and the Wikipedia snippets about subjects that have the new object.

What is canonical and what is not, and how it is labelled:

- ``consistency`` needs ROME's ``attribute_snippets.json``, ``idf.npy`` and ``tfidf_vocab.json``
  (``python scripts/download_data.py attribute_snippets idf tfidf_vocab``) and records in ROME's
  schema (relation id and the new object's id key the snippets).
- Otherwise ``consistency_proxy`` is reported instead, never under the paper's name: the reference
  text is the lead section of the bundled Wikipedia sample whose title is the new object (or starts
  with it and a space: "French" → "French language"), TF-IDF refitted with scikit-learn on that
  sample. Records whose object has no article are left out (``consistency_proxy_n`` counts the rest).
- ``eval.generation.prompts=edit_prompts`` generates from the rewrite and paraphrase prompts when
  records have no ``generation_prompts`` (the EasyEdit schema); the note says so.
Every departure is written to ``notes`` (summary.json, the report's footnotes).
"""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from sphere.evaluation.catalogue import Metric
from sphere.evaluation.decoding import generate_texts
from sphere.evaluation.registry import EvalView, Moment, register_evaluator
from sphere.evaluation.textmetrics import ngram_entropy, tfidf_similarity, uses_punkt

CANONICAL = ("attribute_snippets.json", "idf.npy", "tfidf_vocab.json")


def _mean_se(values: list[float]) -> tuple[float, float]:
    from sphere.evaluation import standard_error

    return (sum(values) / len(values) if values else math.nan), standard_error(values)


def canonical_files(cfg) -> dict[str, Path] | None:
    """The three canonical files if all are present (``auto``: data/full/), else None."""
    from sphere.data.download import DEFAULT_DEST

    snippets = DEFAULT_DEST / CANONICAL[0] if cfg.snippets == "auto" else Path(cfg.snippets)
    tfidf_dir = DEFAULT_DEST if cfg.tfidf == "auto" else Path(cfg.tfidf)
    files = {"snippets": snippets, "idf": tfidf_dir / CANONICAL[1], "vocab": tfidf_dir / CANONICAL[2]}
    return files if all(p.is_file() for p in files.values()) else None


class CanonicalConsistency:
    """Snippets keyed by (relation id, object id) and the reference's TF-IDF vectorizer."""

    key = "consistency"

    def __init__(self, files: dict[str, Path]) -> None:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.snippets: dict[tuple[str, str], list[str]] = defaultdict(list)
        for el in json.loads(files["snippets"].read_text()):
            for sample in el["samples"]:
                self.snippets[(el["relation_id"], el["target_id"])].append(sample["text"])
        self.vectorizer = TfidfVectorizer(vocabulary=json.loads(files["vocab"].read_text()))
        self.vectorizer.idf_ = np.load(files["idf"], allow_pickle=False)
        self.note = f"canonical: TF-IDF of ROME's idf.npy/tfidf_vocab.json against attribute_snippets ({files['snippets']})"

    def reference(self, record) -> str | None:
        texts = self.snippets.get((record.relation_id, record.target_new_id))
        return " ".join(texts) if texts else None


class ProxyConsistency:
    """The labelled substitute: the Wikipedia lead of the new object's article (bundled sample)."""

    key = "consistency_proxy"

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        from sphere.data import SAMPLES

        path = SAMPLES["wiki-sample"]
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        self.articles = [(r["title"], r["text"]) for r in rows]
        self.by_title = {t.lower(): text for t, text in reversed(self.articles)}  # first wins
        self.vectorizer = TfidfVectorizer().fit([text for _, text in self.articles])
        self.note = (
            "NOT the paper's consistency (attribute_snippets/idf.npy/tfidf_vocab.json absent or records "
            "without relation/object ids): TF-IDF cosine to the Wikipedia lead whose title is the new "
            f"object (or starts with it + ' '), IDF refitted on {path.name}"
        )

    def reference(self, record) -> str | None:
        target = record.target_new.strip().lower()
        if target in self.by_title:
            return self.by_title[target]
        for title, text in self.articles:
            if title.lower().startswith(target + " "):
                return text
        return None


# Scores ×100 as the paper prints them (fluency ~600), not percentages.
METRICS = [
    Metric("fluency", "Fluency", unit="n-gram entropy ×100", order=13, curve=True),
    Metric("consistency", "Consistency", unit="TF-IDF cosine ×100", order=14, curve=True),
    Metric("consistency_proxy", "Consistency (proxy)", unit="TF-IDF cosine ×100", order=15, curve=True),
]


@register_evaluator("generation", metrics=METRICS)
class GenerationQuality:
    """Fluency (×100 n-gram entropy) and consistency (×100 TF-IDF cosine) with standard errors."""

    moments = frozenset({"pre", "scheduled", "final"})

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg.generation
        self.notes: dict[str, str] = {}
        self._consistency: CanonicalConsistency | ProxyConsistency | None = None
        self.last_texts: dict[int, list[str]] = {}

    def _prompts(self, record) -> list[str]:
        if self.cfg.prompts == "edit_prompts":
            return [record.prompt.format(record.subject), *record.paraphrase_prompts]
        return list(record.generation_prompts)

    def consistency(self, records) -> CanonicalConsistency | ProxyConsistency:
        if self._consistency is None:
            files = canonical_files(self.cfg)
            has_ids = all(r.relation_id and r.target_new_id for r in records)
            self._consistency = CanonicalConsistency(files) if files and has_ids else ProxyConsistency()
        return self._consistency

    def __call__(self, moment: Moment, view: EvalView) -> dict[str, float]:
        every = self.cfg.every_case
        records = [r for i, r in enumerate(view.records) if r.kind == "counterfact" and i % every == 0]
        records = [r for r in records if self._prompts(r)]
        if not records:
            self.notes["fluency"] = (
                "skipped: no CounterFact records with generation_prompts (EasyEdit schema); set "
                "eval.generation.prompts=edit_prompts to generate from the rewrite and paraphrase prompts"
            )
            return {}
        prompts = [(r.case_id, p) for r in records for p in self._prompts(r)]
        texts = generate_texts(
            view.model,
            view.tok,
            [p for _, p in prompts],
            max_new_tokens=self.cfg.max_length,
            max_length=self.cfg.max_length,
            batch_size=self.cfg.batch_size,
            top_k=self.cfg.top_k,
            seed=self.cfg.seed,
            desc=f"generation ({moment}, {len(records)} records)",
        )
        by_case: dict[int, list[str]] = defaultdict(list)
        for (case, _), text in zip(prompts, texts):
            by_case[case].append(text)
        self.last_texts = dict(by_case)
        fluency = [100.0 * ngram_entropy(by_case[r.case_id]) for r in records]
        judge = self.consistency(records)
        scores = []
        for r in records:
            ref = judge.reference(r)
            if ref is not None:
                scores.append(100.0 * tfidf_similarity(" ".join(by_case[r.case_id]), ref, judge.vectorizer))
        out: dict[str, float] = {"n_generation_records": float(len(records))}
        out["fluency"], out["fluency_se"] = _mean_se(fluency)
        out[judge.key], out[f"{judge.key}_se"] = _mean_se(scores)
        out[f"{judge.key}_n"] = float(len(scores))
        sampling = f"top-{self.cfg.top_k} sampling" if self.cfg.top_k else "greedy decoding"
        source = (
            "rewrite + paraphrase prompts (not the dataset's generation_prompts)"
            if self.cfg.prompts == "edit_prompts"
            else "generation_prompts"
        )
        tokenizer = (
            "nltk punkt + NLTKWordTokenizer"
            if uses_punkt()
            else "regex sentence split + NLTKWordTokenizer (punkt not installed)"
        )
        self.notes["fluency"] = f"{source}, {sampling}, {self.cfg.max_length} tokens in all; {tokenizer}"
        self.notes[judge.key] = judge.note
        return out

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
