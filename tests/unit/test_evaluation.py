"""Evaluation metrics on tiny in-process models with the bundled real tokenizers (CPU, offline)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import transformers

from sphere.data.records import EditRecord
from sphere.evaluation import aggregate, evaluate_counterfact, evaluate_records, evaluate_zsre
from sphere.evaluation.scoring import encode_pair, score_continuations
from sphere.models.tokenizers import load_bundled_tokenizer

TOKENIZERS = ("llama3", "qwen2", "gpt2")

# prefixes of very different lengths so right padding and per-row gather positions matter
PAIRS = [
    ("The capital of France is", "Paris"),
    ("Hi", "New York City"),
    ("In a surprising turn of events that nobody predicted, the Eiffel Tower is located in", "Rome"),
    ("The mother tongue of Danielle Darrieux is", "French"),
    ("Apple A5 is created by", " Google"),  # already spaced: must not get a second space
]


def _tiny_model(name: str, vocab: int) -> torch.nn.Module:
    """A 2-layer random causal LM of the family matching tokenizer ``name``."""
    torch.manual_seed(0)
    if name == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256)
        return transformers.GPT2LMHeadModel(cfg).eval()
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    if name == "llama3":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common)).eval()


@pytest.fixture(scope="module", params=TOKENIZERS)
def lm(request):
    tok = load_bundled_tokenizer(request.param)
    return request.param, _tiny_model(request.param, len(tok)), tok


@pytest.fixture(scope="module")
def gpt2_tok():
    return load_bundled_tokenizer("gpt2")


class OracleLM(torch.nn.Module):
    """Peeks at the next input token and puts a huge logit on it (``shift=1``): every target token is the
    argmax with NLL ≈ 0. ``shift=2`` predicts one token too far ahead, to catch off-by-one gathers."""

    def __init__(self, vocab: int, shift: int = 1):
        super().__init__()
        self.vocab, self.shift = vocab, shift
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, logits_to_keep=None):
        nxt = torch.roll(input_ids, -self.shift, dims=1)
        return SimpleNamespace(
            logits=_keep(torch.nn.functional.one_hot(nxt, self.vocab).float() * 40.0, logits_to_keep)
        )


class UnigramLM(torch.nn.Module):
    """Same next-token distribution everywhere: ``softmax(bias)``, whatever the input."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = torch.nn.Parameter(bias.clone())

    def forward(self, input_ids, attention_mask=None, logits_to_keep=None):
        return SimpleNamespace(logits=_keep(self.bias.expand(*input_ids.shape, -1), logits_to_keep))


def _keep(logits: torch.Tensor, keep) -> torch.Tensor:
    """Hugging Face's ``logits_to_keep``: None/0 all positions, an int the last n, a tensor those positions."""
    if keep is None or (isinstance(keep, int) and keep == 0):
        return logits
    return logits[:, -keep:] if isinstance(keep, int) else logits[:, keep]


def _naive_score(model, tok, prefix: str, target: str) -> tuple[float, list[bool]]:
    """One unpadded sequence, log_softmax over the full logits: the slow, obviously-right version."""
    prefix_ids = tok(prefix).input_ids
    target_ids = tok(target if target.startswith(" ") else " " + target, add_special_tokens=False).input_ids
    ids = torch.tensor([prefix_ids + target_ids])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].double().log_softmax(-1)
    nll, hits = 0.0, []
    for j, t in enumerate(target_ids):
        row = logp[len(prefix_ids) + j - 1]
        nll -= row[t].item()
        hits.append(int(row.argmax()) == t)
    return nll / len(target_ids), hits


def _cf_records() -> list[EditRecord]:
    return [
        EditRecord(
            case_id=0,
            kind="counterfact",
            prompt="The mother tongue of {} is",
            subject="Danielle Darrieux",
            target_new="English",
            target_true="French",
            paraphrase_prompts=(
                "Shayna does this. Danielle Darrieux spoke the language",
                "Danielle Darrieux's mother tongue is",
            ),
            neighborhood_prompts=(
                "The mother tongue of Léon Blum is",
                "Michel Rocard is a native speaker of",
                "Jean Jaurès speaks",
            ),
            neighborhood_targets=("French", "French", "French"),
        ),
        EditRecord(
            case_id=1,
            kind="counterfact",
            prompt="{}, a product created by",
            subject="Apple A5",
            target_new="Google",
            target_true="Apple",
            paraphrase_prompts=("Apple A5 is developed by",),
            neighborhood_prompts=("iPhone is created by",),
            neighborhood_targets=(),  # falls back to target_true
        ),
        EditRecord(
            case_id=2,
            kind="counterfact",
            prompt="{} is located in the continent of",
            subject="Danube",
            target_new="South America",
            target_true="Europe",
            paraphrase_prompts=("The Danube flows through",),
            neighborhood_prompts=("The Rhine is located in the continent of", "Paris is in"),
            neighborhood_targets=("Europe", "Europe"),
        ),
    ]


