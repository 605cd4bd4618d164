"""Where a run's key covariance C = E[k kᵀ] (the "key statistics") and derived artifacts come from:
memory, precomputed files, the disk cache, or one collection pass on the unedited model; and the
``EditContext`` that hands them to the editor.

The cache key holds everything C depends on: model id and revision, a digest of the weights, the
module, the corpus, the sample count, the truncation length and the dtype. Statistics computed
elsewhere load from a directory, a file or a Hub repository (our safetensors files or the
reference's ``.npz``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from editors.core.context import EditContext
from editors.core.covariance import CovarianceOptions, collect_second_moments, weights_digest
from editors.core.model_spec import ModelSpec, num_layers
from editors.core.weights import UpdateTransform
from sphere.data.corpus import CorpusDraw, depends_on_seed, draw_corpus
from sphere.files import CorruptFileError, load_tensors, read_metadata, safe_name, save_tensors
from sphere.models.config import CovarianceConfig

log = logging.getLogger(__name__)

FORWARD_BATCH_SIZE = 64  # texts per forward pass when a context reads keys (run.forward_batch_size)
# <run.cache_dir>/stats/<model id>/<module>.<key>.safetensors: the name from before the key was
# renamed model.covariance, kept so that caches already on disk are found.
CACHE_SUBDIR = "stats"


def build_context(
    model: nn.Module,
    tok,
    spec: ModelSpec,
    model_id: str,
    *,
    covariance_cfg: CovarianceConfig,
    cache_dir: str | Path,
    seed: int = 0,
    forward_batch_size: int = FORWARD_BATCH_SIZE,
    transforms: Sequence[UpdateTransform] = (),
) -> EditContext:
    """The editor's resources: key statistics and derived artifacts, cached under ``cache_dir``.

    ``seed`` seeds the statistics corpus sampling and the editor's context templates.
    """
    opts = covariance_options(covariance_cfg, seed)
    cache = covariance_cache(cache_dir, covariance_cfg)
    # Taken now, on the unedited model: the cache keeps answering with unedited statistics later.
    digest = weights_digest(model, spec, range(num_layers(model)))

    def covariance(layers: Sequence[int]) -> dict[int, torch.Tensor]:
        return cache.get(model, tok, spec, layers, opts, model_id, lambda: covariance_corpus(opts), digest)

    artifacts = Path(cache_dir) / "artifacts" / safe_name(model_id)
    scope = cache.key(model_id, digest, "artifacts", opts)

    def cached(key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Tensors derived from the unedited model and its statistics, kept on disk (checksummed;
        a corrupt file is recomputed)."""
        path = artifacts / f"{safe_name(key)}.{scope}.safetensors"
        if path.exists():
            value = _load_cached(path, "value")
            if value is not None:
                return value
        value = compute()
        save_tensors(path, {"value": value})
        return value

    return EditContext(
        model=model,
        tok=tok,
        spec=spec,
        covariance=covariance,
        transforms=list(transforms),
        seed=seed,
        forward_batch_size=forward_batch_size,
        cached=cached,
    )


def covariance_options(covariance_cfg: CovarianceConfig, seed: int = 0) -> CovarianceOptions:
    """How a run with ``model.covariance=covariance_cfg`` and ``run.seed=seed`` estimates C (part of its cache key)."""
    return CovarianceOptions(
        corpus=covariance_cfg.corpus,
        n_samples=covariance_cfg.n_samples,
        max_length=covariance_cfg.max_length,
        batch_size=covariance_cfg.batch_size,
        dtype=covariance_cfg.dtype,
        # Files and the bundled sample are read in order; only drawn corpora depend on the seed.
        seed=seed if depends_on_seed(covariance_cfg.corpus) else 0,
    )


def covariance_cache(cache_dir: str | Path, covariance_cfg: CovarianceConfig) -> CovarianceCache:
    """The covariance cache of a run with ``run.cache_dir=cache_dir``: ``<cache_dir>/stats``, the
    directory's name from before the key was renamed ``model.covariance``, kept so that caches
    already on disk are found."""
    return CovarianceCache(Path(cache_dir) / CACHE_SUBDIR, covariance_cfg.precomputed)


def covariance_corpus(opts: CovarianceOptions) -> CorpusDraw:
    """The texts C is estimated from (and how they were drawn)."""
    return draw_corpus(opts.corpus, opts.seed, opts.n_samples)


