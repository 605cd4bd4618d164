"""Text for key statistics: the bundled Wikipedia sample, a Wikipedia snapshot, a dataset, or a file.

``corpus`` ids (``model.covariance.corpus``):

- ``bundled``: data/corpus/wiki_sample.jsonl.gz (for CPU runs and tests), read in file order.
- ``wikipedia``: HF ``wikimedia/wikipedia`` config ``20231101.en`` (the reference's
  ``wikipedia``/``20200501.en`` loader no longer exists), drawn across the whole snapshot (below).
- ``hf:<name>[:<config>][@<revision>]``: the ``train`` parquet shards of a Hub dataset, drawn the
  same way; a dataset without parquet shards is streamed instead (with a warning: not uniform).
- a directory of ``.parquet`` / ``.jsonl`` / ``.jsonl.gz`` shards (e.g. a local copy of a Hub
  snapshot) or a single ``.parquet`` file: drawn the same way.
- a path to a .txt (one text per line) or .jsonl file (a "text" field), optionally gzipped: the
  first n non-empty texts in file order.

How a sharded corpus is sampled, and why. Streaming a dataset with ``.shuffle(seed,
buffer_size=10_000)`` only shuffles a window of neighbouring rows: the texts come from the first one
or two shards (for Wikipedia, articles with neighbouring ids), not from the whole snapshot. Instead
``draw_from_shards`` draws a two-stage random sample with ``random.Random(seed)``:

1. The shard files are sorted by name and put in a seeded random order. The first
   ``k = min(#shards, ceil(n / rows_per_shard))`` shards (``rows_per_shard`` = 64 by default) are
   planned, so each contributes about ``n / k`` texts: at most ``rows_per_shard`` when the snapshot has
   enough shards, and every shard when it has fewer (``n / #shards`` each). The bound keeps a small
   draw from downloading and opening every shard of a large snapshot, while still spreading it.
2. Within a shard, row indices are drawn uniformly at random without replacement (a seeded lazy
   Fisher-Yates shuffle), and empty or whitespace-only texts are skipped. Each visited shard gives
   ``ceil(remaining / planned shards left)`` texts, so a short shard's deficit moves to the next
   ones; if the plan falls short (tiny or mostly empty shards), the following shards in the same
   order (cycling back to partly used ones) give whatever is still needed.

With shards of equal size every row has the same chance n/N of being drawn; the same shards, n and
seed always give the same texts in the same order. Only the chosen shards are downloaded and only
one is read at a time (a parquet shard one row group at a time).

What was drawn is recorded in ``CorpusDraw.provenance`` (JSON-serialisable): corpus id, seed, n,
source (Hub repo, config and the commit it resolved to, or the directory), and per visited shard its
file name, row count, and the row indices of the texts returned (and of the empty ones skipped). It
is filled in as the texts are taken, so it is complete once n texts have been taken or the iterator
is exhausted; the statistics cache stores it in its metadata.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sphere.data.shards import (  # noqa: F401 - re-exported: the corpus API is one module
    ROWS_PER_SHARD,
    SHARD_SUFFIXES,
    TEXT,
    CorpusDraw,
    draw_from_shards,
)
from sphere.paths import bundled_data_dir, display_path

log = logging.getLogger(__name__)

BUNDLED = bundled_data_dir() / "corpus" / "wiki_sample.jsonl.gz"
WIKIPEDIA = ("wikimedia/wikipedia", "20231101.en")
# ``corpus_texts`` callers do not say how many texts they take; a sharded draw needs n up front.
DEFAULT_DRAW = 100_000
__all__ = ["CorpusDraw", "corpus_texts", "depends_on_seed", "draw_corpus", "draw_from_shards"]


def corpus_texts(corpus: str, seed: int = 0, n_samples: int | None = None) -> Iterator[str]:
    """The texts of ``corpus`` (see the module docstring for the ids); ``draw_corpus`` also says
    how they were drawn."""
    return draw_corpus(corpus, seed, n_samples).texts


def draw_corpus(corpus: str, seed: int, n_samples: int | None) -> CorpusDraw:
    """``n_samples`` texts of ``corpus`` and their provenance.

    ``n_samples=None``: every text of a file; ``DEFAULT_DRAW`` texts of a sharded corpus (whose
    draw must know n to spread it over the shards).
    """
    if n_samples is not None and n_samples < 1:
        raise ValueError(f"n_samples={n_samples} must be >= 1")
    sharded_n = n_samples if n_samples is not None else DEFAULT_DRAW
    if corpus == "bundled":
        return _file_draw(corpus, BUNDLED, seed, n_samples)
    if corpus == "wikipedia":
        return _hub_draw(corpus, *WIKIPEDIA, None, seed, sharded_n)
    if corpus.startswith("hf:"):
        spec, _, revision = corpus[3:].partition("@")
        name, _, config = spec.partition(":")
        return _hub_draw(corpus, name, config or None, revision or None, seed, sharded_n)
    path = Path(corpus)
    if path.is_dir():
        return _local_shards_draw(corpus, path, seed, sharded_n)
    if path.is_file() and path.name.endswith(".parquet"):
        return draw_from_shards([path], sharded_n, seed, corpus=corpus)
    if path.is_file():
        return _file_draw(corpus, path, seed, n_samples)
    raise FileNotFoundError(
        f"model.covariance.corpus={corpus!r} is neither bundled, wikipedia, hf:<name>, a directory of shards "
        "nor an existing file"
    )


# --- files read in order --------------------------------------------------------------------------


def _read_file(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    jsonl = ".jsonl" in path.suffixes or ".json" in path.suffixes
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["text"] if jsonl else line.rstrip("\n")


def _file_draw(corpus: str, path: Path, seed: int, n_samples: int | None) -> CorpusDraw:
    """The first ``n_samples`` non-empty texts of a file, in file order (the seed plays no part)."""
    texts = (t for t in _read_file(path) if t.strip())
    what = "all non-empty texts" if n_samples is None else f"first {n_samples} non-empty texts"
    provenance = {
        "corpus": corpus,
        "seed": seed,
        "n_samples": n_samples,
        "method": "file order",
        "path": _display_path(path),
        "description": f"{what} in file order",
    }
    return CorpusDraw(itertools.islice(texts, n_samples), provenance)


def _display_path(path: Path) -> str:
    """Paths inside the repository relative to it (provenance is compared across machines)."""
    return display_path(path)


def _local_shards_draw(corpus: str, root: Path, seed: int, n_samples: int) -> CorpusDraw:
    """A directory's shard files (recursively), named relative to it so provenance does not depend
    on where the copy lives."""
    names = [
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.endswith(SHARD_SUFFIXES)
    ]
    if not names:
        raise FileNotFoundError(
            f"model.covariance.corpus={corpus!r} is a directory without {', '.join(SHARD_SUFFIXES)} shards"
        )
    return draw_from_shards(
        names,
        n_samples,
        seed,
        open_shard=lambda name: root / name,
        corpus=corpus,
        source={"directory": str(root.resolve())},
    )


# --- Hugging Face Hub -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HubShards:
    """A Hub dataset's train shards at one commit."""

    repo: str
    config: str | None
    revision: str  # the commit sha the branch resolved to
    files: list[str]


