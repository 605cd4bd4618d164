"""The Python API as a notebook user calls it, including the README's example verbatim."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import ROOT, restored, tiny

import sphere
from editors.core.weights import read_weight


@pytest.fixture(scope="module")
def ten_layer_llama():
    """A tiny LLaMA deep enough for the README's layers 4–8."""
    return tiny("llama", layers=10, hidden=64, ff=128, init=0.06)


def readme_block(title: str) -> str:
    """The python code block that follows the line containing ``title`` in README.md."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(title) :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_readme_python_api_example_runs(ten_layer_llama, tmp_path, monkeypatch):
    model, tok = ten_layer_llama
    monkeypatch.chdir(tmp_path)  # the example caches statistics under ./.cache
    namespace = {"model": model, "tok": tok}
    with restored(model):
        before = {
            layer: read_weight(model, sphere.edit.__globals__["spec_for"](model), layer) for layer in (4, 8)
        }
        exec(readme_block("<!-- tested: python-api -->"), namespace)
        result = namespace["result"]
        assert [u.layer for u in result.updates] == [4, 5, 6, 7, 8]
        spec = sphere.edit.__globals__["spec_for"](model)
        for u in result.updates:
            if u.layer in before:
                torch.testing.assert_close(read_weight(model, spec, u.layer) - before[u.layer], u.delta)
    assert namespace["projected"].shape == (64, 128)


def test_edit_with_records_reports_quality_and_continues(ten_layer_llama, tmp_path):
    model, tok = ten_layer_llama
    records = sphere.load_records("counterfact", "counterfact-sample", limit=2)
    with restored(model):
        result = sphere.edit(
            model,
            tok,
            records,
            editor="memit",
            hparams={"layers": [2, 3], "mom2_update_weight": 1.0, "v_lr": 1.0, "clamp_norm_factor": 10},
            sphere={"alpha": 0.8, "rank": 4},
            covariance={"n_samples": 40, "max_length": 32},
            batch_size=1,
            cache_dir=tmp_path,
            evaluate=True,
        )
        assert set(result.metrics) == {"pre", "post"}
        assert result.metrics["post"]["n_records"] == 2
        more = result.editor.apply([records[0].request])  # sequential state carries on
        assert [u.layer for u in more] == [2, 3]


def test_api_errors_name_the_problem(ten_layer_llama, tmp_path):
    model, tok = ten_layer_llama
    req = [{"prompt": "{} speaks", "subject": "Anna", "target_new": "Greek"}]
    with pytest.raises(KeyError, match="did you mean 'memit'"):
        sphere.edit(model, tok, req, editor="memt")
    with pytest.raises(ValueError, match=r"sphere\.alpha=1\.5"):
        sphere.edit(model, tok, req, sphere={"alpha": 1.5})
    with pytest.raises(ValueError, match="lacks"):
        sphere.edit(model, tok, [{"prompt": "{} speaks"}])
    with pytest.raises(ValueError, match="sphere.point=layer does nothing with editor rome"):
        sphere.edit(model, tok, req, editor="rome", hparams={"layers": [2]}, sphere={"point": "layer"})
