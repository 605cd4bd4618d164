"""The seeded two-stage sample of a sharded corpus (random shards, then random rows in each), and
the ``CorpusDraw`` every corpus returns. Why and how: see ``sphere/data/corpus.py``'s docstring.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROWS_PER_SHARD = 64
TEXT = "text"
SHARD_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")

log = logging.getLogger(__name__)


@dataclass
class CorpusDraw:
    """A corpus sample: its texts (lazy, single pass) and how they were drawn.

    ``provenance`` is filled in as ``texts`` is consumed (see the module docstring). Iterating over
    the draw iterates over ``texts``.
    """

    texts: Iterator[str]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return self.texts


# --- ---------------------------------------------------------------------------------


def draw_from_shards(
    shards: Sequence[str | Path],
    n_samples: int,
    seed: int,
    *,
    rows_per_shard: int = ROWS_PER_SHARD,
    open_shard: Callable[[str], Path] = Path,
    corpus: str | None = None,
    source: dict[str, Any] | None = None,
) -> CorpusDraw:
    """A seeded two-stage random sample of ``n_samples`` non-empty texts from ``shards``.

    ``shards``: names of .parquet / .jsonl / .jsonl.gz files with a "text" field (recorded as given
    in the provenance); ``open_shard`` turns a name into a local path when the shard is first
    visited (e.g. a Hub download, so that only chosen shards are fetched). The rule is in the module
    docstring.
    """
    if n_samples < 1 or rows_per_shard < 1:
        raise ValueError(f"n_samples={n_samples} and rows_per_shard={rows_per_shard} must be >= 1")
    names = sorted({str(s) for s in shards})
    if not names:
        raise ValueError(f"covariance corpus {corpus!r} has no shard files")
    for name in names:
        if not name.endswith(SHARD_SUFFIXES):
            raise ValueError(f"shard {name!r} is not one of {', '.join(SHARD_SUFFIXES)}")
    rng = random.Random(seed)
    order = rng.sample(names, len(names))
    row_seeds = [rng.getrandbits(64) for _ in order]
    planned = min(len(order), math.ceil(n_samples / rows_per_shard))
    provenance: dict[str, Any] = {
        "corpus": corpus,
        "seed": seed,
        "n_samples": n_samples,
        "method": "sharded uniform draw",
        "source": source or {},
        "rows_per_shard": rows_per_shard,
        "n_shards_total": len(names),
        "n_shards_planned": planned,
        "n_drawn": 0,
        "shards": [],
    }
    log.info(
        "covariance corpus %s: drawing %d texts from %d of %d shards (seed %d)",
        corpus,
        n_samples,
        planned,
        len(names),
        seed,
    )
    shard_states = [_Shard(name, row_seed, open_shard) for name, row_seed in zip(order, row_seeds)]
    texts = _draw(shard_states, n_samples, planned, provenance)
    return CorpusDraw(texts, provenance)


class _Shard:
    """One shard's place in a draw: its local path, row count and seeded row order, opened on the
    first visit and kept across visits (so a revisit continues the same row order)."""

    def __init__(self, name: str, row_seed: int, open_shard: Callable[[str], Path]):
        self.name = name
        self._row_seed = row_seed
        self._open = open_shard
        self.path: Path | None = None
        self.num_rows = 0
        self.drawn = 0
        self.record: dict[str, Any] = {}
        self._rows: Iterator[int] = iter(())

    @property
    def exhausted(self) -> bool:
        return self.path is not None and self.drawn >= self.num_rows

    def open(self, provenance: dict[str, Any]) -> None:
        if self.path is not None:
            return
        self.path = Path(self._open(self.name))
        self.num_rows = _num_rows(self.path)
        self._rows = _lazy_permutation(self.num_rows, random.Random(self._row_seed))
        self.record = {"file": self.name, "num_rows": self.num_rows, "rows": [], "empty_rows": []}
        provenance["shards"].append(self.record)

    def next_rows(self, k: int) -> list[int]:
        """The next ``k`` rows of the shard's random order, sorted (read in file order)."""
        rows = list(itertools.islice(self._rows, k))
        self.drawn += len(rows)
        return sorted(rows)


def _draw(shards: list[_Shard], n: int, planned: int, provenance: dict[str, Any]) -> Iterator[str]:
    """Visit shards in order (cycling over those with rows left) until ``n`` texts were yielded."""
    remaining, visit = n, 0
    while remaining > 0:
        live = [s for s in shards if not s.exhausted]
        if not live:
            return
        for shard in live:
            if remaining == 0:
                return
            quota = math.ceil(remaining / max(planned - visit, 1))
            visit += 1
            shard.open(provenance)
            for text in _take(shard, quota):
                remaining -= 1
                provenance["n_drawn"] += 1
                yield text


def _take(shard: _Shard, quota: int) -> Iterator[str]:
    """Up to ``quota`` non-empty texts from ``shard``, drawing more rows when some are empty."""
    assert shard.path is not None
    got = 0
    while got < quota and not shard.exhausted:
        for row, text in _read_rows(shard.path, shard.next_rows(quota - got)):
            if text is None or not text.strip():
                shard.record["empty_rows"].append(row)
                continue
            shard.record["rows"].append(row)  # recorded before it is handed out
            got += 1
            yield text


def _lazy_permutation(n: int, rng: random.Random) -> Iterator[int]:
    """A uniformly random permutation of range(n), produced lazily: Fisher-Yates with the swaps
    kept in a dict, so drawing k rows costs O(k) time and memory whatever n is."""
    moved: dict[int, int] = {}  # position -> value, for positions >= i that a swap has changed
    for i in range(n):
        j = rng.randrange(i, n)
        at_i = moved.pop(i, i)
        if j == i:
            yield at_i
        else:
            at_j = moved.get(j, j)
            moved[j] = at_i
            yield at_j


def _num_rows(path: Path) -> int:
    """Rows of a shard: parquet from its footer; jsonl counts lines (a blank line is an empty row)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with _open_text(path) as f:
        return sum(1 for _ in f)


def _read_rows(path: Path, rows: list[int]) -> Iterator[tuple[int, str | None]]:
    """``(row, text)`` for the sorted ``rows`` of a shard, reading only what holds them."""
    if not rows:
        return iter(())
    if path.name.endswith(".parquet"):
        return _read_parquet_rows(path, rows)
    return _read_jsonl_rows(path, rows)


def _read_parquet_rows(path: Path, rows: list[int]) -> Iterator[tuple[int, str | None]]:
    """One row group in memory at a time: only the groups that hold ``rows``, only the text column."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if TEXT not in pf.schema_arrow.names:
        raise ValueError(f"shard {path} has no {TEXT!r} column (columns: {pf.schema_arrow.names})")
    starts = list(
        itertools.accumulate((pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)), initial=0)
    )
    by_group: dict[int, list[int]] = {}
    for row in rows:
        group = bisect.bisect_right(starts, row) - 1
        by_group.setdefault(group, []).append(row)
    for group, group_rows in sorted(by_group.items()):
        column = pf.read_row_group(group, columns=[TEXT]).column(TEXT)
        texts = column.take([row - starts[group] for row in group_rows]).to_pylist()
        yield from zip(group_rows, texts)


def _read_jsonl_rows(path: Path, rows: list[int]) -> Iterator[tuple[int, str | None]]:
    """Scan the file once, parsing only the wanted lines."""
    wanted = iter(rows)
    target = next(wanted, None)
    with _open_text(path) as f:
        for i, line in enumerate(f):
            if target is None:
                return
            if i == target:
                yield i, json.loads(line).get(TEXT) if line.strip() else None
                target = next(wanted, None)


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