_TRAIN = re.compile(r"(^|[/_.-])train([/_.-]|$)")


def resolve_hub_shards(name: str, config: str | None, revision: str | None = None) -> HubShards | None:
    """The train parquet shards of Hub dataset ``name`` (in ``config``'s folder when given), pinned to
    the commit that ``revision`` (default ``main``) resolves to; then those of the Hub's automatic
    parquet conversion (``refs/convert/parquet``); None when neither has any."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    api = HfApi()
    for rev in (revision or "main", "refs/convert/parquet"):
        try:
            info = api.dataset_info(name, revision=rev)
        except RevisionNotFoundError:
            continue
        files = sorted(s.rfilename for s in info.siblings or () if _is_train_parquet(s.rfilename, config))
        if files:
            _check_one_config(name, config, files)
            if any("partial" in f for f in files):
                log.warning("%s: the Hub's parquet conversion covers only part of the dataset", name)
            assert info.sha is not None
            return HubShards(name, config, info.sha, files)
    return None


def _is_train_parquet(path: str, config: str | None) -> bool:
    folders = path.split("/")[:-1]
    return path.endswith(".parquet") and bool(_TRAIN.search(path)) and (config is None or config in folders)


def _check_one_config(name: str, config: str | None, files: Iterable[str]) -> None:
    """Without a config, refuse to mix the shards of several (e.g. every Wikipedia language)."""
    folders = sorted({f.rpartition("/")[0] for f in files})
    if config is None and len(folders) > 1:
        shown = ", ".join(folders[:3])
        raise ValueError(
            f"model.covariance.corpus: {name} has train shards in {len(folders)} folders ({shown}, ...); "
            f"name a config: hf:{name}:<config>"
        )


def _hub_draw(
    corpus: str, name: str, config: str | None, revision: str | None, seed: int, n_samples: int
) -> CorpusDraw:
    """A sharded draw over the dataset's parquet shards, downloading only the shards visited."""
    shards = resolve_hub_shards(name, config, revision)
    if shards is None:
        return _streamed_draw(corpus, name, config, seed, n_samples)
    from huggingface_hub import hf_hub_download

    def download(filename: str) -> Path:
        return Path(hf_hub_download(name, filename, repo_type="dataset", revision=shards.revision))

    source = {"repo": name, "config": config, "revision": shards.revision}
    return draw_from_shards(shards.files, n_samples, seed, open_shard=download, corpus=corpus, source=source)


def _streamed_draw(corpus: str, name: str, config: str | None, seed: int, n_samples: int) -> CorpusDraw:
    """Fallback for datasets without parquet shards: a streamed shuffle buffer, which is NOT a
    uniform sample (neighbouring rows of the first shards)."""
    from datasets import load_dataset

    buffer = 10_000
    log.warning(
        "covariance corpus %s has no parquet shards on the Hub: streaming it with a %d-row shuffle buffer, "
        "which is not a uniform sample of the dataset",
        corpus,
        buffer,
    )
    ds = load_dataset(name, config, split="train", streaming=True).shuffle(seed=seed, buffer_size=buffer)
    texts = (t for t in (row[TEXT] for row in ds) if t and t.strip())
    provenance = {
        "corpus": corpus,
        "seed": seed,
        "n_samples": n_samples,
        "method": "streaming shuffle buffer (not a uniform sample)",
        "source": {"repo": name, "config": config, "buffer_size": buffer},
    }
    return CorpusDraw(itertools.islice(texts, n_samples), provenance)


def depends_on_seed(corpus: str) -> bool:
    """True for corpora that are drawn (Hub datasets, shard directories, parquet files); files and
    the bundled sample are read in order, whatever the seed (so their statistics are shared)."""
    if corpus == "wikipedia" or corpus.startswith("hf:"):
        return True
    path = Path(corpus)
    return path.is_dir() or path.suffix == ".parquet"
