"""What extending a run does to its directory (sphere/run/extend.py, ``start_extension``): the
shorter run's files are kept under extended/at-<n>/, the checkpoint is told to measure the unedited
model again, metrics.jsonl loses the unedited row and its final flag, summary.json goes; doing it
twice (a kill and the same command again) changes nothing more. The runs themselves are in
tests/integration/test_extend.py."""

from __future__ import annotations

import json

import torch

from sphere.run.checkpoint import load_checkpoint, read_progress, save_checkpoint
from sphere.run.extend import start_extension
from sphere.run.identity import RUN_OUTPUTS
from sphere.run.rundir import EXTENDED_DIR
from sphere.run.state import Progress

ROWS = [
    {"n_edits": 0, "efficacy": 20.0, "n_records": 4},
    {"n_edits": 2, "he/layer_1": 0.5},
    {"n_edits": 4, "he/layer_1": 0.6},
    {"n_edits": 4, "final": True, "efficacy": 90.0, "n_records": 4},
]


def shorter_run(tmp_path):
    out = tmp_path / "run"
    progress = Progress(batches_done=2, n_edits=4, pre={"efficacy": 20.0}).to_dict()
    w = torch.arange(4.0).reshape(2, 2)
    save_checkpoint(
        out / "checkpoint",
        weights={"1": w},
        w0={"1": w * 0},
        editor_state={},
        transform_states=[],
        progress=progress,
    )
    for name, text in {
        "config.yaml": "dataset:\n  limit: 4\n",
        "summary.json": '{"n_edits": 4}',
        "summary.txt": "table",
        "outcomes.jsonl": '{"case_id": 1}\n',
        "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in ROWS)
        + '{"n_edits": 6, "he/la',  # cut by a kill
    }.items():
        (out / name).write_text(text)
    return out


def test_the_shorter_run_is_kept_and_the_directory_continues_as_the_longer_one(tmp_path):
    out = shorter_run(tmp_path)
    originals = {p.name: p.read_text() for p in out.iterdir() if p.is_file()}

    archive = start_extension(out, read_progress(out / "checkpoint"))

    assert archive == out / EXTENDED_DIR / "at-4" and EXTENDED_DIR in RUN_OUTPUTS  # starting over deletes it
    assert {p.name: p.read_text() for p in archive.iterdir()} == originals
    assert not any((out / n).exists() for n in ("summary.json", "summary.txt", "outcomes.jsonl"))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == [ROWS[1], ROWS[2], {k: v for k, v in ROWS[3].items() if k != "final"}]
    state = load_checkpoint(out / "checkpoint")
    assert state is not None
    assert state["progress"]["pre"] is None and state["progress"]["extended_from"] == [4]
    assert (
        state["progress"]["n_edits"] == 4 and (state["weights"]["1"] == torch.arange(4.0).reshape(2, 2)).all()
    )

    # again, as after a kill before the new config.yaml was written
    start_extension(out, read_progress(out / "checkpoint"))
    assert {p.name: p.read_text() for p in archive.iterdir()} == originals  # never overwritten
    assert [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()] == rows
    assert load_checkpoint(out / "checkpoint")["progress"]["extended_from"] == [4]  # type: ignore[index]
