"""Progress for long phases: tqdm on a terminal, rate-limited log lines in a batch-job log, or nothing."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest
import torch
import transformers

from editors.core import progress as progress_mod
from editors.core.progress import Progress, progress, resolve_mode, set_mode
from sphere.data.records import EditRecord
from sphere.evaluation import evaluate_records
from sphere.evaluation.quality import EditQuality
from sphere.evaluation.registry import EvalView
from sphere.models.tokenizers import load_bundled_tokenizer

LOGGER = "editors.progress"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("SPHERE_PROGRESS", raising=False)
    monkeypatch.delenv("SPHERE_PROGRESS_INTERVAL", raising=False)
    set_mode(None)
    yield
    set_mode(None)


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_auto_mode_follows_the_stream(monkeypatch):
    tty = SimpleNamespace(isatty=lambda: True)
    assert resolve_mode(stream=tty) == "tqdm"
    assert resolve_mode(stream=io.StringIO()) == "log"  # a SLURM log, a pipe
    monkeypatch.setenv("SPHERE_PROGRESS", "off")
    assert resolve_mode(stream=tty) == "off"
    monkeypatch.setenv("SPHERE_PROGRESS", "bogus")
    with pytest.raises(ValueError):
        resolve_mode()
    with pytest.raises(ValueError):
        set_mode("bogus")


def test_log_mode_is_rate_limited_with_first_and_last_line(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    with progress(15000, "evaluation (pre)", "record", mode="log", interval=30, clock=clock) as bar:
        for _ in range(150):  # a batch of 100 records every 2 s: 300 s in all
            clock.t += 2
            bar.update(100)
    lines = _lines(caplog)
    # the first line, one per 30 s of the 300 s (the one at the end is the last line), and the last
    assert len(lines) == 1 + 9 + 1
    assert lines[0] == "evaluation (pre): 0/15000 records"
    assert lines[1] == "evaluation (pre): 1500/15000 records, 50.0 record/s, eta 4 min"
    assert lines[-1] == "evaluation (pre): 15000/15000 records, done in 5 min (50.0 record/s)"
    assert all("\r" not in line for line in lines)


def test_log_mode_rate_zero_logs_every_update_and_postfix(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    bar = progress(3, "z optimisation (4 requests)", "step", mode="log", interval=0, clock=clock)
    for i in range(3):
        clock.t += 1
        bar.set_postfix(done=f"{i}/4", loss=1.0 / (i + 1))
        bar.update()
    bar.close()
    bar.close()  # closing twice writes one last line
    lines = _lines(caplog)
    assert len(lines) == 1 + 2 + 1  # the update that completes the count leaves it to the last line
    assert lines[2] == "z optimisation (4 requests): 2/3 steps, 1.0 step/s, eta 1 s, done=1/4, loss=0.5"


def test_min_s_hides_short_phases(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    with progress(10, "short", "step", mode="log", interval=0, min_s=10, clock=clock) as bar:
        for _ in range(10):
            clock.t += 0.5
            bar.update()
    assert _lines(caplog) == []
    with progress(10, "long", "step", mode="log", interval=30, min_s=10, clock=clock) as bar:
        for _ in range(10):
            clock.t += 5
            bar.update()
    lines = _lines(caplog)
    # the first (after 10 s), one 30 s later, and the last
    assert [line.split(",")[0] for line in lines] == [
        "long: 2/10 steps",
        "long: 8/10 steps",
        "long: 10/10 steps",
    ]
    assert "done in 50 s" in lines[-1]


def test_iterating_counts_and_closes(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert list(progress([1, 2, 3], "layers", "layer", mode="log", interval=1e9)) == [1, 2, 3]
    lines = _lines(caplog)
    assert lines == ["layers: 0/3 layers", lines[1]] and lines[1].startswith("layers: 3/3 layers, done in")


def test_tqdm_mode_uses_tqdm(monkeypatch, caplog):
    import tqdm.auto

    made = []

    class FakeTqdm:
        def __init__(self, **kwargs):
            made.append(kwargs)
            self.n, self.closed, self.postfix = 0, False, None

        def update(self, n):
            self.n += n

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeTqdm)
    caplog.set_level(logging.INFO, logger=LOGGER)
    monkeypatch.setenv("SPHERE_PROGRESS", "tqdm")
    with progress(5, "editing (memit)", "edit", initial=1) as bar:
        bar.update(2)
        bar.set_postfix(loss=0.25)
    assert made[0]["total"] == 5 and made[0]["desc"] == "editing (memit)" and made[0]["initial"] == 1
    assert bar._bar.n == 2 and bar._bar.closed and bar._bar.postfix == "loss=0.25"
    assert _lines(caplog) == []


def test_off_writes_nothing(monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SPHERE_PROGRESS", "off")
    with progress(100, "quiet", "record", interval=0) as bar:
        for _ in range(10):
            bar.update(10)
    assert list(progress(range(3), "quiet")) == [0, 1, 2]
    assert caplog.records == []
    out = capsys.readouterr()
    assert out.out == out.err == ""
    assert Progress(None, 3, "x", disable=True, mode="log").mode == "off"


def _records() -> list[EditRecord]:
    return [
        EditRecord(
            case_id=i,
            kind="counterfact",
            prompt="The mother tongue of {} is",
            subject=subject,
            target_new="English",
            target_true="French",
            paraphrase_prompts=(f"{subject}'s mother tongue is",),
            neighborhood_prompts=("Michel Rocard is a native speaker of", "Jean Jaurès speaks"),
            neighborhood_targets=("French", "French"),
        )
        for i, subject in enumerate(("Danielle Darrieux", "Léon Blum", "Jean Gabin"))
    ]


def test_evaluation_of_a_tiny_model_logs_progress(monkeypatch, caplog):
    tok = load_bundled_tokenizer("gpt2")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    monkeypatch.setattr(progress_mod.sys, "stderr", io.StringIO())  # not a terminal: auto → log
    monkeypatch.setenv("SPHERE_PROGRESS_INTERVAL", "0")
    caplog.set_level(logging.INFO, logger=LOGGER)

    # 3 records × (1 + 1 + 2 prompts) × (new, true) = 24 sequences, in batches of 8
    rows = evaluate_records(model, tok, _records(), 8, desc="evaluating 3 records (pre)")
    assert len(rows) == 3
    lines = _lines(caplog)
    assert lines[0] == "evaluating 3 records (pre): 0/24 prompts"
    assert [line.split(":")[1].split(",")[0] for line in lines] == [" 0/24 prompts", " 8/24 prompts"] + [
        " 16/24 prompts",
        " 24/24 prompts",
    ]
    assert "done in" in lines[-1]

    # the evaluator names the moment; a batch's own measurement shows nothing
    caplog.clear()
    ev = EditQuality(SimpleNamespace(protocol="sequential", batch_size=8, pre=True))
    ev("final", EvalView(model, tok, None, [], _records(), 3))
    assert _lines(caplog)[-1].startswith("evaluating 3 records (final): 24/24 prompts, done in")
    caplog.clear()
    evaluate_records(model, tok, _records(), 8)
    assert _lines(caplog) == []
