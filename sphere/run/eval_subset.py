"""``eval.subset``: which edited records an intermediate (scheduled) evaluation measures.

A long run evaluates every ``eval.every`` edits the records edited so far, so its evaluation cost
grows with the square of its length. ``eval.subset=k`` measures, at those intermediate points,
only the edited records among a fixed random subset of k positions of the record stream; the
final evaluation still measures every edited record.

Why a subset of the *stream*, drawn once: it must be the same set at every point, in a resumed
run and in both runs of a SPHERE on/off pair (same ``run.seed``, same records), so that curves are
comparable point by point and paired. Its part among the first n edited records is then nested as
n grows: a record, once measured, stays measured. Nested sets cannot all have k members, so the
subset is spread over the whole stream: one position drawn uniformly from each of k equal strata
of it (stratified, so that after n of N edits about k·n/N records are measured, never more than k,
rather than a count that varies by chance).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from sphere.data.records import EditRecord


def subset_positions(n_records: int, size: int | None, seed: int) -> frozenset[int] | None:
    """The stream positions ``eval.subset`` measures: one drawn from each of ``size`` equal strata of
    ``range(n_records)`` with a generator seeded by ``seed``; None (all records) when ``size`` is
    None or not below ``n_records``.

    The generator is seeded from a string that names its purpose, so the subset does not depend
    on (or echo) the draws of the dataset shuffle, which uses the same run seed."""
    if size is None or size >= n_records:
        return None
    if size < 1:
        raise ValueError(f"eval.subset={size} must be a positive integer or null (all records)")
    rng = random.Random(f"sphere.eval.subset/{seed}")
    bounds = [j * n_records // size for j in range(size + 1)]
    return frozenset(rng.randrange(lo, hi) for lo, hi in zip(bounds, bounds[1:]))


def edited_subset(
    batches: Sequence[Sequence[EditRecord]],
    batches_done: int,
    skipped: Collection[int],
    keep: frozenset[int] | None,
) -> list[EditRecord]:
    """The records edited so far (the first ``batches_done`` batches, ``skipped`` ones left out)
    whose stream position is in ``keep`` (all of them when ``keep`` is None), in stream order."""
    out: list[EditRecord] = []
    start = 0
    for b, batch in enumerate(batches):
        if b >= batches_done:
            break
        if b not in skipped:
            out += [r for j, r in enumerate(batch) if keep is None or start + j in keep]
        start += len(batch)
    return out
