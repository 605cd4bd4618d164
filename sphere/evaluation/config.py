"""The ``eval`` config group: which evaluators run, when, and HE's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from sphere.errors import check_choice


@dataclass
class HEConfig:
    """Hyperspherical energy Σ_{i≠j} (‖x̂_i − x̂_j‖² + eps)^(−power) of each edited matrix."""

    power: float = 1.0
    eps: float = 1e-4
    block_size: int = 1024
    normalized: bool = True


@dataclass
class GenerationConfig:
    """CounterFact generation test: fluency (n-gram entropy) and consistency (TF-IDF similarity).

    ``prompts``: ``dataset`` uses the records' ``generation_prompts`` (ROME schema) and skips
    records without them, with a note; ``edit_prompts`` generates from the rewrite and paraphrase
    prompts instead (for the EasyEdit schema), and the summary says so.
    ``snippets``/``tfidf``: ``auto`` uses the canonical attribute_snippets.json, idf.npy and
    tfidf_vocab.json when ``scripts/download_data.py generation`` has fetched them, else the
    labelled substitute documented in docs/metrics.md.
    """

    prompts: str = "dataset"
    max_length: int = 100
    top_k: int = 5
    every_case: int = 1
    batch_size: int = 16
    seed: int = 0
    snippets: str = "auto"
    tfidf: str = "auto"

    def __post_init__(self) -> None:
        check_choice("eval.generation.prompts", self.prompts, ("dataset", "edit_prompts"))
        for key in ("max_length", "every_case", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.generation.{key}={getattr(self, key)} must be >= 1")
        if self.top_k < 0:
            raise ValueError(f"eval.generation.top_k={self.top_k} must be >= 0 (0: greedy)")


@dataclass
class GeneralConfig:
    """General ability (spec §5): downstream tasks measured before editing and every ``every`` edits.

    ``tasks``: SPHERE/RECT tasks (reasoning, nli, open_qa, closed_qa) and AlphaEdit GLUE-style
    tasks (sst2, mrpc, cola, rte, rte_alphaedit, mmlu, glue_nli; AlphaEdit's sets start after their 10
    few-shot rows); ``n_items`` first items of each; ``source`` ``bundled`` (data/general_ability: SPHERE
    sets 100 rows, AlphaEdit sets complete) or ``full`` (scripts/download_data.py rect_*); ``every``:
    also after the batch that passes each multiple of ``every`` edits. See docs/general_ability.md.
    """

    tasks: list[str] = field(default_factory=lambda: ["reasoning", "nli", "open_qa", "closed_qa"])
    n_items: int = 500
    every: int = 0
    source: str = "bundled"
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_choice("eval.general.source", self.source, ("bundled", "full"))
        if self.n_items < 1:
            raise ValueError(f"eval.general.n_items={self.n_items} must be >= 1")
        if self.every < 0:
            raise ValueError(f"eval.general.every={self.every} must be >= 0 (0: before and after editing)")


@dataclass
class EvalConfig:
    """When and how edit quality is measured.

    ``protocol``: ``edited_so_far`` evaluates every record edited so far at each evaluation point
    (the paper's checkpoint evaluation; the final numbers cover all edits on the final model);
    ``last_batch`` evaluates each batch right after editing it and reports the mean of those
    immediate results (much higher numbers under forgetting: never compare the two).

    ``subset``: at the intermediate evaluations (every ``every`` edits) measure only the edited
    records among a fixed random subset of ``subset`` positions of the record stream, drawn once
    with ``run.seed`` (the same records in both runs of a SPHERE pair, nested as edits grow; about
    subset·n/N records after n of N edits); null measures all. The final evaluation always
    measures every edited record (sphere/run/eval_subset.py).
    """

    protocol: str = "edited_so_far"
    evaluators: list[str] = field(default_factory=lambda: ["edit_quality", "he"])
    every: int = 0
    subset: int | None = None
    pre: bool = True
    batch_size: int = 32
    he: HEConfig = field(default_factory=HEConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    general: GeneralConfig = field(default_factory=GeneralConfig)

    def __post_init__(self) -> None:
        check_choice("eval.protocol", self.protocol, ("edited_so_far", "last_batch"))
        if self.every < 0:
            raise ValueError(f"eval.every={self.every} must be >= 0 (0: evaluate only at the end)")
        if self.subset is not None and (
            isinstance(self.subset, bool) or not isinstance(self.subset, int) or self.subset < 1
        ):
            raise ValueError(
                f"eval.subset={self.subset!r} must be a positive integer (records measured at the "
                "intermediate evaluations) or null (all edited records)"
            )
