"""Text for key statistics: the bundled Wikipedia sample, a pinned Wikipedia snapshot, or a file.

``corpus`` ids: ``bundled`` (data/corpus/wiki_sample.jsonl.gz, for CPU runs and tests),
``wikipedia`` (HF ``wikimedia/wikipedia`` ``20231101.en``, streamed and shuffled with the run seed;
the reference's ``wikipedia``/``20200501.en`` loader no longer exists), ``hf:<name>[:<config>]``,
or a path to a .txt (one text per line) or .jsonl file (a "text" field), optionally gzipped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "corpus" / "wiki_sample.jsonl.gz"
WIKIPEDIA = ("wikimedia/wikipedia", "20231101.en")


def _read_file(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    jsonl = ".jsonl" in path.suffixes or ".json" in path.suffixes
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["text"] if jsonl else line.rstrip("\n")


def _hf(name: str, config: str | None, seed: int) -> Iterator[str]:
    from datasets import load_dataset

    ds = load_dataset(name, config, split="train", streaming=True).shuffle(seed=seed, buffer_size=10_000)
    for row in ds:
        yield row["text"]


def corpus_texts(corpus: str, seed: int = 0) -> Iterator[str]:
    """Iterate over the texts of ``corpus`` (see module docstring for the ids)."""
    if corpus == "bundled":
        return _read_file(BUNDLED)
    if corpus == "wikipedia":
        return _hf(*WIKIPEDIA, seed)
    if corpus.startswith("hf:"):
        name, _, config = corpus[3:].partition(":")
        return _hf(name, config or None, seed)
    path = Path(corpus)
    if not path.exists():
        raise FileNotFoundError(
            f"model.stats.corpus={corpus!r} is neither bundled, wikipedia, hf:<name> nor an existing file"
        )
    return _read_file(path)