class CovarianceCache:
    """C per edited layer, owned by one run: memory → precomputed → disk → collected once.

    ``texts`` is called only when something must be collected, so a warm cache never reads the
    corpus.
    """

    def __init__(self, cache_dir: str | Path | None, precomputed: str | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.precomputed = precomputed
        self._mem: dict[str, torch.Tensor] = {}

    def key(self, model_id: str, digest: str, module: str, opts: CovarianceOptions) -> str:
        payload = json.dumps(
            {"model": model_id, "weights": digest, "module": module, **asdict(opts)}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _path(self, model_id: str, module: str, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / safe_name(model_id) / f"{safe_name(module)}.{key}.safetensors"

    def get(
        self,
        model: nn.Module,
        tok,
        spec: ModelSpec,
        layers: Sequence[int],
        opts: CovarianceOptions,
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
            c = self.lookup(model_id, digest, spec.weight_module_name(layer), opts)
            if c is None:
                missing.append(layer)
            else:
                out[layer] = c
        if missing:
            log.info("collecting key statistics for layers %s on %s", missing, opts.corpus)
            draw = texts()
            sums = collect_second_moments(model, tok, spec, missing, draw, opts)
            for layer in missing:  # each Σkkᵀ is dropped once its C exists: never all sums and all Cs
                s, count = sums.pop(layer)
                out[layer] = self.store(
                    model_id, digest, spec.weight_module_name(layer), opts, s, count, draw
                )
                del s
        return {layer: out[layer] for layer in layers}

    def lookup(self, model_id: str, digest: str, module: str, opts: CovarianceOptions) -> torch.Tensor | None:
        """``module``'s C from memory, the precomputed statistics or the disk cache; None if absent."""
        key = self.key(model_id, digest, module, opts)
        if key in self._mem:
            return self._mem[key]
        c = self._load_precomputed(module, opts.n_samples) if self.precomputed else None
        path = self._path(model_id, module, key)
        if c is None and path is not None and path.exists():
            c = _load_cached(path, "mom2")
        if c is None:
            return None
        self._mem[key] = c.float()
        return self._mem[key]

    def store(
        self,
        model_id: str,
        digest: str,
        module: str,
        opts: CovarianceOptions,
        total: torch.Tensor,
        count: int,
        draw=None,
    ) -> torch.Tensor:
        """C = ``total`` / ``count`` (Σ k kᵀ over ``count`` tokens), kept in memory and written to the
        disk cache with its count, options and the corpus draw's provenance; returns C."""
        key = self.key(model_id, digest, module, opts)
        c = (total / count).float().cpu()
        self._mem[key] = c
        path = self._path(model_id, module, key)
        if path is not None:
            meta = {"count": str(count), **{k: str(v) for k, v in asdict(opts).items()}}
            meta["corpus_draw"] = json.dumps(getattr(draw, "provenance", None))
            save_tensors(path, {"mom2": c}, meta)
        return c

    def path(self, model_id: str, digest: str, module: str, opts: CovarianceOptions) -> Path | None:
        """Where ``module``'s statistics are (or would be) cached on disk; None without a cache dir."""
        return self._path(model_id, module, self.key(model_id, digest, module, opts))

    def _load_precomputed(self, module: str, n_samples: int) -> torch.Tensor | None:
        """``module``'s statistics from a file, a directory or a Hub repo (``hf://owner/name``).

        A directory may hold statistics of several sample counts (the reference names them
        ``<module>_float32_mom2_<n>.npz``; ours carry ``n_samples`` in their header): the file whose
        count equals ``model.covariance.n_samples`` is taken, never merely the first that sorts.
        """
        src = self.precomputed
        assert src is not None
        if src.startswith("hf://"):
            from huggingface_hub import snapshot_download

            src = snapshot_download(src[len("hf://") :], allow_patterns=[f"*{module}*"])
        root = Path(src)
        if not root.exists():
            raise FileNotFoundError(
                f"model.covariance.precomputed={self.precomputed!r} does not exist; fix the path or unset it"
            )
        if root.is_file():
            return _read_precomputed(root)
        candidates = [
            f
            for f in sorted(root.rglob(f"*{module}*"))
            if (f.name.endswith(".safetensors") and f.name.startswith(module + "."))
            or (f.suffix == ".npz" and "mom2" in f.name)
        ]
        if not candidates:
            return None
        counts = {f: _sample_count(f) for f in candidates}
        matching = [f for f, n in counts.items() if n == n_samples]
        if matching:
            return _read_precomputed(matching[0])
        if len(candidates) == 1 and counts[candidates[0]] is None:
            log.warning(
                "%s does not say its sample count; using it for model.covariance.n_samples=%d",
                candidates[0],
                n_samples,
            )
            return _read_precomputed(candidates[0])
        found = sorted({str(n) for n in counts.values()})
        raise FileNotFoundError(
            f"model.covariance.precomputed={self.precomputed!r} has statistics of {module} for sample counts "
            f"{', '.join(found)} but model.covariance.n_samples={n_samples}; set it to one of those"
        )


def _load_cached(path: Path, key: str) -> torch.Tensor | None:
    """A cached tensor, or None (and the file removed) when it is corrupt: it is recomputed."""
    try:
        return load_tensors(path)[0][key]
    except (CorruptFileError, KeyError) as e:
        log.warning("cache file %s is unusable (%s); removing it and recomputing", path, e)
        path.unlink(missing_ok=True)
        return None


def _sample_count(path: Path) -> int | None:
    """The sample count a statistics file was computed from, if it says."""
    if path.suffix == ".npz":
        m = re.search(r"_(\d+)\.npz$", path.name)
        return int(m.group(1)) if m else None
    try:
        meta = read_metadata(path)  # the header alone: the matrix is read once, from the chosen file
    except CorruptFileError as e:
        raise CorruptFileError(f"{e}; delete it or point model.covariance.precomputed elsewhere") from None
    return int(meta["n_samples"]) if "n_samples" in meta else None


def _read_precomputed(path: Path) -> torch.Tensor:
    if path.suffix == ".npz":
        return _load_reference_npz(path)
    try:
        return load_tensors(path)[0]["mom2"]
    except CorruptFileError as e:
        raise CorruptFileError(f"{e}; delete it or point model.covariance.precomputed elsewhere") from None


def _load_reference_npz(path: Path) -> torch.Tensor:
    """ROME/MEMIT ``layer_stats`` files store the running *sum* and the count (keys optionally
    prefixed "mom2."): C = sum / count."""
    with np.load(path, allow_pickle=False) as z:
        prefix = "mom2." if "mom2.mom2" in z.files else ""
        total = np.asarray(z[prefix + "mom2"], dtype=np.float64)
        count = float(z[prefix + "count"]) if prefix + "count" in z.files else 1.0
    return torch.from_numpy((total / count).astype(np.float32))