def _zsre_records() -> list[EditRecord]:
    return [
        EditRecord(
            case_id=0,
            kind="zsre",
            prompt="What university did {} attend?",
            subject="Watts Humphrey",
            target_new="University of Michigan",
            target_true=None,
            paraphrase_prompts=("What university did Watts Humphrey take part in?",),
            neighborhood_prompts=("nq question: who played desmond doss father in hacksaw ridge?",),
            neighborhood_targets=("Hugo Weaving",),
        ),
        EditRecord(
            case_id=1,
            kind="zsre",
            prompt="Which family does {} belong to?",
            subject="Ramalinaceae",
            target_new="Lecanorales",
            target_true=None,
            paraphrase_prompts=("What family are Ramalinaceae?", "Ramalinaceae belongs to which family?"),
            neighborhood_prompts=("nq question: types of skiing in the winter olympics 2018?",),
            neighborhood_targets=("Downhill",),
        ),
        EditRecord(
            case_id=2,
            kind="zsre",
            prompt="What is the native language of {}?",
            subject="Dick Lucas",
            target_new="English",
            target_true=None,
            paraphrase_prompts=(),
            neighborhood_prompts=(),
            neighborhood_targets=(),
        ),
    ]


CF_KEYS = {
    f"{g}_{m}"
    for g in ("rewrite", "paraphrase", "neighborhood")
    for m in ("success", "magnitude", "top1", "token_acc", "success_prompts", "top1_prompts")
} | {"case_id"}


# (a) + (b) ------------------------------------------------------------------------------------------------


def test_token_ids_are_exact(lm):
    name, _, tok = lm
    prefix_ids, target_ids = encode_pair(tok, "The capital of France is", "Paris")
    # BOS by token id, only where the tokenizer adds it
    assert (prefix_ids[0] == 128000) == (name == "llama3")
    assert tok.bos_token_id is None or tok.bos_token_id not in target_ids
    assert tok.decode(target_ids) == " Paris"
    assert encode_pair(tok, "x", " Paris")[1] == target_ids  # pre-spaced target is not double-spaced


def test_batched_scores_match_naive_unpadded(lm):
    _, model, tok = lm
    got = score_continuations(model, tok, PAIRS, batch_size=len(PAIRS))
    for (prefix, target), score in zip(PAIRS, got):
        nll, hits = _naive_score(model, tok, prefix, target)
        assert score.nll == pytest.approx(nll, abs=1e-5)
        assert score.token_correct == hits
        assert score.all_correct == all(hits)
        assert score.prob == pytest.approx(math.exp(-nll), abs=1e-5)


def test_batch_size_does_not_change_results(lm):
    _, model, tok = lm
    ref = score_continuations(model, tok, PAIRS, batch_size=len(PAIRS))
    for bs in (1, 2, 3):
        got = score_continuations(model, tok, PAIRS, batch_size=bs)
        assert [g.token_correct for g in got] == [r.token_correct for r in ref]
        assert [g.nll for g in got] == pytest.approx([r.nll for r in ref], abs=1e-5)


def test_model_mode_is_restored(gpt2_tok):
    model = _tiny_model("gpt2", len(gpt2_tok)).train()
    score_continuations(model, gpt2_tok, PAIRS[:2])
    assert model.training


# (c) ------------------------------------------------------------------------------------------------------


def test_oracle_model_is_all_correct_and_off_by_one_is_not(gpt2_tok):
    vocab = len(gpt2_tok)
    good = score_continuations(OracleLM(vocab), gpt2_tok, PAIRS)
    assert all(s.all_correct for s in good)
    assert all(s.nll < 1e-6 for s in good)
    bad = score_continuations(OracleLM(vocab, shift=2), gpt2_tok, PAIRS)
    assert not any(s.all_correct for s in bad)


