"""Second moments of keys, C = E[k kᵀ], per edited layer, with a disk cache (reference §1.7).

All edited layers are collected in one pass on the unedited model (the reference runs one pass per
layer, lazily, and can collect layers 5..8 on a partially edited model). The cache key holds
everything C depends on: model id and revision, a digest of the weights, the module, the corpus,
the sample count, the truncation length and the dtype. Statistics computed elsewhere can be loaded
from a directory, a file or a Hub repository (our safetensors files or the reference's ``.npz``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from editors.core.model_spec import ModelSpec, get_module, model_device
from editors.core.nethook import capture, run_until_stop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatsOptions:
    """How C is estimated. ``corpus`` is an id that names the texts (part of the cache key)."""

    corpus: str
    n_samples: int
    max_length: int
    batch_size: int = 8
    dtype: str = "float32"


def weights_digest(model: nn.Module, spec: ModelSpec, layers: Sequence[int]) -> str:
    """A cheap fingerprint of the weights C depends on (strided samples of a few matrices)."""
    h = hashlib.sha256()
    tensors = [model.get_input_embeddings().weight] + [
        get_module(model, spec.weight_module_name(layer)).weight for layer in layers
    ]
    for t in tensors:
        flat = t.detach().reshape(-1)
        h.update(flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def collect_second_moments(
    model: nn.Module,
    tok,
    spec: ModelSpec,
    layers: Sequence[int],
    texts: Iterable[str],
    opts: StatsOptions,
) -> dict[int, tuple[torch.Tensor, int]]:
    """One pass over ``texts``: {layer: (Σ k kᵀ, token count)} for the edited-matrix inputs."""
    device = model_device(model)
    dtype = getattr(torch, opts.dtype)
    names = {layer: spec.weight_module_name(layer) for layer in layers}
    deepest = names[max(layers)]
    sums: dict[int, torch.Tensor] = {}
    count, seen = 0, 0
    batch: list[str] = []
    bar = tqdm(total=opts.n_samples, desc="key statistics", unit="text", leave=False)

    def flush() -> None:
        nonlocal count
        enc = tok(
            batch,
            truncation=True,
            max_length=opts.max_length,
            padding=True,
            return_tensors="pt",
            padding_side="right",
        ).to(device)
        with capture(model, list(names.values()), inputs=True, stop_after=deepest) as store:
            run_until_stop(model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        mask = enc["attention_mask"].bool()
        for layer, name in names.items():
            a = store[name][mask].to(dtype)  # (tokens, d_ff), padding dropped
            s = a.T @ a
            sums[layer] = s if layer not in sums else sums[layer] + s
        count += int(mask.sum())

    for text in texts:
        if not text.strip():
            continue
        batch.append(text)
        seen += 1
        if len(batch) == opts.batch_size:
            flush()
            bar.update(len(batch))
            batch = []
        if seen >= opts.n_samples:
            break
    if batch:
        flush()
        bar.update(len(batch))
    bar.close()
    if count == 0:
        raise ValueError(f"stats corpus {opts.corpus!r} yielded no text; point stats.corpus at a text file")
    if seen < opts.n_samples:
        log.warning(
            "stats corpus %s has only %d texts (stats.n_samples=%d)", opts.corpus, seen, opts.n_samples
        )
    return {layer: (s, count) for layer, s in sums.items()}


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
                    _atomic_save(
                        {"mom2": c},
                        path,
                        {"count": str(count), **{k: str(v) for k, v in asdict(opts).items()}},
                    )
        return {layer: out[layer] for layer in layers}

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


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
