"""The statistics corpus: a seeded sharded draw across a whole snapshot (offline, on local shards),
its provenance, the Hub wiring (resolution faked) and the unchanged file readers."""

from __future__ import annotations

import collections
import gzip
import itertools
import json
import logging
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sphere.data import corpus as corpus_mod
from sphere.data import shards as shards_mod
from sphere.data.corpus import (
    BUNDLED,
    CorpusDraw,
    HubShards,
    corpus_texts,
    draw_corpus,
    draw_from_shards,
)

N_SHARDS, N_ROWS = 12, 300
TEXT_RE = re.compile(r"shard (\d+) row (\d+)")


def _row_text(shard: int, row: int) -> str | None:
    """Every 7th row is empty, whitespace or missing; the others say where they come from."""
    if row % 7 == 3:
        return [None, "", "   \n"][row % 3]
    return f"shard {shard} row {row}"


def _is_empty(shard: int, row: int) -> bool:
    text = _row_text(shard, row)
    return text is None or not text.strip()


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parquet")
    for s in range(N_SHARDS):
        table = pa.table(
            {
                "id": list(range(N_ROWS)),
                "text": [_row_text(s, r) for r in range(N_ROWS)],
            }
        )
        pq.write_table(table, root / f"train-{s:05d}-of-{N_SHARDS:05d}.parquet", row_group_size=40)
    return root


def _shards(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file())


