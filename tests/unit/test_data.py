"""Dataset readers: both CounterFact schemas, ZsRE, malformed-record handling and the bundled samples."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import logging
import re
from pathlib import Path

import pytest

from sphere.data import (
    DATA_DIR,
    FULL_FILES,
    SAMPLES,
    MalformedRecordError,
    load_records,
    read_counterfact,
    read_zsre,
    resolve_data_path,
)

ROME_RECORD = {
    "case_id": 0,
    "pararel_idx": 2796,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": [
        "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
        "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
    ],
    "neighborhood_prompts": ["The mother tongue of Léon Blum is", "Michel Rocard is a native speaker of"],
    "attribute_prompts": ["J.\u00a0R.\u00a0R. Tolkien is a native speaker of"],
    "generation_prompts": [
        "Danielle Darrieux's mother tongue is",
        "Where Danielle Darrieux is from, people speak",
    ],
}

EASYEDIT_RECORD = {
    "case_id": 7,
    "prompt": "The mother tongue of Danielle Darrieux is",
    "target_new": "English",
    "subject": "Danielle Darrieux",
    "ground_truth": "French",
    "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
    "locality_prompt": "Michel Rocard is a native speaker of",
    "locality_ground_truth": "French",
}

ZSRE_RECORD = {
    "subject": "IAAF Combined Events Challenge",
    "src": "When was the inception of IAAF Combined Events Challenge?",
    "pred": "2011",
    "rephrase": "When was the IAAF Combined Events Challenge launched?",
    "alt": "2006",
    "answers": ["1998"],
    "loc": "nq question: what is the name of the last episode of spongebob",
    "loc_ans": "The String",
    "cond": "2011 >> 2006 || When was the inception of IAAF Combined Events Challenge?",
}


def write_json(path: Path, rows: list, gz: bool = False) -> Path:
    text = json.dumps(rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def with_case(record: dict, cid: int, **changes) -> dict:
    out = copy.deepcopy(record)
    out["case_id"] = cid
    out.update(changes)
    return out


# --- CounterFact, ROME schema -------------------------------------------------------------------


def test_rome_schema(tmp_path):
    second = with_case(ROME_RECORD, 5)
    second["requested_rewrite"]["prompt"] = "{}, who has a citizenship of"
    path = write_json(tmp_path / "counterfact.json", [ROME_RECORD, second])
    records = read_counterfact(path)
    assert [r.case_id for r in records] == [0, 5]
    r = records[0]
    assert r.kind == "counterfact"
    assert r.prompt == "The mother tongue of {} is"
    assert r.subject == "Danielle Darrieux"
    assert (r.target_new, r.target_true, r.relation_id) == ("English", "French", "P103")
    assert r.paraphrase_prompts == tuple(ROME_RECORD["paraphrase_prompts"])
    assert r.neighborhood_prompts == tuple(ROME_RECORD["neighborhood_prompts"])
    assert r.neighborhood_targets == ("French", "French")
    assert r.generation_prompts == tuple(ROME_RECORD["generation_prompts"])
    assert r.request.text == "The mother tongue of Danielle Darrieux is"
    assert records[1].prompt == "{}, who has a citizenship of"


def test_rome_schema_gz_and_load_records(tmp_path):
    path = write_json(tmp_path / "multi_counterfact.json.gz", [ROME_RECORD], gz=True)
    assert load_records("counterfact", path)[0].target_new == "English"
    assert load_records("counterfact", str(path))[0].case_id == 0


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: r["requested_rewrite"].pop("subject"), "requested_rewrite.subject"),
        (lambda r: r["requested_rewrite"]["target_new"].pop("str"), "requested_rewrite.target_new.str"),
        (lambda r: r["requested_rewrite"].__setitem__("prompt", "{} speaks {}"), "exactly one '{}'"),
        (
            lambda r: r["requested_rewrite"].__setitem__("prompt", "The mother tongue of Danielle is"),
            "exactly one",
        ),
        (lambda r: r["requested_rewrite"].__setitem__("prompt", "The {tongue} of {} is"), "stray brace"),
        (lambda r: r.__setitem__("neighborhood_prompts", "not a list"), "neighborhood_prompts"),
        (lambda r: r["requested_rewrite"]["target_new"].__setitem__("str", "  "), "is empty"),
    ],
)
def test_rome_malformed(tmp_path, caplog, mutate, problem):
    bad = with_case(ROME_RECORD, 4242)
    mutate(bad)
    path = write_json(tmp_path / "cf.json", [ROME_RECORD, bad, with_case(ROME_RECORD, 9)])
    with pytest.raises(ValueError) as info:
        read_counterfact(path)
    message = str(info.value)
    assert isinstance(info.value, MalformedRecordError)
    assert "case_id=4242" in message and str(path) in message and problem in message
    assert "drop or repair" in message and "\n" not in message
    with caplog.at_level(logging.WARNING, logger="sphere.data"):
        records = read_counterfact(path, skip_malformed=True)
    assert [r.case_id for r in records] == [0, 9]
    assert "case_id=4242" in caplog.text


def test_duplicate_case_id(tmp_path):
    path = write_json(tmp_path / "cf.json", [ROME_RECORD, ROME_RECORD])
    with pytest.raises(ValueError, match=r"case_id=0 .*duplicate"):
        read_counterfact(path)
    assert len(read_counterfact(path, skip_malformed=True)) == 1


def test_unknown_schema_and_bad_json(tmp_path):
    with pytest.raises(ValueError, match="unrecognised CounterFact schema"):
        read_counterfact(write_json(tmp_path / "x.json", [{"foo": 1}]))
    with pytest.raises(ValueError, match="JSON list"):
        read_counterfact(write_json(tmp_path / "y.json", {"case_id": 0}))
    (tmp_path / "z.json").write_text("[{")
    with pytest.raises(ValueError, match="not a readable JSON"):
        read_counterfact(tmp_path / "z.json")
    assert read_counterfact(write_json(tmp_path / "empty.json", [])) == []


# --- CounterFact, EasyEdit split schema ----------------------------------------------------------


def test_easyedit_schema(tmp_path):
    twice = with_case(EASYEDIT_RECORD, 8, prompt="Paris Paris is in", subject="Paris", target_new="Italy")
    records = read_counterfact(write_json(tmp_path / "cf.json", [EASYEDIT_RECORD, twice]))
    r = records[0]
    assert (r.case_id, r.kind, r.prompt, r.subject) == (
        7,
        "counterfact",
        "The mother tongue of {} is",
        "Danielle Darrieux",
    )
    assert (r.target_new, r.target_true, r.relation_id) == ("English", "French", None)
    assert r.paraphrase_prompts == (EASYEDIT_RECORD["rephrase_prompt"],)
    assert r.neighborhood_prompts == (EASYEDIT_RECORD["locality_prompt"],)
    assert r.neighborhood_targets == ("French",)
    assert records[1].prompt == "{} Paris is in"  # only the first occurrence becomes the slot


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"prompt": "The mother tongue of Someone Else is"}, "does not occur in prompt"),
        ({"prompt": "The {} tongue of Danielle Darrieux is"}, "brace"),
        ({"ground_truth": None}, "'ground_truth' must be str"),
        ({"case_id": "3"}, "'case_id' must be int"),
    ],
)
def test_easyedit_malformed(tmp_path, changes, problem):
    bad = with_case(EASYEDIT_RECORD, 31, **changes)
    path = write_json(tmp_path / "cf.json", [EASYEDIT_RECORD, bad])
    with pytest.raises(ValueError, match=re.escape(problem)) as info:
        read_counterfact(path)
    assert f"case_id={bad['case_id']} " in str(info.value)
    assert [r.case_id for r in read_counterfact(path, skip_malformed=True)] == [7]


def test_missing_case_id_is_reported(tmp_path):
    bad = copy.deepcopy(EASYEDIT_RECORD)
    del bad["case_id"]
    with pytest.raises(ValueError, match=r"case_id=<missing, row 1>.*'case_id'"):
        read_counterfact(write_json(tmp_path / "cf.json", [EASYEDIT_RECORD, bad]))


# --- ZsRE ------------------------------------------------------------------------------------------


def test_zsre_schema(tmp_path):
    records = read_zsre(write_json(tmp_path / "z.json", [ZSRE_RECORD, ZSRE_RECORD]))
    assert [r.case_id for r in records] == [0, 1]  # row index, duplicates by content are fine
    r = records[0]
    assert (r.kind, r.prompt, r.subject) == ("zsre", "When was the inception of {}?", ZSRE_RECORD["subject"])
    assert (r.target_new, r.target_true) == ("1998", None)  # answers[0], as the reference
    assert r.paraphrase_prompts == (ZSRE_RECORD["rephrase"],)
    assert r.neighborhood_prompts == (ZSRE_RECORD["loc"] + "?",)
    assert r.neighborhood_targets == ("The String",)
    assert read_zsre(tmp_path / "z.json", target="alt")[0].target_new == "2006"


def test_zsre_malformed(tmp_path, caplog):
    bad = dict(ZSRE_RECORD, src="Who founded it?")
    path = write_json(tmp_path / "z.json", [ZSRE_RECORD, bad, ZSRE_RECORD])
    with pytest.raises(ValueError, match=r"case_id=1 .*does not occur in prompt.*drop or repair"):
        load_records("zsre", path)
    with caplog.at_level(logging.WARNING, logger="sphere.data"):
        records = load_records("zsre", path, skip_malformed=True)
    assert [r.case_id for r in records] == [0, 2]
    assert "case_id=1" in caplog.text
    no_loc = {k: v for k, v in ZSRE_RECORD.items() if k != "loc"}
    with pytest.raises(ValueError, match=r"case_id=0 .*missing field 'loc'"):
        read_zsre(write_json(tmp_path / "z2.json", [no_loc]))


# --- limit, dispatch, paths ------------------------------------------------------------------------


def test_limit(tmp_path):
    rows = [with_case(EASYEDIT_RECORD, i) for i in range(10)]
    rows[1]["prompt"] = "broken"
    path = write_json(tmp_path / "cf.json", rows)
    assert [r.case_id for r in read_counterfact(path, limit=1)] == [0]  # stops before the bad record
    assert [r.case_id for r in read_counterfact(path, limit=3, skip_malformed=True)] == [0, 2, 3]
    assert read_counterfact(path, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        read_counterfact(path, limit=-1)
    assert len(load_records("zsre", "zsre-sample", limit=7)) == 7
    assert len(load_records("counterfact", "counterfact-sample", limit=25)) == 25


def test_load_records_errors(tmp_path):
    with pytest.raises(ValueError, match="counterfact, zsre"):
        load_records("mquake", "counterfact-sample")
    with pytest.raises(FileNotFoundError, match="download_data.py"):
        load_records("counterfact", tmp_path / "nope.json")
    if not FULL_FILES["multi_counterfact"].exists():
        with pytest.raises(FileNotFoundError, match=r"download_data\.py multi_counterfact"):
            load_records("counterfact", "multi_counterfact")


def test_resolve_data_path(tmp_path):
    assert resolve_data_path("counterfact-sample") == DATA_DIR / "counterfact_sample.json.gz"
    assert resolve_data_path("zsre-sample") == DATA_DIR / "zsre_sample.json.gz"
    assert resolve_data_path("counterfact") == DATA_DIR / "full" / "counterfact.json"
    assert resolve_data_path("multi_counterfact") == DATA_DIR / "full" / "multi_counterfact.json"
    assert resolve_data_path("zsre") == DATA_DIR / "full" / "zsre_mend_eval.json"
    assert resolve_data_path("counterfact-edit").name.startswith("counterfact-edit.json")
    assert resolve_data_path(tmp_path / "a.json") == tmp_path / "a.json"
    assert resolve_data_path("some/file.json") == Path("some/file.json")


# --- counterfact-edit: EasyEdit's 10,000-record edit split, from data/full or a shared data folder -------

CF_EDIT_SHA = "bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec"


@pytest.fixture
def cf_edit_shared(monkeypatch, tmp_path):
    """The shared gzipped copy of counterfact-edit, with data/full pointed at an empty folder so the
    test reads that copy whatever this machine has downloaded; skipped where no copy exists."""
    from sphere.data import shared

    monkeypatch.setitem(FULL_FILES, "counterfact-edit", tmp_path / "full" / "counterfact-edit.json")
    found = shared.locate("counterfact-edit", tmp_path / "full")
    if found is None:
        pytest.skip(
            "counterfact-edit not on this machine (no $SPHERE_SHARED_DATA or <repo>/../shared/data copy)"
        )
    return found


def test_counterfact_edit_loads_all_10000_records_verified(cf_edit_shared):
    from sphere.data.download import EXPECTED_SHA256, FILES, URLS
    from sphere.data.shared import content_sha256

    assert EXPECTED_SHA256["counterfact-edit"] == CF_EDIT_SHA and FILES["counterfact-edit"].endswith(".json")
    assert URLS["counterfact-edit"].startswith(
        "https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/"
    )
    assert resolve_data_path("counterfact-edit") == cf_edit_shared
    assert content_sha256(cf_edit_shared) == CF_EDIT_SHA
    records = load_records("counterfact", "counterfact-edit")
    assert len(records) == 10_000 and records.skipped == 0
    assert len({r.case_id for r in records}) == 10_000
    assert records[0].case_id == 0 and records[0].request.text == "The mother tongue of Danielle Darrieux is"
    assert all(len(r.paraphrase_prompts) == len(r.neighborhood_prompts) == 1 for r in records)


def test_counterfact_edit_download_lands_in_data_full_and_is_read_first(cf_edit_shared, monkeypatch):
    from sphere.data import download as dl

    content = gzip.decompress(cf_edit_shared.read_bytes())  # what the raw GitHub URL serves
    seen = []

    def fake_fetch(url, tmp, timeout, progress, label):
        seen.append(url)
        Path(tmp).write_bytes(content)
        return hashlib.sha256(content).hexdigest()

    monkeypatch.setattr(dl, "_fetch", fake_fetch)
    path = dl.download("counterfact-edit", FULL_FILES["counterfact-edit"].parent, progress=False)
    assert seen == [dl.URLS["counterfact-edit"]] and path == FULL_FILES["counterfact-edit"]
    assert resolve_data_path("counterfact-edit") == path  # data/full before the shared copy
    assert len(load_records("counterfact", "counterfact-edit")) == 10_000


def test_counterfact_edit_damaged_copy_is_refused(cf_edit_shared, monkeypatch, tmp_path):
    from sphere.data import SHARED_DATA_ENV, SHARED_FILES

    copy_ = tmp_path / "shared" / SHARED_FILES["counterfact-edit"]
    copy_.parent.mkdir(parents=True)
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path / "shared"))  # looked in before <repo>/../shared
    text = gzip.decompress(cf_edit_shared.read_bytes()).decode()
    copy_.write_bytes(gzip.compress(text.replace('"English"', '"Engl1sh"', 1).encode()))
    assert resolve_data_path("counterfact-edit") == copy_
    message = rf"^{re.escape(str(copy_))}: not the counterfact-edit dataset: .*expected sha256 {CF_EDIT_SHA};"
    with pytest.raises(ValueError, match=message + r".*download_data\.py counterfact-edit") as err:
        load_records("counterfact", "counterfact-edit")
    assert "\n" not in str(err.value)
    copy_.write_bytes(cf_edit_shared.read_bytes()[:-100])  # truncated gzip: refused the same way
    with pytest.raises(ValueError, match=r"gzip data is damaged.*expected sha256 " + CF_EDIT_SHA):
        load_records("counterfact", "counterfact-edit")
    copy_.write_bytes(text.encode())  # recompressing (here: not compressing) changes nothing
    assert len(load_records("counterfact", "counterfact-edit", limit=3)) == 3


def test_counterfact_edit_missing_names_places_fix_and_checksum(monkeypatch, tmp_path):
    from sphere.data import SHARED_DATA_ENV, shared

    monkeypatch.setitem(FULL_FILES, "counterfact-edit", tmp_path / "full" / "counterfact-edit.json")
    monkeypatch.setattr(shared, "SHARED_DIR", tmp_path / "nowhere")
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path / "empty"))
    assert resolve_data_path("counterfact-edit") == tmp_path / "full" / "counterfact-edit.json"
    with pytest.raises(FileNotFoundError) as err:
        load_records("counterfact", "counterfact-edit")
    message = str(err.value)
    assert "\n" not in message and CF_EDIT_SHA in message
    assert "python scripts/download_data.py counterfact-edit" in message and SHARED_DATA_ENV in message
    for place in (tmp_path / "full", tmp_path / "empty", tmp_path / "nowhere"):
        assert str(place) in message


def test_counterfact_edit_selection_by_seed(cf_edit_shared, tmp_path):
    """dataset.shuffle draws ``limit`` records with run.seed (same seed: same records, same order);
    without it the first ``limit`` records in file order."""
    from helpers import settings

    from sphere.run.build import edit_stream

    def case_ids(*overrides: str) -> list[int]:
        s = settings("dataset.path=counterfact-edit", "dataset.limit=50", *overrides, tmp=tmp_path)
        return [r.case_id for r in edit_stream(s)]

    first = case_ids("dataset.shuffle=true", "run.seed=3")
    assert first == case_ids("dataset.shuffle=true", "run.seed=3")
    assert first != case_ids("dataset.shuffle=true", "run.seed=4") and len(set(first)) == 50
    in_order = case_ids("dataset.shuffle=false", "run.seed=3")
    assert in_order == [r.case_id for r in load_records("counterfact", "counterfact-edit", limit=50)]
    assert in_order != first


# --- bundled samples ---------------------------------------------------------------------------------


def test_counterfact_sample():
    raw = json.loads(gzip.decompress(SAMPLES["counterfact-sample"].read_bytes()))
    records = load_records("counterfact", "counterfact-sample")
    assert len(raw) == len(records) == 300
    assert len({r.case_id for r in records}) == 300
    for row, r in zip(raw, records):
        assert row["subject"] in row["prompt"]
        assert r.case_id == row["case_id"] and r.kind == "counterfact"
        assert r.request.text == row["prompt"]
        assert r.target_new == row["target_new"] and r.target_true == row["ground_truth"]
        assert len(r.paraphrase_prompts) == len(r.neighborhood_prompts) == len(r.neighborhood_targets) == 1
    assert records[0].prompt == "The mother tongue of {} is" and records[0].target_new == "English"


def test_zsre_sample():
    raw = json.loads(gzip.decompress(SAMPLES["zsre-sample"].read_bytes()))
    records = load_records("zsre", "zsre-sample")
    assert len(raw) == len(records) == 300
    for i, (row, r) in enumerate(zip(raw, records)):
        assert row["subject"] in row["src"]
        assert r.case_id == i and r.kind == "zsre" and r.target_true is None
        assert r.request.text == row["src"]
        assert r.target_new == row["answers"][0]
        assert r.neighborhood_prompts[0].endswith("?") and r.neighborhood_targets == (row["loc_ans"],)


def test_wiki_sample():
    lines = gzip.decompress(SAMPLES["wiki-sample"].read_bytes()).decode().splitlines()
    assert len(lines) == 1500
    first = json.loads(lines[0])
    assert set(first) == {"title", "text"} and first["text"].strip()
    assert SAMPLES["wiki-sample"].stat().st_size < 1_000_000


def test_samples_md_hashes():
    """data/SAMPLES.md must describe the committed files (regenerate with scripts/make_samples.py)."""
    table = dict(
        re.findall(
            r"\| `data/(\S+)` \| [\d,]+ \| [\d,]+ \| `([0-9a-f]{64})` \|",
            (DATA_DIR / "SAMPLES.md").read_text(),
        )
    )
    assert set(table) == {
        "counterfact_sample.json.gz",
        "counterfact_tune.json.gz",
        "zsre_sample.json.gz",
        "corpus/wiki_sample.jsonl.gz",
    }
    for rel, sha in table.items():
        assert hashlib.sha256(gzip.decompress((DATA_DIR / rel).read_bytes())).hexdigest() == sha, rel
    assert sum((DATA_DIR / rel).stat().st_size for rel in table) < 2_000_000
