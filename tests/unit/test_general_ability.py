"""General-ability tasks (spec §5, AlphaEdit glue_eval): scorers by hand, readers on the bundled files,
exact prompts, and the ``general`` evaluator on a tiny random model."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
from helpers import ROOT

from sphere.data import download as dl
from sphere.evaluation import general as general_mod
from sphere.evaluation.config import EvalConfig, GeneralConfig
from sphere.evaluation.decoding import generate_texts
from sphere.evaluation.general import GeneralAbility
from sphere.evaluation.general_scoring import (
    INVALID,
    answer_after,
    contains_gold,
    final_number,
    final_number_matches,
    gsm8k_parts,
    label_metrics,
    normalize_answer,
    parse_label,
    pick_label,
    soft_exact_match,
    strict_metrics,
)
from sphere.evaluation.general_tasks import (
    BUNDLED_DIR,
    TASKS,
    GeneralTask,
    load_items,
    load_rows,
    read_jsonl,
    read_nli_tsv,
)
from sphere.evaluation.registry import EvalView, get_evaluator

SPHERE_TASKS = ("reasoning", "nli", "open_qa", "closed_qa")


def _cfg(**general) -> EvalConfig:
    return EvalConfig(evaluators=["general"], general=GeneralConfig(**general))


def _view(model, tok, n_edits: int) -> EvalView:
    return EvalView(model=model, tok=tok, spec=None, layers=[], records=[], n_edits=n_edits)  # type: ignore[arg-type]


# --- scorers, by hand --------------------------------------------------------------------------------


def test_answer_after_takes_the_last_marker():
    assert answer_after("answer: x answer:  True \n", "answer:") == "True"
    assert answer_after("no marker here ", "answer:") == "no marker here"


def test_gsm8k_gold_is_a_substring_with_its_quirks():
    rationale, gold = gsm8k_parts("She sells 9 eggs.\n#### 18")
    assert (rationale, gold) == ("She sells 9 eggs.\n", "18")
    assert contains_gold("18 dollars", "18")
    assert contains_gold("118", "18")  # substring quirk kept
    assert not contains_gold("1600", "1,600")  # thousands separator quirk kept
    assert not contains_gold(" 17", "18")
    with pytest.raises(ValueError, match="exactly one"):
        gsm8k_parts("no final answer")


def test_strict_gsm8k_rule_is_the_final_number():
    assert contains_gold("118", "18") and not final_number_matches("118", "18")  # the quirk, gone
    assert final_number("The answer is 18.") == 18 and final_number_matches("The answer is 18.", "18")
    assert final_number_matches("1600", "1,600") and final_number_matches("$1,600.", "1600")
    assert final_number_matches("18.0", "18") and not final_number_matches("18.5", "18")
    assert final_number("18, then 5") == 5 and not final_number_matches("18, then 5", "18")  # the last one
    assert final_number("18,") == 18  # a trailing comma is punctuation, not a thousands separator
    assert final_number("-3 degrees") == -3 and final_number_matches("it is -3", "-3")
    assert final_number("no digits") is None and not final_number_matches("no digits", "18")
    task = TASKS["reasoning"]
    prompt = "Q: q A:Let's think step by step. r\n Therefore, the answer (arabic numerals) is:"
    assert task.strict_correct is not None
    assert task.strict_correct(task.predict(prompt, " 118\n\nQ"), "18") is False
    assert task.strict_correct(task.predict(prompt, " 18\n\nQ"), "18") is True


def test_strict_label_is_the_likeliest_label():
    choices = (("True", 1), ("true", 1), ("False", 0), ("false", 0))
    log = math.log
    # "False" is the single likeliest text, but "True" + "true" together hold more probability
    assert pick_label([log(0.3), log(0.3), log(0.4), -math.inf], choices) == 1
    assert pick_label([log(0.1), log(0.1), log(0.4), log(0.1)], choices) == 0
    assert pick_label([log(0.2)] * 4, choices) == 1  # an exact tie: the label listed first
    assert pick_label([-math.inf] * 4, choices) == 1
    letters = TASKS["mmlu"].choices
    assert pick_label([-3.0, -1.0, -2.0, -4.0], letters) == 1
    with pytest.raises(ValueError, match="3 scores for 4 choices"):
        pick_label([0.0, 0.0, 0.0], letters)
    renamed = strict_metrics(label_metrics([1, 0], [1, 1], exclude_invalid=False))
    assert set(renamed) == {"strict", "strict_se", "strict_f1", "strict_mcc"} and renamed["strict"] == 50.0
    label_tasks = {n for n in TASKS if n not in ("reasoning", "open_qa")}
    assert {n for n, t in TASKS.items() if t.choices} == label_tasks
    for name in label_tasks:  # every label of a task can be chosen
        task = TASKS[name]
        golds = {item.gold for item in load_rows(task, BUNDLED_DIR / task.bundled)}
        assert golds <= {label for _, label in task.choices}, name


def test_likeliest_labels_score_each_choice_after_the_stripped_prompt(monkeypatch, tiny_llama):
    """Stubbed scores: the pairs scored and the labels read; then, on a tiny model, the same
    choice as a naive forward pass per (prompt, choice) gives."""
    import torch

    from sphere.evaluation.scoring import ContinuationScore

    model, tok = tiny_llama
    task = TASKS["closed_qa"]
    prompts = ["p one. answer: ", "p two. answer: "]
    seen = []

    def scripted(model_, tok_, pairs, batch_size, desc=None):
        seen.extend(pairs)
        # per token NLL x tokens: "Yes" 1 token nll 2, "yes" 2 tokens nll 0.5 (total 1) -> yes wins item 0
        table = {"Yes": (2.0, 1), "yes": (0.5, 2), "No": (3.0, 1), "no": (3.0, 1)}
        out = []
        for prompt, text in pairs:
            nll, n = (
                table[text]
                if prompt.startswith("p one")
                else (9.0, 1)
                if text in ("Yes", "yes")
                else (1.0, 1)
            )
            out.append(ContinuationScore(nll=nll, token_correct=[False] * n, all_correct=False))
        return out

    monkeypatch.setattr(general_mod, "score_continuations", scripted)
    view = _view(model, tok, 0)
    assert general_mod.likeliest_labels(view, task, prompts, 8) == [1, 0]
    assert seen == [(p.rstrip(), text) for p in prompts for text in ("Yes", "yes", "No", "no")]
    monkeypatch.undo()

    items = load_items(task, "bundled", 3)[0]
    got = general_mod.likeliest_labels(view, task, [item.prompt for item in items], 2)
    for item, label in zip(items, got):
        totals = []
        for text, _ in task.choices:
            prefix = tok(item.prompt.rstrip())["input_ids"]
            target = tok(" " + text, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([prefix + target])).logits[0].log_softmax(-1)
            totals.append(sum(float(logits[len(prefix) - 1 + j, t]) for j, t in enumerate(target)))
        assert label == pick_label(totals, task.choices)


def test_open_qa_normalisation_and_span_matching():
    assert normalize_answer("  The Eiffel-Tower, in PARIS!  ") == "eiffeltower in paris"
    assert normalize_answer("An apple a day") == "apple day"
    golds = ["Wilhelm Conrad Röntgen", "Röntgen"]
    assert soft_exact_match("It was Wilhelm Conrad Röntgen in 1901.", golds)  # middle span
    assert soft_exact_match("röntgen, obviously", golds)  # first word
    assert not soft_exact_match("Wilhelm Röntgenium", golds)  # no whole-word span
    assert not soft_exact_match("", golds)
    assert not soft_exact_match("the", ["The"])  # a gold that normalises to nothing never matches


def test_label_parsing_substring_rules_and_order():
    yes_no = (("yes", 1), ("no", 0))
    assert parse_label("Yes, it is", yes_no) == 1
    assert parse_label("I don't know", yes_no) == 0  # BoolQ quirk: "know" contains "no"
    assert parse_label("nothing", yes_no) == 0
    assert parse_label("maybe", yes_no) == INVALID
    assert parse_label("Yes or no", yes_no) == 1  # first keyword wins
    true_false = (("true", 1), ("false", 0))
    assert parse_label(" False", true_false) == 0
    assert parse_label("untrue", true_false) == 1  # substring, as the reference
    assert parse_label(" The", true_false) == INVALID
    false_true = (("false", 0), ("true", 1))  # AlphaEdit RTE order
    assert parse_label("true or false", false_true) == 0
    mmlu = TASKS["mmlu"]
    assert mmlu.predict("Answer:", " C\nQuestion") == 2
    assert mmlu.predict("Answer:", " C") == INVALID  # needs the newline, as the reference
    assert mmlu.predict("Answer:", " formula\n") == 0  # "a\n" quirk kept


@pytest.mark.parametrize(
    "name,continuation,expected",
    [
        ("reasoning", " 18.\nQ: next", "18.\nQ: next"),
        ("open_qa", " Paris\nAnswer: Lyon", "Lyon"),  # a repeated marker: the text after the last one
        ("nli", " True", 1),
        ("nli", " The", INVALID),
        ("closed_qa", " no", 0),
        ("closed_qa", "yes", 1),
        ("sst2", " negative, not positive", 1),  # "positive" is tested first
        ("mrpc", " No, yes", 1),
        ("cola", " Not", 0),
        ("rte", " True or False", 0),  # "false" is tested first
        ("rte_alphaedit", " true", 1),
        ("glue_nli", " True or False", 1),
        ("mmlu", " (B)\nb\n", 1),
    ],
)
def test_each_task_reads_its_answer(name, continuation, expected):
    prompts = {
        "reasoning": "Q: q A:Let's think step by step. r\n Therefore, the answer (arabic numerals) is:",
        "open_qa": "Refer ...\nQuestion: q\nAnswer:",
        "nli": "Is the answer: x? a entails b. True or False? answer:",
        "closed_qa": "... question: q. answer: ",
        "sst2": "Review :x\nSentiment :",
        "mrpc": "...\nAnswer:",
        "cola": "...\nAnswer: ",
        "rte": "a\nquestion: b True or False?\nanswer:",
        "rte_alphaedit": "a\nquestion: b True or False?\nanswer:",
        "glue_nli": "a entails the b True or False? Answer:",
        "mmlu": "Question: q\n(A) a\nAnswer:",  # "(A) a\n" in the prompt must not count
    }
    assert TASKS[name].predict(prompts[name], continuation) == expected


def test_label_metrics_by_hand():
    golds, preds = [1, 0, 1, 0], [1, 1, INVALID, 0]
    sphere = label_metrics(golds, preds, exclude_invalid=True)
    # valid items: hit, miss, hit -> 2/3; se = s/sqrt(n) with s^2 = 1/3, n = 3 -> 1/3
    assert sphere["acc"] == pytest.approx(200 / 3)
    assert sphere["se"] == pytest.approx(100 / 3)
    assert sphere["invalid"] == pytest.approx(25.0)
    # class 1: P = R = 1/2 -> F1 1/2; class 0: P = 1, R = 1/2 -> F1 2/3; weighted by support 2:2
    assert sphere["f1"] == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    # multi-class MCC: c=2, s=4, t=(0,2,2), p=(1,1,2) -> (8-6)/sqrt((16-6)(16-8))
    assert sphere["mcc"] == pytest.approx(2 / math.sqrt(80))
    glue = label_metrics(golds, preds, exclude_invalid=False)
    assert glue["acc"] == pytest.approx(50.0)
    assert glue["f1"] == sphere["f1"] and glue["mcc"] == sphere["mcc"]
    perfect = label_metrics([0, 1, 1], [0, 1, 1], exclude_invalid=True)
    assert (perfect["acc"], perfect["f1"], perfect["mcc"], perfect["se"]) == (100.0, 100.0, 1.0, 0.0)
    all_invalid = label_metrics([0, 1], [INVALID, INVALID], exclude_invalid=True)
    assert all_invalid["acc"] == 0.0 and all_invalid["invalid"] == 100.0 and math.isnan(all_invalid["se"])


# --- readers and bundled files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,n_rows,first_gold",
    [
        ("reasoning", 100, "18"),
        ("nli", 100, 0),
        ("open_qa", 100, ("Wilhelm Conrad Röntgen",)),
        ("closed_qa", 100, 0),
        ("sst2", 856, 1),
        ("mrpc", 258, 1),
        ("cola", 644, 1),
        ("rte", 262, 0),
        ("rte_alphaedit", 262, 1),
        ("mmlu", 1516, 0),
        ("glue_nli", 2489, 0),
    ],
)
def test_bundled_files_read(name, n_rows, first_gold):
    task = TASKS[name]
    rows = load_rows(task, BUNDLED_DIR / task.bundled)
    assert len(rows) == n_rows
    assert rows[0].gold == first_gold
    items, note = load_items(task, "bundled", 500)
    assert len(items) == min(500, n_rows - task.skip)
    assert items[0] == rows[task.skip]  # AlphaEdit sets start after their 10 few-shot rows
    assert task.title in note and str(len(items)) in note


def test_raw_fields_of_bundled_files():
    reasoning = read_jsonl(BUNDLED_DIR / "test-reasoning.jsonl.gz")
    assert set(reasoning[0]) == {"question", "answer"}
    nli = read_nli_tsv(BUNDLED_DIR / "test-NLI.tsv.gz")
    assert set(nli[0]) == {"index", "sentence1", "sentence2", "label"}
    assert {r["label"] for r in nli} == {"entailment", "not_entailment"}
    # quotes survive (the reference's csv.reader would drop them from row 50 of the full file)
    assert any(r["sentence1"].startswith('"') for r in nli)


def _make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_alphaedit_sets_are_the_complete_shared_files():
    complete = [
        (name, sha) for name, (_, sha, _), keep, _ in _make_samples().GENERAL_SOURCES if keep == "all"
    ]
    assert len(complete) == 6
    for name, sha in complete:
        data = gzip.decompress((BUNDLED_DIR / name).read_bytes())
        assert hashlib.sha256(data).hexdigest() == sha, name


def test_samples_md_lists_the_general_ability_files():
    """The general-ability table of data/SAMPLES.md matches the committed files and the task table."""
    rows = re.findall(
        r"\| `data/general_ability/(\S+)` \| ([\w, ]+) \| [\d,]+ \| [\d,]+ \| `([0-9a-f]{64})` \|",
        (ROOT / "data" / "SAMPLES.md").read_text(),
    )
    assert {name for name, _, _ in rows} == {task.bundled for task in TASKS.values()}
    for name, tasks, sha in rows:
        assert hashlib.sha256(gzip.decompress((BUNDLED_DIR / name).read_bytes())).hexdigest() == sha, name
        assert all(TASKS[t].bundled == name for t in tasks.split(", "))
    total = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert total < 1_000_000  # the repository's bundled data stays small


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_files_give_one_line_errors(tmp_path):
    bad_json = _write(tmp_path / "a.jsonl", '{"question": "q", "answer": "x #### 1"}\n{"question": \n')
    with pytest.raises(ValueError, match=r"line 2 is not valid JSON"):
        read_jsonl(bad_json)
    no_gold = _write(
        tmp_path / "b.jsonl", '{"question": "q", "answer": "x #### 1"}\n{"question": "q", "answer": "x"}\n'
    )
    with pytest.raises(ValueError, match=r"malformed reasoning row 1: field 'answer': expected exactly one"):
        load_rows(TASKS["reasoning"], no_gold)
    missing = _write(tmp_path / "c.jsonl", '{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"row 0: missing field 'answer'"):
        load_rows(TASKS["reasoning"], missing)
    header = _write(tmp_path / "d.tsv", "idx\ts1\ts2\tlabel\n")
    with pytest.raises(ValueError, match="expected the tab-separated header"):
        read_nli_tsv(header)
    short = _write(tmp_path / "e.tsv", "index\tsentence1\tsentence2\tlabel\n0\tonly two\n")
    with pytest.raises(ValueError, match="line 2 has 2 tab-separated fields, expected 4"):
        read_nli_tsv(short)
    label = _write(tmp_path / "f.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
    with pytest.raises(ValueError, match=r"field 'label' is str 'neutral'; allowed"):
        load_rows(TASKS["nli"], label)
    glue = _write(tmp_path / "g.json", json.dumps([{"sentence": "s", "label": True}]))
    with pytest.raises(ValueError, match=r"field 'label' must be int, got boolean true"):
        load_rows(TASKS["sst2"], glue)
    mmlu = _write(tmp_path / "h.json", json.dumps([{"question": "q", "choices": ["a"], "answer": 0}]))
    with pytest.raises(ValueError, match="list of 4 strings"):
        load_rows(TASKS["mmlu"], mmlu)
    with pytest.raises(FileNotFoundError, match="download_data.py rect_nli"):
        load_rows(TASKS["nli"], dl.DEFAULT_DEST / "general_ability" / "absent.tsv")


# --- prompts, exactly as the references build them -------------------------------------------------------


def _prompt(name: str, row: dict) -> str:
    return TASKS[name].build(row).prompt


def test_prompts_are_exact():
    assert _prompt("reasoning", {"question": "Q1?", "answer": "Work.\n#### 7"}) == (
        "Q: Q1? A:Let's think step by step. Work.\n Therefore, the answer (arabic numerals) is:"
    )
    assert _prompt("nli", {"sentence1": "A b.", "sentence2": "C.", "label": "entailment"}) == (
        "A b. entails C.. True or False? answer:"
    )
    assert _prompt("open_qa", {"question": "who?", "answer": ["x"], "output": ["P1", "P2"]}) == (
        "Refer to the passage below and answer the following question.\nPassage: P1\nQuestion: who?\nAnswer:"
    )
    assert _prompt("closed_qa", {"question": "is it", "passage": "Text.", "answer": True}) == (
        "Please answer the given question based on the passage. The answer should be exact 'yes' or 'no'. "
        "passage: Text. question: is it. answer: "
    )
    assert _prompt("sst2", {"sentence": "good film ", "label": 1}) == "Review :good film \nSentiment :"
    assert _prompt("mrpc", {"sentence1": "A", "sentence2": "B", "label": 0}) == (
        "Are the sentences paraphrases of each other.\nSentence 1: A\nSentence 2: B\nAnswer:"
    )
    assert _prompt("cola", {"sentence": "S.", "label": 0}) == (
        "Is this sentence linguistically acceptable?\nSentence: S.\nAnswer: "
    )
    assert _prompt("rte", {"sentence1": "A.", "sentence2": "B.", "label": 0}) == (
        "A.\nquestion: B. True or False?\nanswer:"
    )
    assert _prompt("mmlu", {"question": "Q?", "choices": ["w", "x", "y", "z"], "answer": 3}) == (
        "Question: Q?\n(A) w\n(B) x\n(C) y\n(D) z\nAnswer:"
    )
    assert _prompt("glue_nli", {"sentence1": "A.", "sentence2": "B.", "label": "entailment"}) == (
        "A. entails the B. True or False? Answer:"
    )


def test_budgets_and_gold_polarity():
    budgets = {name: task.max_new_tokens for name, task in TASKS.items()}
    assert budgets == {
        "reasoning": 5,
        "nli": 1,
        "open_qa": 20,
        "closed_qa": 1,
        **{n: 5 for n in ("sst2", "mrpc", "cola", "rte", "rte_alphaedit", "mmlu", "glue_nli")},
    }
    row = {"sentence1": "A.", "sentence2": "B.", "label": 0}  # GLUE RTE label 0 = entailment
    assert TASKS["rte"].build(row).gold == 1 and TASKS["rte_alphaedit"].build(row).gold == 0
    assert TASKS["closed_qa"].build({"question": "q", "passage": "p", "answer": False}).gold == 0


# --- downloads ----------------------------------------------------------------------------------------------


def test_full_files_are_downloadable_with_checksums(monkeypatch, tmp_path):
    for name in ("rect_reasoning", "rect_nli", "rect_open_qa", "rect_closed_qa"):
        assert dl.FILES[name].startswith("general_ability/")
        assert len(dl.EXPECTED_SHA256[name] or "") == 64
        assert dl.URLS[name].startswith("https://raw.githubusercontent.com/PlusLabNLP/SPHERE/6e8978a8")
        assert dl.URLS[name].endswith("/data/task-data/" + dl.FILES[name].split("/")[-1])
    for task in TASKS.values():
        assert task.download is None or task.download in dl.FILES
    seen = []

    def fake_fetch(url, tmp, timeout, progress, label):
        seen.append(url)
        Path(tmp).write_bytes(b"x")
        return hashlib.sha256(b"x").hexdigest()

    monkeypatch.setattr(dl, "_fetch", fake_fetch)
    expected = {"rect_nli": hashlib.sha256(b"x").hexdigest()}
    path = dl.download("rect_nli", tmp_path, expected_sha256=expected, progress=False)
    assert path == tmp_path / "general_ability" / "test-NLI.tsv" and seen == [dl.URLS["rect_nli"]]
    dl.download("rect_nli", tmp_path / "m", "http://mirror/x", expected_sha256=expected, progress=False)
    assert seen[-1] == "http://mirror/x/general_ability/test-NLI.tsv"


# --- the evaluator ------------------------------------------------------------------------------------------


def test_unknown_task_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"unknown general-ability task\(s\) 'gsm8k'; known: reasoning, nli"):
        GeneralAbility(_cfg(tasks=["reasoning", "gsm8k"]))


def test_evaluator_keys_and_ranges_on_a_tiny_model(tiny_llama):
    model, tok = tiny_llama
    ev = get_evaluator("general")(_cfg(tasks=list(TASKS), n_items=3, every=0))
    assert ev.moments == {"pre", "batch", "final"}
    out = ev("pre", _view(model, tok, 0))
    label_tasks = [n for n in TASKS if n not in ("reasoning", "open_qa")]
    expected = {f"general/{n}{s}" for n in TASKS for s in ("", "_se")} | {
        "general/mean",
        "general/mean_strict",
    }
    expected |= {f"general/{n}_{m}" for n in label_tasks for m in ("f1", "mcc", "invalid")}
    expected |= {f"general/{n}_strict{s}" for n in [*label_tasks, "reasoning"] for s in ("", "_se")}
    expected |= {f"general/{n}_strict_{m}" for n in label_tasks for m in ("f1", "mcc")}
    assert set(out) == expected
    for key, value in out.items():
        if key.endswith("_mcc"):
            assert -1.0 <= value <= 1.0
        elif not math.isnan(value):
            assert 0.0 <= value <= 100.0, key
    assert out["general/mean"] == pytest.approx(sum(out[f"general/{n}"] for n in TASKS) / len(TASKS))
    strict_tasks = [n for n in TASKS if n != "open_qa"]  # open QA has no strict variant
    assert out["general/mean_strict"] == pytest.approx(
        sum(out[f"general/{n}_strict"] for n in strict_tasks) / len(strict_tasks)
    )
    assert (
        "not comparable" in ev.notes["general/closed_qa"] and "complete AlphaEdit" in ev.notes["general/mmlu"]
    )
    again = ev("final", _view(model, tok, 7))  # greedy: the same model gives the same numbers (NaN too)
    assert json.dumps(again, sort_keys=True) == json.dumps(out, sort_keys=True)


def test_evaluator_scores_what_the_model_generates(monkeypatch, tiny_llama):
    """Scripted generations: the wiring from prompts to metric keys is checked number by number."""
    model, tok = tiny_llama
    calls = []

    def scripted(model_, tok_, prompts, *, max_new_tokens, batch_size, top_k, desc=None):
        calls.append((len(prompts), max_new_tokens, batch_size, top_k))
        return [" no", " I don't know", " maybe"][: len(prompts)]

    monkeypatch.setattr(general_mod, "generate_texts", scripted)
    ev = GeneralAbility(_cfg(tasks=["closed_qa"], n_items=3, batch_size=4))
    golds = [item.gold for item in ev.items["closed_qa"]]
    assert golds == [0, 1, 1]  # first three BoolQ rows of the bundled sample
    out = ev("pre", _view(model, tok, 0))
    assert calls == [(3, 1, 4, 0)]  # one batched greedy call with the task's budget
    # predictions 0, 0 ("know" contains "no"), invalid -> valid items: hit, miss -> 50 %
    assert out["general/closed_qa"] == pytest.approx(50.0)
    # F1: class 0 has P = 1/2, R = 1 (F1 2/3, support 1); class 1 F1 0 (support 2) -> 2/9
    assert out["general/closed_qa_f1"] == pytest.approx(100 * 2 / 9)
    assert out["general/closed_qa_invalid"] == pytest.approx(100 / 3)
    assert out["general/mean"] == out["general/closed_qa"]
    # strict: the likeliest label, not the generation; never invalid
    chosen = general_mod.likeliest_labels(
        _view(model, tok, 0), TASKS["closed_qa"], [i.prompt for i in ev.items["closed_qa"]], 4
    )
    assert out["general/closed_qa_strict"] == pytest.approx(
        100 * sum(c == g for c, g in zip(chosen, golds)) / 3
    )
    assert out["general/mean_strict"] == out["general/closed_qa_strict"]
    assert "general/closed_qa_strict_invalid" not in out


def test_batched_generation_matches_one_prompt_at_a_time(tiny_llama):
    model, tok = tiny_llama
    prompts = [item.prompt for item in load_items(TASKS["mmlu"], "bundled", 4)[0]]
    batched = generate_texts(model, tok, prompts, max_new_tokens=5, batch_size=4)
    single = [generate_texts(model, tok, [p], max_new_tokens=5, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_every_schedule_and_resume(monkeypatch, tiny_llama):
    model, tok = tiny_llama
    measured = []
    monkeypatch.setattr(
        GeneralAbility,
        "evaluate_task",
        lambda self, name, items, view: measured.append(view.n_edits) or {"acc": 1.0},
    )
    ev = GeneralAbility(_cfg(tasks=["reasoning"], n_items=2, every=4))
    results = {
        n: ev(moment, _view(model, tok, n))
        for moment, n in [("pre", 0), *(("batch", k) for k in (3, 4, 6, 7, 13))]
    }
    assert measured == [0, 4, 13]  # 13 crosses 8 and 12: measured once
    assert results[3] == {} and results[4] == {"general/reasoning": 1.0, "general/mean": 1.0}
    state = json.loads(json.dumps(ev.state_dict()))
    resumed = GeneralAbility(_cfg(tasks=["reasoning"], n_items=2, every=4))
    resumed.load_state_dict(state)
    measured.clear()
    resumed("batch", _view(model, tok, 15))
    resumed("batch", _view(model, tok, 16))
    final = resumed("final", _view(model, tok, 16))
    assert measured == [16]  # the final moment reuses the measurement of the batch that reached 16
    assert final == {"general/reasoning": 1.0, "general/mean": 1.0}
    resumed("final", _view(model, tok, 17))
    assert measured == [16, 17]
    never = GeneralAbility(_cfg(tasks=["reasoning"], n_items=2, every=0))
    assert never("batch", _view(model, tok, 100)) == {}


def test_full_source_without_download_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr("sphere.evaluation.general_tasks.DEFAULT_DEST", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"scripts/download_data.py rect_open_qa"):
        GeneralAbility(_cfg(tasks=["open_qa"], source="full"))
    items, note = load_items(TASKS["sst2"], "full", 5)  # AlphaEdit sets: the bundled file is complete
    assert len(items) == 5 and "complete AlphaEdit set" in note


def test_task_table_is_declarative():
    for name, task in TASKS.items():
        assert isinstance(task, GeneralTask) and task.name == name
        assert (BUNDLED_DIR / task.bundled).is_file()
        assert task.skip == (10 if task.download is None else 0)
