"""Typed dataset records: one ``EditRecord`` per CounterFact / ZsRE case, whatever the file schema."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from editors.core.requests import EditRequest


@dataclass(frozen=True)
class EditRecord:
    """One evaluation case.

    Attributes:
        case_id: the dataset's case id (CounterFact ``case_id``; ZsRE: row index).
        kind: "counterfact" or "zsre"; decides which metrics apply.
        prompt: template with one ``{}`` for the subject.
        subject: the subject.
        target_new: the new object the edit writes.
        target_true: the original object (CounterFact); ``None`` where the dataset has none (ZsRE).
        paraphrase_prompts: full prompts (subject filled in) that should also yield ``target_new``.
        neighborhood_prompts: full prompts about other subjects, whose answers must not change.
        neighborhood_targets: the expected answer for each neighborhood prompt (CounterFact: the
            record's ``target_true``; ZsRE: the NQ answer ``loc_ans``).
        relation_id: CounterFact relation (e.g. "P103") if known.
        generation_prompts: prompts for fluency/consistency generation tests, if the schema has them.
        target_new_id: the new object's Wikidata id (ROME schema), which keys its attribute snippets.
    """

    case_id: int
    kind: str
    prompt: str
    subject: str
    target_new: str
    target_true: str | None
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    neighborhood_targets: tuple[str, ...] = ()
    relation_id: str | None = None
    generation_prompts: tuple[str, ...] = field(default=())
    target_new_id: str | None = None

    @property
    def request(self) -> EditRequest:
        """The edit this record asks for, as editors take it."""
        return EditRequest(self.case_id, self.prompt, self.subject, self.target_new, self.target_true)


class RecordList(list[EditRecord]):
    """The records a reader kept, as a plain ``list``, plus how many malformed ones it skipped.

    ``skipped`` is 0 unless the reader ran with ``skip_malformed=True`` and dropped records; the run
    summary reports it so a silently shrunken edit stream is visible. Slicing and copying give plain
    lists (``RecordList(records[:n], skipped=records.skipped)`` keeps the count).
    """

    def __init__(self, records: Iterable[EditRecord] = (), skipped: int = 0) -> None:
        super().__init__(records)
        self.skipped = skipped

    def __repr__(self) -> str:
        return f"RecordList({list.__repr__(self)}, skipped={self.skipped})"
