"""Edit requests: the one input every editor takes.

A request is a ROME-style rewrite: a prompt *template* with exactly one ``{}`` standing for the
subject, the subject, and the new (and optionally the true) object. Dataset readers in
``sphere.data`` turn their records into requests; editors never see dataset formats.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass


class MalformedRequestError(ValueError):
    """A request that no editor can use (no ``{}`` in the prompt, empty subject or target)."""


@dataclass(frozen=True)
class EditRequest:
    """One fact to write: ``prompt.format(subject)`` should be completed by ``target_new``.

    Attributes:
        case_id: id of the dataset record (kept for logs and checkpoints).
        prompt: template with exactly one ``{}`` for the subject, e.g. "The mother tongue of {} is".
        subject: the subject string substituted for ``{}``.
        target_new: the new object, e.g. "French". A leading space is added when tokenizing.
        target_true: the object the model knew before, if known (used by evaluation only).
    """

    case_id: int
    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None

    def __post_init__(self) -> None:
        # Checked here, not left to ``prompt.format``: a request built from a hand-written dict (see
        # ``sphere.api.as_request``) would otherwise fail deep inside an editor with an
        # AttributeError, KeyError or IndexError that names neither the request nor the field.
        is_int = isinstance(self.case_id, numbers.Integral) and not isinstance(self.case_id, bool)
        where = f"request case_id={self.case_id if is_int else repr(self.case_id)}"
        if not is_int:
            raise MalformedRequestError(f"{where}: case_id must be an int, got {type(self.case_id).__name__}")
        for name in ("prompt", "subject", "target_new"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise MalformedRequestError(f"{where}: {name} must be a str, got {type(value).__name__}")
        if self.target_true is not None and not isinstance(self.target_true, str):
            raise MalformedRequestError(
                f"{where}: target_true must be a str or None, got {type(self.target_true).__name__}"
            )
        if self.prompt.count("{}") != 1:
            raise MalformedRequestError(
                f"{where}: prompt {self.prompt!r} must contain exactly one '{{}}' for the subject; "
                "fix the record (CounterFact: requested_rewrite.prompt)"
            )
        if "{" in self.prompt.replace("{}", "") or "}" in self.prompt.replace("{}", ""):
            raise MalformedRequestError(
                f"{where}: prompt {self.prompt!r} has a brace besides the subject's '{{}}', which "
                "prompt.format(subject) cannot fill; remove it"
            )
        if not self.subject.strip():
            raise MalformedRequestError(f"{where}: empty subject; drop the record or fill in its subject")
        if not self.target_new.strip():
            raise MalformedRequestError(
                f"{where}: empty target_new; drop the record or fill in its new target"
            )

    @property
    def text(self) -> str:
        """The prompt with the subject filled in."""
        return self.prompt.format(self.subject)

    @property
    def target(self) -> str:
        """``target_new`` with the leading space every reference editor prepends."""
        return self.target_new if self.target_new.startswith(" ") else " " + self.target_new