def test_aggregate_counterfact_percentages_and_harmonic_mean():
    rows = [
        {
            "case_id": 0,
            "rewrite_success": 1.0,
            "paraphrase_success": 0.5,
            "neighborhood_success": 1.0,
            "rewrite_magnitude": 0.2,
            "paraphrase_magnitude": 0.1,
            "neighborhood_magnitude": -0.1,
            "rewrite_top1": 1.0,
            "paraphrase_top1": 0.0,
            "neighborhood_top1": 1.0,
            "rewrite_token_acc": 1.0,
            "paraphrase_token_acc": 0.5,
            "neighborhood_token_acc": 0.75,
        },
        {
            "case_id": 1,
            "rewrite_success": 0.0,
            "paraphrase_success": math.nan,
            "neighborhood_success": 0.5,
            "rewrite_magnitude": -0.2,
            "paraphrase_magnitude": math.nan,
            "neighborhood_magnitude": 0.3,
            "rewrite_top1": 0.0,
            "paraphrase_top1": math.nan,
            "neighborhood_top1": 0.0,
            "rewrite_token_acc": 0.5,
            "paraphrase_token_acc": math.nan,
            "neighborhood_token_acc": 0.25,
        },
    ]
    out = aggregate(rows)
    assert out["n_records"] == 2
    assert out["efficacy"] == pytest.approx(50.0)
    assert out["efficacy_se"] == pytest.approx(50.0)  # cases 1, 0: sd 0.7071, se = sd/√2 = 0.5 → 50
    assert math.isnan(out["generalization_se"])  # one finite case: no spread to estimate
    assert out["generalization"] == pytest.approx(50.0)  # the NaN (no paraphrases) is skipped
    assert out["specificity"] == pytest.approx(75.0)
    assert out["efficacy_top1"] == pytest.approx(50.0)
    assert out["specificity_top1"] == pytest.approx(50.0)
    assert out["efficacy_magnitude"] == pytest.approx(0.0)
    assert out["specificity_magnitude"] == pytest.approx(10.0)
    assert out["efficacy_token_acc"] == pytest.approx(75.0)
    assert out["specificity_token_acc"] == pytest.approx(50.0)
    assert out["score"] == pytest.approx(3 / (1 / 50 + 1 / 50 + 1 / 75))

    rows[0]["rewrite_success"] = 0.0
    assert aggregate(rows)["score"] == 0.0
    assert aggregate([]) == {}


def test_aggregate_zsre_and_mixed_rows():
    rows = [
        {"case_id": 0, "rewrite_acc": 1.0, "paraphrase_acc": 0.5, "neighborhood_acc": 0.25},
        {"case_id": 1, "rewrite_acc": 0.5, "paraphrase_acc": 0.5, "neighborhood_acc": 0.75},
    ]
    for r, exact in zip(rows, (1.0, 0.0)):
        r.update(rewrite_exact=exact, paraphrase_exact=0.0, neighborhood_exact=1.0 - exact)
    out = aggregate(rows)
    assert out["efficacy_top1"] == pytest.approx(50.0)  # all-tokens convention: 1 of 2 answers in full
    # per-case standard error ×100: values 1.0, 0.5 → sd = 0.35355, se = sd/√2 = 0.25 → 25
    assert out["efficacy_se"] == pytest.approx(25.0)
    assert out["generalization_se"] == pytest.approx(0.0)
    assert out["efficacy"] == pytest.approx(75.0)
    assert out["generalization"] == pytest.approx(50.0)
    assert out["specificity"] == pytest.approx(50.0)
    assert out["specificity_token_acc"] == out["specificity"]
    assert out["score"] == pytest.approx(3 / (1 / 75 + 1 / 50 + 1 / 50))
    with pytest.raises(ValueError):
        aggregate(rows + [{"case_id": 2, "rewrite_success": 1.0}])


# (d) + (f) ------------------------------------------------------------------------------------------------


