"""eval.subset: the fixed random subset of the record stream measured at intermediate evaluations."""

from __future__ import annotations

import pytest
from helpers import settings

from sphere.data.records import EditRecord
from sphere.errors import ConfigError
from sphere.run.eval_subset import edited_subset, subset_positions


def _records(n: int) -> list[EditRecord]:
    return [
        EditRecord(
            case_id=i,
            kind="counterfact",
            prompt="{} is in",
            subject=f"S{i}",
            target_new="Paris",
            target_true=None,
        )
        for i in range(n)
    ]


def test_subset_is_deterministic_stratified_and_seeded():
    keep = subset_positions(1000, 100, seed=7)
    assert keep == subset_positions(1000, 100, seed=7)  # the same in both runs of a pair, and on resume
    assert keep != subset_positions(1000, 100, seed=8)
    assert len(keep) == 100 and all(0 <= p < 1000 for p in keep)
    assert sorted(p // 10 for p in keep) == list(range(100))  # one position in each stratum of 10
    for n in (1, 10, 95, 250, 999):  # after n of N edits about k·n/N are measured, never more than k
        assert abs(sum(p < n for p in keep) - n / 10) <= 1
    uneven = subset_positions(10, 3, seed=0)  # strata [0,3), [3,6), [6,10)
    assert (
        len(uneven) == 3
        and [sum(lo <= p < hi for p in uneven) for lo, hi in ((0, 3), (3, 6), (6, 10))] == [1] * 3
    )


def test_subset_null_or_not_smaller_than_the_stream_is_everything():
    assert subset_positions(10, None, seed=0) is None
    assert subset_positions(10, 10, seed=0) is None and subset_positions(10, 50, seed=0) is None
    with pytest.raises(ValueError, match="eval.subset=0 must be a positive integer"):
        subset_positions(10, 0, seed=0)


def test_edited_subset_is_nested_and_skips_skipped_batches():
    records = _records(12)
    batches = [records[i : i + 3] for i in range(0, 12, 3)]
    keep = frozenset({1, 4, 5, 10})
    seen: list[list[int]] = []
    for done in range(5):
        seen.append([r.case_id for r in edited_subset(batches, done, [], keep)])
    assert seen == [[], [1], [1, 4, 5], [1, 4, 5], [1, 4, 5, 10]]
    assert all(set(a) <= set(b) for a, b in zip(seen, seen[1:]))  # nested as edits grow
    assert [r.case_id for r in edited_subset(batches, 4, [1], keep)] == [1, 10]  # batch 1 was skipped
    assert edited_subset(batches, 2, [], None) == records[:6]  # null: every edited record


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_subset_fails_at_start_up(value, tmp_path):
    with pytest.raises(ConfigError, match=rf"^eval.subset={value} must be a positive integer .* or null"):
        settings(f"eval.subset={value}", tmp=tmp_path)


def test_subset_setting(tmp_path):
    assert settings(tmp=tmp_path).eval.subset is None
    assert settings("eval.subset=50", tmp=tmp_path).eval.subset == 50
