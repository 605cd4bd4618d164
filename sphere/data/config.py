"""The ``dataset`` config group: which records are edited, how many, in which batches."""

from __future__ import annotations

from dataclasses import dataclass

from sphere.errors import check_choice


@dataclass
class DatasetConfig:
    """Edit stream: records from ``path`` (a bundled name or a file), ``limit`` records in batches."""

    kind: str = "counterfact"
    path: str = "counterfact-sample"
    limit: int | None = 10
    batch_size: int = 5
    shuffle: bool = False
    skip_malformed: bool = False
    zsre_target: str = "answers"

    def __post_init__(self) -> None:
        check_choice("dataset.kind", self.kind, ("counterfact", "zsre"))
        check_choice("dataset.zsre_target", self.zsre_target, ("answers", "alt"))
        if self.batch_size < 1:
            raise ValueError(f"dataset.batch_size={self.batch_size} must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"dataset.limit={self.limit} must be >= 1 or null (all records)")