def test_evaluate_counterfact_keys_ranges_and_cross_record_batching():
    tok = load_bundled_tokenizer("llama3")
    model = _tiny_model("llama3", len(tok))
    records = _cf_records()
    rows = evaluate_counterfact(model, tok, records, batch_size=8)
    assert [r["case_id"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert set(row) == CF_KEYS
        for k, v in row.items():
            if k == "case_id":
                continue
            if k.endswith("_prompts"):  # per-prompt 0/1 outcomes, whose mean is the record's value
                assert set(v) <= {0, 1} and row[k.removesuffix("_prompts")] == pytest.approx(sum(v) / len(v))
                continue
            lo = -1.0 if k.endswith("magnitude") else 0.0
            assert lo <= v <= 1.0, (k, v)
        assert len(row["rewrite_success_prompts"]) == len(row["rewrite_top1_prompts"]) == 1
    # one record at a time must agree with all records batched together
    single = [evaluate_counterfact(model, tok, [r], batch_size=64)[0] for r in records]
    for a, b in zip(rows, single):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-5)
    # rewrite row equals a direct comparison of the two NLLs
    new, true = score_continuations(
        model,
        tok,
        [
            ("The mother tongue of Danielle Darrieux is", "English"),
            ("The mother tongue of Danielle Darrieux is", "French"),
        ],
    )
    assert rows[0]["rewrite_success"] == float(new.nll < true.nll)
    assert rows[0]["rewrite_magnitude"] == pytest.approx(new.prob - true.prob, abs=1e-6)
    assert aggregate(rows)["n_records"] == 3


@pytest.mark.parametrize("favour_new", [True, False])
def test_counterfact_magnitude_signs(gpt2_tok, favour_new):
    records = [r for r in _cf_records() if r.case_id == 1]  # " Google" vs " Apple": single tokens in GPT-2
    new_id = gpt2_tok(" Google").input_ids[0]
    true_id = gpt2_tok(" Apple").input_ids[0]
    bias = torch.zeros(len(gpt2_tok))
    bias[new_id], bias[true_id] = (5.0, 2.0) if favour_new else (2.0, 5.0)
    p = bias.softmax(-1)
    gap = (p[new_id] - p[true_id]).item()  # > 0 iff the model prefers the new object
    row = evaluate_counterfact(UnigramLM(bias), gpt2_tok, records)[0]
    want = float(favour_new)
    assert row["rewrite_success"] == row["paraphrase_success"] == want
    assert row["neighborhood_success"] == 1.0 - want
    assert row["rewrite_magnitude"] == pytest.approx(gap)
    assert row["paraphrase_magnitude"] == pytest.approx(gap)
    assert row["neighborhood_magnitude"] == pytest.approx(-gap)  # positive = true object still preferred
    assert row["rewrite_top1"] == row["paraphrase_top1"] == row["rewrite_token_acc"] == want
    assert row["neighborhood_top1"] == row["neighborhood_token_acc"] == 1.0 - want


# (e) ------------------------------------------------------------------------------------------------------


def test_evaluate_zsre_matches_per_prefix_argmax():
    tok = load_bundled_tokenizer("qwen2")
    model = _tiny_model("qwen2", len(tok))
    records = _zsre_records()
    rows = evaluate_zsre(model, tok, records, batch_size=4)
    groups = ("rewrite", "paraphrase", "neighborhood")
    keys = {"case_id", *(f"{g}_{m}" for g in groups for m in ("acc", "exact", "exact_prompts"))}
    assert [set(r) for r in rows] == [keys] * 3
    assert math.isnan(rows[2]["paraphrase_acc"]) and math.isnan(rows[2]["neighborhood_acc"])

    def per_prefix_acc(prompts, targets):
        # the reference's formulation: one prefix per gold token, argmax at the last position
        hits = []
        for prompt, target in zip(prompts, targets):
            prefix_ids, target_ids = encode_pair(tok, prompt, target)
            for i, gold in enumerate(target_ids):
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([prefix_ids + target_ids[:i]])).logits
                hits.append(int(logits[0, -1].argmax()) == gold)
        return sum(hits) / len(hits)

    def exact(prompt, target):  # the whole answer is the argmax at every position
        return per_prefix_acc([prompt], [target]) == 1.0

    for rec, row in zip(records[:2], rows[:2]):
        assert row["rewrite_exact"] == float(exact(rec.prompt.format(rec.subject), rec.target_new))
        assert row["rewrite_acc"] == pytest.approx(
            per_prefix_acc([rec.prompt.format(rec.subject)], [rec.target_new])
        )
        assert row["paraphrase_acc"] == pytest.approx(
            per_prefix_acc(rec.paraphrase_prompts, [rec.target_new] * len(rec.paraphrase_prompts))
        )
        assert row["neighborhood_acc"] == pytest.approx(
            per_prefix_acc(rec.neighborhood_prompts, rec.neighborhood_targets)
        )
        assert all(0.0 <= v <= 1.0 for k, v in row.items() if k != "case_id" and not k.endswith("_prompts"))
        assert row["rewrite_exact_prompts"] == [int(row["rewrite_exact"])]
        assert len(row["paraphrase_exact_prompts"]) == len(rec.paraphrase_prompts)
    assert rows[2]["paraphrase_exact_prompts"] == []  # no paraphrases: NaN mean, empty list


def test_evaluate_zsre_oracle_is_perfect(gpt2_tok):
    rows = evaluate_zsre(OracleLM(len(gpt2_tok)), gpt2_tok, _zsre_records()[:2])
    for row in rows:
        assert row["rewrite_acc"] == row["paraphrase_acc"] == row["neighborhood_acc"] == 1.0
        assert row["rewrite_exact"] == row["paraphrase_exact"] == row["neighborhood_exact"] == 1.0
    out = aggregate(rows)
    assert out["efficacy"] == out["generalization"] == out["specificity"] == out["score"] == 100.0
    assert out["efficacy_top1"] == out["specificity_top1"] == 100.0


def test_evaluate_records_dispatch(gpt2_tok):
    model = OracleLM(len(gpt2_tok))
    assert evaluate_records(model, gpt2_tok, [], 8) == []
    assert "rewrite_success" in evaluate_records(model, gpt2_tok, _cf_records()[:1], 8)[0]
    assert "rewrite_acc" in evaluate_records(model, gpt2_tok, _zsre_records()[:1], 8)[0]
    with pytest.raises(ValueError):
        evaluate_records(model, gpt2_tok, _cf_records()[:1] + _zsre_records()[:1], 8)
