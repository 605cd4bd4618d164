"""eval.subset on a tiny run: intermediate evaluations measure the nested, seeded subset of the
records edited so far and say how many; the final evaluation measures every edited record."""

from __future__ import annotations

import json

from helpers import DISTINCT8, restored, settings

from sphere.data import load_records
from sphere.run.eval_subset import subset_positions
from sphere.run.runner import SequentialRun
from sphere.run.tracking import Tracker


def test_intermediate_evaluations_measure_the_subset_final_measures_all(tmp_path, config_tiny_llama):
    model, tok = config_tiny_llama
    s = settings(
        "model=tiny-llama",
        "editor=memit",
        "sphere=off",
        f"dataset.path={DISTINCT8}",
        "dataset.limit=8",
        "dataset.batch_size=2",
        "eval.every=2",
        "eval.subset=4",
        "eval.evaluators=[edit_quality]",
        "eval.pre=false",
        # what the edits achieve does not matter here: the cheapest MEMIT that runs
        "editor.v_num_grad_steps=2",
        "run.seed=5",
        tmp=tmp_path,
    )
    records = load_records(s.dataset.kind, s.dataset.path, limit=s.dataset.limit)
    measured: list[tuple[str, int, list[int]]] = []
    with restored(model):
        run = SequentialRun(s, model, tok, "tiny-llama-test", records, tmp_path)
        measure = run.measure

        def spy(moment, recs, n_edits):
            measured.append((moment, n_edits, [r.case_id for r in recs]))
            return measure(moment, recs, n_edits)

        run.measure = spy  # type: ignore[method-assign]
        summary = run.run(Tracker(tmp_path, s.logger, run_name="t", group="g", tags=[], config={}))

    keep = subset_positions(8, 4, seed=5)
    assert keep is not None and len(keep) == 4
    scheduled = [(n, ids) for moment, n, ids in measured if moment == "scheduled"]
    assert [n for n, _ in scheduled] == [2, 4, 6]  # not at 8: the final evaluation covers that point
    for n, ids in scheduled:  # the subset's part among the edited records, in stream order
        assert ids == [records[p].case_id for p in sorted(keep) if p < n]
    assert all(set(a) <= set(b) for (_, a), (_, b) in zip(scheduled, scheduled[1:]))  # nested
    final = [ids for moment, _, ids in measured if moment == "final"]
    assert final == [[r.case_id for r in records]]  # every edited record
    assert summary["n_records"] == 8

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    by_n = {r["n_edits"]: r for r in rows if "eval_n_records" in r}
    assert sorted(by_n) == [2, 4, 6]
    for n, ids in scheduled:
        assert by_n[n]["eval_n_records"] == len(ids) and by_n[n].get("n_records", len(ids)) == len(ids)
    assert "eval_n_records" not in next(r for r in rows if r.get("final"))
