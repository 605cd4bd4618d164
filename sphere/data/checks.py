"""Record checks that need a tokenizer, so the readers (which have none) cannot make them.

A target or prompt that tokenizes to nothing passes every text check (it is not blank: think of a
lone control character that the tokenizer's normalizer drops) but makes an editor or the evaluator
fail on an empty tensor, possibly hours into a sequential run. The runner calls ``check_tokenizable``
once the tokenizer is loaded, before the first edit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from editors.core.requests import MalformedRequestError
from editors.core.tokens import Tokenizer, target_ids
from sphere.data.reading import MalformedRecordError, show
from sphere.data.records import EditRecord


def _with_space(target: str) -> str:
    """A target as editors and evaluators tokenize it: after the prompt, with one leading space."""
    return target if target.startswith(" ") else " " + target


def _texts(record: EditRecord) -> Iterator[tuple[str, str]]:
    """``(field, text)`` for everything of a record that is tokenized during a run."""
    yield "target_new", record.request.target
    if record.target_true is not None:
        yield "target_true", _with_space(record.target_true)
    yield "prompt", record.request.text
    for i, prompt in enumerate(record.paraphrase_prompts):
        yield f"paraphrase_prompts[{i}]", prompt
    for i, prompt in enumerate(record.neighborhood_prompts):
        yield f"neighborhood_prompts[{i}]", prompt
    for i, target in enumerate(record.neighborhood_targets):
        yield f"neighborhood_targets[{i}]", _with_space(target)


def _empty_ids(tok: Tokenizer, texts: list[str]) -> list[int]:
    """Positions of the texts that tokenize to no ids (a lone BOS counts as none, as in ``target_ids``).

    One batched call per record: calling the tokenizer once per text costs ~20 s on the full
    CounterFact (about 15 texts per record); ``target_ids`` then confirms and words each failure.
    """
    batch = tok(texts, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    return [i for i, ids in enumerate(batch) if len(ids) == 0 or (len(ids) == 1 and ids[0] == bos)]


def check_tokenizable(
    records: Iterable[EditRecord], tok: Tokenizer, *, source: str | Path | None = None
) -> None:
    """Raise ``MalformedRecordError`` for the first record with a text that ``tok`` turns into no tokens.

    Checked: ``target_new`` and ``target_true`` (with the leading space editors add), the filled-in
    prompt, the paraphrase and neighbourhood prompts and the neighbourhood answers. ``source`` (the
    dataset file) is named in the message when given. Run it before editing: a record with such a
    text cannot be edited or evaluated, and ``skip_malformed`` cannot help because the readers do
    not know the tokenizer.
    """
    where = f"{source}: " if source is not None else ""
    for record in records:
        fields = list(_texts(record))
        for i in _empty_ids(tok, [text for _, text in fields]):
            name, text = fields[i]
            try:
                target_ids(tok, text)
            except MalformedRequestError:
                raise MalformedRecordError(
                    f"{where}record case_id={record.case_id}: {name} {show(text)} tokenizes to zero tokens "
                    "with this tokenizer; every target and prompt needs at least one token; "
                    "drop or repair the record"
                ) from None
