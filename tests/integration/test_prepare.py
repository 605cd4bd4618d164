"""run.prepare=true: the caches a run reads are filled, nothing is edited, no run directory is made."""

from __future__ import annotations

from helpers import DISTINCT8


def test_prepare_fills_the_cache_a_run_then_reads(tmp_path, caplog):
    from sphere.run.compose import compose_config
    from sphere.run.experiment import run_experiment

    def cfg(*extra: str):
        return compose_config(
            [
                "model=tiny-llama",
                "logger=none",
                f"dataset.path={DISTINCT8}",
                "dataset.limit=4",
                "dataset.batch_size=4",
                "run.plots=false",
                f"run.cache_dir={tmp_path / 'cache'}",
                *extra,
            ]
        )

    assert run_experiment(cfg("run.prepare=true"), tmp_path / "prepared") == {"prepared": True}
    assert not (tmp_path / "prepared").exists()
    cached = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cached, "prepare wrote nothing to the cache"
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    # the real run reads what prepare wrote: no cache file is rewritten
    summary = run_experiment(cfg(), tmp_path / "run")
    assert summary["n_edits"] == 4
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
