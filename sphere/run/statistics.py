"""Where a run's key statistics and derived artifacts come from: memory, precomputed files, the disk
cache, or one collection pass on the unedited model; and the ``EditContext`` that hands them to
the editor.

The cache key holds everything C depends on: model id and revision, a digest of the weights, the
module, the corpus, the sample count, the truncation length and the dtype. Statistics computed
elsewhere load from a directory, a file or a Hub repository (our safetensors files or the
reference's ``.npz``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from editors.core.context import EditContext
from editors.core.covariance import StatsOptions, collect_second_moments, weights_digest
from editors.core.model_spec import ModelSpec, num_layers
from editors.core.weights import UpdateTransform
from sphere.data.corpus import corpus_texts
from sphere.io import atomic_write
from sphere.models.config import StatsConfig

log = logging.getLogger(__name__)


def build_context(
    model: nn.Module,
    tok,
    spec: ModelSpec,
    model_id: str,
    *,
    stats_cfg: StatsConfig,
    cache_dir: str | Path,
    seed: int = 0,
    forward_batch_size: int = 64,
    transforms: Sequence[UpdateTransform] = (),
) -> EditContext:
    """The editor's resources: key statistics and derived artifacts, cached under ``cache_dir``.

    ``seed`` seeds the statistics corpus sampling and the editor's context templates.
    """
    opts = StatsOptions(
        corpus=stats_cfg.corpus,
        n_samples=stats_cfg.n_samples,
        max_length=stats_cfg.max_length,
        batch_size=stats_cfg.batch_size,
        dtype=stats_cfg.dtype,
    )
    cache = CovarianceCache(Path(cache_dir) / "stats", stats_cfg.precomputed)
    # Taken now, on the unedited model: the cache keeps answering with unedited statistics later.
    digest = weights_digest(model, spec, range(num_layers(model)))

    def stats(layers: Sequence[int]) -> dict[int, torch.Tensor]:
        texts = lambda: corpus_texts(opts.corpus, seed)  # noqa: E731
        return cache.get(model, tok, spec, layers, opts, model_id, texts, digest)

    artifacts = Path(cache_dir) / "artifacts" / model_id.strip("/").replace("/", "__")
    scope = cache.key(model_id, digest, "artifacts", opts)

    def cached(key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Tensors derived from the unedited model and its statistics, kept on disk."""
        path = artifacts / f"{key}.{scope}.safetensors"
        if path.exists():
            return load_file(path)["value"]
        value = compute()
        atomic_write(path, lambda tmp: save_file({"value": value.contiguous().cpu()}, tmp))
        return value

    return EditContext(
        model=model,
        tok=tok,
        spec=spec,
        stats=stats,
        transforms=list(transforms),
        seed=seed,
        forward_batch_size=forward_batch_size,
        cached=cached,
    )


class CovarianceCache:
    """C per edited layer, owned by one run: memory → precomputed → disk → collected once.

    ``texts`` is called only when something must be collected, so a warm cache never reads the
    corpus.
    """

    def __init__(self, cache_dir: str | Path | None, precomputed: str | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.precomputed = precomputed
        self._mem: dict[str, torch.Tensor] = {}

    def key(self, model_id: str, digest: str, module: str, opts: StatsOptions) -> str:
        payload = json.dumps(
            {"model": model_id, "weights": digest, "module": module, **asdict(opts)}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _path(self, model_id: str, module: str, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        slug = model_id.strip("/").replace("/", "__")
        return self.cache_dir / slug / f"{module}.{key}.safetensors"

    def get(
        self,
        model: nn.Module,
        tok,
        spec: ModelSpec,
        layers: Sequence[int],
        opts: StatsOptions,
        model_id: str,
        texts,
        digest: str,
    ) -> dict[int, torch.Tensor]:
        """{layer: C (d_ff × d_ff, float32, CPU)} for every layer, collecting the missing ones in one pass.

        ``digest``: ``weights_digest`` of the *unedited* model, taken by the caller before any edit
        (the cache must keep answering with the unedited statistics once edits start).
        """
        out: dict[int, torch.Tensor] = {}
        missing: list[int] = []
        for layer in layers:
            module = spec.weight_module_name(layer)
            key = self.key(model_id, digest, module, opts)
            if key in self._mem:
                out[layer] = self._mem[key]
                continue
            c = self._load_precomputed(module) if self.precomputed else None
            path = self._path(model_id, module, key)
            if c is None and path is not None and path.exists():
                c = load_file(path)["mom2"]
            if c is None:
                missing.append(layer)
            else:
                out[layer] = self._mem[key] = c.float()
        if missing:
            log.info("collecting key statistics for layers %s on %s", missing, opts.corpus)
            for layer, (s, count) in collect_second_moments(model, tok, spec, missing, texts(), opts).items():
                module = spec.weight_module_name(layer)
                key = self.key(model_id, digest, module, opts)
                c = (s / count).float().cpu()
                out[layer] = self._mem[key] = c
                path = self._path(model_id, module, key)
                if path is not None:
                    meta = {"count": str(count), **{k: str(v) for k, v in asdict(opts).items()}}
                    self._save(path, c, meta)
        return {layer: out[layer] for layer in layers}

    @staticmethod
    def _save(path: Path, c: torch.Tensor, meta: dict[str, str]) -> None:
        atomic_write(path, lambda tmp: save_file({"mom2": c}, tmp, metadata=meta))

    def _load_precomputed(self, module: str) -> torch.Tensor | None:
        """Find ``module``'s statistics in a file, a directory or a Hub repo (``hf://owner/name``)."""
        src = self.precomputed
        assert src is not None
        if src.startswith("hf://"):
            from huggingface_hub import snapshot_download

            src = snapshot_download(src[len("hf://") :], allow_patterns=[f"*{module}*"])
        root = Path(src)
        candidates = [root] if root.is_file() else sorted(root.rglob(f"*{module}*")) if root.is_dir() else []
        for f in candidates:
            if f.name.endswith(".safetensors") and (root.is_file() or f.name.startswith(module + ".")):
                return load_file(f)["mom2"]
            if f.suffix == ".npz" and "mom2" in f.name:
                return _load_reference_npz(f)
        if not root.exists():
            raise FileNotFoundError(
                f"stats.precomputed={self.precomputed!r} does not exist; fix the path or unset it"
            )
        return None


def _load_reference_npz(path: Path) -> torch.Tensor:
    """ROME/MEMIT ``layer_stats`` files store the running *sum* and the count (keys optionally
    prefixed "mom2."): C = sum / count."""
    with np.load(path, allow_pickle=False) as z:
        prefix = "mom2." if "mom2.mom2" in z.files else ""
        total = np.asarray(z[prefix + "mom2"], dtype=np.float64)
        count = float(z[prefix + "count"]) if prefix + "count" in z.files else 1.0
    return torch.from_numpy((total / count).astype(np.float32))