def _where(text: str) -> tuple[int, int]:
    m = TEXT_RE.fullmatch(text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def _shard_index(file: str) -> int:
    return int(re.search(r"train-(\d+)", file).group(1))  # type: ignore[union-attr]


def _draw(shards, n, seed, **kw) -> tuple[list[str], dict]:
    draw = draw_from_shards(shards, n, seed, **kw)
    return list(draw.texts), draw.provenance


# --- the sharded draw -----------------------------------------------------------------------------


def test_draw_gives_n_distinct_nonempty_texts_spread_over_shards(parquet_dir):
    texts, prov = _draw(_shards(parquet_dir), 200, seed=0, rows_per_shard=32)
    assert len(texts) == 200
    assert len(set(texts)) == 200  # no row twice
    where = [_where(t) for t in texts]  # every text is a real, non-empty row
    assert not any(_is_empty(s, r) for s, r in where)
    per_shard = collections.Counter(s for s, _ in where)
    planned = math.ceil(200 / 32)  # 7 shards of ~29 texts, never more than rows_per_shard
    assert prov["n_shards_planned"] == planned and len(per_shard) == planned
    assert max(per_shard.values()) <= 32
    # Spread over the snapshot, not a run of neighbouring shards.
    assert max(per_shard) - min(per_shard) > planned
    # Rows within a shard are spread over it too, not its first rows.
    rows = [r for _, r in where]
    assert max(rows) > N_ROWS * 0.8 and min(rows) < N_ROWS * 0.2


def test_draw_is_reproducible_and_depends_on_the_seed(parquet_dir):
    shards = _shards(parquet_dir)
    first, prov = _draw(shards, 150, seed=7, rows_per_shard=16)
    again, prov_again = _draw(list(reversed(shards)), 150, seed=7, rows_per_shard=16)
    assert first == again and prov == prov_again  # listing order of the shards does not matter
    other, prov_other = _draw(shards, 150, seed=8, rows_per_shard=16)
    assert other != first
    assert [s["file"] for s in prov_other["shards"]] != [s["file"] for s in prov["shards"]]
    assert len(set(other) & set(first)) < 50  # mostly different rows, not a reshuffle


def test_provenance_lists_exactly_the_texts_returned(parquet_dir):
    draw = draw_from_shards(_shards(parquet_dir), 120, seed=3, rows_per_shard=10)
    assert isinstance(draw, CorpusDraw)
    texts = list(draw)  # iterating over the draw iterates over its texts
    prov = json.loads(json.dumps(draw.provenance))  # JSON-serialisable
    assert prov["corpus"] is None and prov["seed"] == 3 and prov["n_samples"] == 120
    assert prov["n_drawn"] == 120 and prov["n_shards_total"] == N_SHARDS
    listed = [(_shard_index(s["file"]), r) for s in prov["shards"] for r in s["rows"]]
    assert listed == [_where(t) for t in texts]  # same rows, same order
    for s in prov["shards"]:
        assert s["num_rows"] == N_ROWS
        assert all(_is_empty(_shard_index(s["file"]), r) for r in s["empty_rows"])
    assert sum(len(s["empty_rows"]) for s in prov["shards"]) > 0  # empties were met, and skipped


def test_provenance_is_complete_when_the_consumer_stops_at_n(parquet_dir):
    draw = draw_from_shards(_shards(parquet_dir), 40, seed=1, rows_per_shard=8)
    taken = list(itertools.islice(draw.texts, 40))  # like collect_second_moments: never asks for more
    assert draw.provenance["n_drawn"] == 40
    assert sum(len(s["rows"]) for s in draw.provenance["shards"]) == len(taken)


def test_few_shards_share_the_sample_evenly(parquet_dir):
    texts, prov = _draw(_shards(parquet_dir), 600, seed=0, rows_per_shard=16)
    per_shard = collections.Counter(_where(t)[0] for t in texts)
    assert len(per_shard) == N_SHARDS and set(per_shard.values()) == {50}
    assert prov["n_shards_planned"] == N_SHARDS


def test_short_shards_pass_their_deficit_on(tmp_path):
    tiny = tmp_path / "train-00000.parquet"
    big = tmp_path / "train-00001.parquet"
    pq.write_table(pa.table({"text": [f"shard 0 row {r}" for r in range(5)]}), tiny)
    pq.write_table(pa.table({"text": [f"shard 1 row {r}" for r in range(300)]}), big)
    for seed in range(4):  # whichever comes first, the big shard makes up the difference
        texts, _ = _draw([tiny, big], 100, seed=seed, rows_per_shard=50)
        assert len(texts) == 100 and len(set(texts)) == 100
        assert sum(t.startswith("shard 0") for t in texts) == 5


def test_a_corpus_smaller_than_n_gives_all_its_nonempty_texts(parquet_dir):
    shards = _shards(parquet_dir)[:2]
    texts, prov = _draw(shards, 10_000, seed=0)
    expected = {f"shard {s} row {r}" for s in range(2) for r in range(N_ROWS) if not _is_empty(s, r)}
    assert len(texts) == len(expected) and set(texts) == expected
    assert prov["n_drawn"] == len(expected)


def test_jsonl_gz_shards(tmp_path):
    for s in range(6):
        lines = []
        for r in range(50):
            text = _row_text(s, r)
            lines.append("" if text is None else json.dumps({"text": text, "id": r}))  # None: blank line
        opener = gzip.open if s % 2 else open  # .jsonl.gz and .jsonl shards mixed
        name = tmp_path / f"train-{s:05d}.jsonl{'.gz' if s % 2 else ''}"
        with opener(name, "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    draw = draw_corpus(str(tmp_path), seed=5, n_samples=90)  # a directory of shards is drawn from
    texts = list(draw.texts)
    assert len(texts) == len(set(texts)) == 90
    assert not any(_is_empty(*_where(t)) for t in texts)
    listed = [(_shard_index(s["file"]), r) for s in draw.provenance["shards"] for r in s["rows"]]
    assert listed == [_where(t) for t in texts]
    assert all(s["num_rows"] == 50 for s in draw.provenance["shards"])
    assert draw.provenance["source"] == {"directory": str(tmp_path.resolve())}
    assert list(draw_corpus(str(tmp_path), seed=5, n_samples=90).texts) == texts


def test_lazy_permutation_is_a_uniform_permutation():
    import random

    for n in (0, 1, 2, 17, 500):
        assert sorted(shards_mod._lazy_permutation(n, random.Random(n))) == list(range(n))
    firsts = collections.Counter(next(shards_mod._lazy_permutation(5, random.Random(s))) for s in range(5000))
    assert set(firsts) == set(range(5)) and all(800 < c < 1200 for c in firsts.values())


def test_shards_must_be_parquet_or_jsonl(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        draw_from_shards([tmp_path / "train.csv"], 10, 0)
    with pytest.raises(ValueError, match="no shard files"):
        draw_from_shards([], 10, 0)


def test_parquet_without_text_column_is_refused(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"content": ["a", "b"]}), path)
    with pytest.raises(ValueError, match="no 'text' column"):
        list(draw_from_shards([path], 1, 0).texts)


# --- the Hub wiring (no network: resolution and download faked) -------------------------------------


def test_wikipedia_draws_from_the_resolved_shards_and_downloads_only_those(parquet_dir, monkeypatch):
    import huggingface_hub

    files = [f"20231101.en/{p.name}" for p in _shards(parquet_dir)]
    resolved = []

    def resolve(name, config, revision=None):
        resolved.append((name, config, revision))
        return HubShards(name, config, "abc123", files)

    downloads = []

    def download(repo_id, filename, *, repo_type, revision):
        assert (repo_id, repo_type, revision) == ("wikimedia/wikipedia", "dataset", "abc123")
        downloads.append(filename)
        return str(parquet_dir / filename.rpartition("/")[2])

    monkeypatch.setattr(corpus_mod, "resolve_hub_shards", resolve)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    draw = draw_corpus("wikipedia", seed=2, n_samples=100)
    assert resolved == [("wikimedia/wikipedia", "20231101.en", None)]
    texts = list(draw.texts)
    assert len(texts) == 100
    prov = draw.provenance
    assert prov["corpus"] == "wikipedia"
    assert prov["source"] == {"repo": "wikimedia/wikipedia", "config": "20231101.en", "revision": "abc123"}
    assert downloads == [s["file"] for s in prov["shards"]]  # only the visited shards
    assert len(downloads) == math.ceil(100 / corpus_mod.ROWS_PER_SHARD) < N_SHARDS


def test_hub_resolution_pins_the_commit_and_falls_back_to_the_parquet_conversion(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RevisionNotFoundError

    branches = {
        "main": [
            "README.md",
            "cfg/train-00001.parquet",
            "cfg/train-00000.parquet",
            "cfg/test-0.parquet",
            "cfg2/train-0.parquet",
        ],
        "refs/convert/parquet": ["other/train/0000.parquet", "default/partial-train/0000.parquet"],
    }

    class Api:
        def dataset_info(self, name, revision):
            if revision not in branches:
                raise RevisionNotFoundError.__new__(RevisionNotFoundError)
            siblings = [type("Sibling", (), {"rfilename": f})() for f in branches[revision]]
            return type("Info", (), {"sha": f"sha-of-{revision}", "siblings": siblings})()

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    resolve = corpus_mod.resolve_hub_shards
    assert resolve("org/set", "cfg") == HubShards(
        "org/set", "cfg", "sha-of-main", ["cfg/train-00000.parquet", "cfg/train-00001.parquet"]
    )
    converted = resolve("org/set", "default")  # no such folder on main: the Hub's parquet conversion
    assert converted is not None and converted.revision == "sha-of-refs/convert/parquet"
    assert converted.files == ["default/partial-train/0000.parquet"]
    assert resolve("org/set", "missing") is None  # -> streamed, with a warning
    assert resolve("org/set", "cfg", revision="v0") is None  # unknown revision: only the conversion is tried
    with pytest.raises(ValueError, match="name a config"):
        resolve("org/set", None)  # train shards of several folders are not mixed


def test_hf_corpus_id_parses_name_config_and_revision(monkeypatch):
    calls = []

    def resolve(*args):
        calls.append(args)  # no shards: the streamed fallback (faked) is used

    monkeypatch.setattr(corpus_mod, "resolve_hub_shards", resolve)
    monkeypatch.setattr(corpus_mod, "_streamed_draw", lambda *a: CorpusDraw(iter(()), {"args": a}))
    draw_corpus("hf:org/set:cfg@v1", 0, 5)
    draw_corpus("hf:org/set", 0, 5)
    assert calls == [("org/set", "cfg", "v1"), ("org/set", None, None)]


def test_hub_shard_selection():
    wiki = [
        "20231101.en/train-00000-of-00002.parquet",
        "20231101.en/train-00001-of-00002.parquet",
        "20231101.de/train-00000-of-00001.parquet",
        "README.md",
    ]
    picked = [f for f in wiki if corpus_mod._is_train_parquet(f, "20231101.en")]
    assert picked == wiki[:2]
    assert corpus_mod._is_train_parquet("default/train/0000.parquet", None)
    assert corpus_mod._is_train_parquet("data/train-00000-of-00003.parquet", None)
    assert not corpus_mod._is_train_parquet("data/test-00000-of-00001.parquet", None)
    assert not corpus_mod._is_train_parquet("data/trainer_notes.parquet", None)
    corpus_mod._check_one_config("org/set", None, ["data/train-0.parquet", "data/train-1.parquet"])
    with pytest.raises(ValueError, match=r"hf:wikimedia/wikipedia:<config>"):
        corpus_mod._check_one_config("wikimedia/wikipedia", None, wiki[:3])


def test_dataset_without_parquet_shards_is_streamed_with_a_warning(monkeypatch, caplog):
    class Stream:
        def shuffle(self, seed, buffer_size):
            return [{"text": "a"}, {"text": " "}, {"text": "b"}, {"text": "c"}]

    import datasets

    monkeypatch.setattr(corpus_mod, "resolve_hub_shards", lambda *a: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: Stream())
    with caplog.at_level(logging.WARNING, logger="sphere.data.corpus"):
        draw = draw_corpus("hf:org/set", seed=0, n_samples=2)
    assert list(draw.texts) == ["a", "b"]
    assert "not a uniform sample" in caplog.text
    assert "not a uniform sample" in draw.provenance["method"]


# --- files, read in order as before ----------------------------------------------------------------


def test_bundled_corpus_is_unchanged():
    repo_file = Path(__file__).resolve().parents[2] / "data" / "corpus" / "wiki_sample.jsonl.gz"
    assert repo_file == BUNDLED
    with gzip.open(repo_file, "rt", encoding="utf-8") as f:
        direct = [json.loads(line)["text"] for line in f if line.strip()]
    assert list(corpus_texts("bundled")) == direct
    assert list(corpus_texts("bundled", seed=5)) == direct  # the seed plays no part
    draw = draw_corpus("bundled", seed=0, n_samples=25)
    assert list(draw.texts) == direct[:25]
    assert draw.provenance["path"] == "data/corpus/wiki_sample.jsonl.gz"
    assert draw.provenance["description"] == "first 25 non-empty texts in file order"


def test_text_and_jsonl_files_are_read_in_order(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_text("one\n\ntwo\n  \nthree\n", encoding="utf-8")
    assert list(corpus_texts(str(txt))) == ["one", "two", "three"]
    assert list(draw_corpus(str(txt), 0, 2).texts) == ["one", "two"]
    jl = tmp_path / "c.jsonl.gz"
    with gzip.open(jl, "wt", encoding="utf-8") as f:
        f.write('{"text": "x"}\n{"text": "y"}\n')
    assert list(corpus_texts(str(jl))) == ["x", "y"]


def test_unknown_corpus_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        draw_corpus(str(tmp_path / "missing.jsonl"), 0, 10)
    message = str(err.value)
    assert "model.covariance.corpus" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="model.covariance.corpus"):
        corpus_texts("wikipedia-typo")
