"""Subject-token lookup and target ids on the real LLaMA-3 (BOS), Qwen2 (no BOS) and GPT-2 tokenizers."""

from __future__ import annotations

import pytest

from editors.core.requests import EditRequest, MalformedRequestError
from editors.core.tokens import encode, lookup_index, target_ids
from sphere.models.tokenizers import load_bundled_tokenizer

CASES = [
    ("The mother tongue of {} is", "Danielle Darrieux"),
    ("{} is a native speaker of", "Barack Obama"),
    ("Therefore the crowd cheered. In {}, the official language is", "Côte d'Ivoire"),
    ("What sport does {} play? They play", "LeBron James"),
]


@pytest.fixture(scope="module", params=["llama3", "qwen2", "gpt2"])
def tok(request):
    return load_bundled_tokenizer(request.param)


@pytest.mark.parametrize("template,subject", CASES)
def test_subject_last_points_at_last_subject_token(tok, template, subject):
    ids = tok(template.format(subject))["input_ids"]
    i = lookup_index(tok, template, subject, "subject_last")
    upto = tok.decode(ids[: i + 1], skip_special_tokens=True)
    before = tok.decode(ids[:i], skip_special_tokens=True)
    assert upto.rstrip().endswith(subject)  # the subject ends at this token ...
    assert not before.rstrip().endswith(subject)  # ... and not one token earlier
    # Positions are absolute: LLaMA-3's BOS (128000) is counted; Qwen2 and GPT-2 add none.
    assert (ids[0] == 128000) == (len(tok) == 128256)


def test_last_is_final_token(tok):
    template, subject = CASES[0]
    assert lookup_index(tok, template, subject, "last") == len(tok(template.format(subject))["input_ids"]) - 1


def test_lookup_is_padding_safe(tok):
    """In a right-padded batch, the looked-up position holds the same token as unpadded."""
    texts = [t.format(s) for t, s in CASES]
    batch = encode(tok, texts)
    for row, (t, s) in enumerate(CASES):
        single = tok(t.format(s))["input_ids"]
        i = lookup_index(tok, t, s)
        assert int(batch["input_ids"][row, i]) == single[i]
        assert int(batch["attention_mask"][row, : len(single)].sum()) == len(single)


def test_target_ids_have_no_bos(tok):
    ids = target_ids(tok, " French")
    assert ids and ids[0] != tok.bos_token_id
    assert tok.decode(ids) == " French"


def test_unknown_fact_token(tok):
    with pytest.raises(ValueError, match="editor.fact_token"):
        lookup_index(tok, "{} is", "x", "subject_first")


def test_malformed_requests():
    with pytest.raises(MalformedRequestError, match="exactly one"):
        EditRequest(1, "no placeholder", "x", "y")
    with pytest.raises(MalformedRequestError, match="empty subject"):
        EditRequest(2, "{} is", " ", "y")
    assert EditRequest(3, "{} is", "x", "y").target == " y"
