"""The analysis behind the angular-distribution figure: histograms of the pairwise cosine
similarities between the rows (neurons) of a weight matrix, on a fixed sample of rows, and what is
read off them (their standard deviation, the range worth showing, coarser bins for drawing).

Cosines are histogrammed finely on [-1, 1] once, then cropped and rebinned for display."""

from __future__ import annotations

import math

import numpy as np

MAX_ROWS = 2048  # rows sampled for the pairwise cosines (2048² / 2 ≈ 2 M pairs)
FINE_BINS = 20000  # cosines are histogrammed finely on [-1, 1] once, then cropped and rebinned


def cosine_histogram(w: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Counts of the pairwise cosine similarities between (the sampled) rows of ``w`` in
    ``FINE_BINS`` equal bins on [-1, 1]; zero rows have no direction and are left out."""
    x = w if rows is None else w[rows]
    norms = np.linalg.norm(x, axis=1)
    x = x[norms > 0] / norms[norms > 0, None]
    g = x @ x.T
    vals = np.clip(g[np.triu_indices(len(x), 1)], -1.0, 1.0)
    counts, _ = np.histogram(vals, bins=FINE_BINS, range=(-1.0, 1.0))
    return counts


def sample_rows(n_rows: int, seed: int = 0, limit: int = MAX_ROWS) -> np.ndarray | None:
    """The same fixed subset of rows for every matrix of one shape (None: all rows)."""
    if n_rows <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=limit, replace=False))


def cosine_sd(counts: np.ndarray, centres: np.ndarray) -> float:
    """Standard deviation of the pairwise cosines a histogram holds (bin centres; the fine bins make
    the binning error negligible next to the changes shown)."""
    w = counts / max(counts.sum(), 1)
    mean = float((w * centres).sum())
    return math.sqrt(max(float((w * (centres - mean) ** 2).sum()), 0.0))


def display_range(counts: list[np.ndarray], edges: np.ndarray) -> tuple[int, int]:
    """Fine-bin indices covering the 0.05 %–99.95 % quantiles of every histogram, with a margin."""
    lo, hi = len(edges) - 2, 0
    for c in counts:
        cdf = np.cumsum(c) / max(c.sum(), 1)
        lo = min(lo, int(np.searchsorted(cdf, 0.0005)))
        hi = max(hi, int(np.searchsorted(cdf, 0.9995)))
    margin = max(2, (hi - lo) // 10)
    return max(0, lo - margin), min(len(edges) - 2, hi + margin)


def rebin(
    counts: np.ndarray, edges: np.ndarray, lo: int, hi: int, n_bins: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """(edges, density) of ``counts[lo:hi+1]`` merged into about ``n_bins`` bins."""
    step = max(1, math.ceil((hi - lo + 1) / n_bins))
    sub = counts[lo : hi + 1]
    pad = (-len(sub)) % step
    merged = np.concatenate([sub, np.zeros(pad)]).reshape(-1, step).sum(axis=1)
    new_edges = edges[lo : lo + len(merged) * step + 1 : step]
    if len(new_edges) < len(merged) + 1:
        new_edges = np.append(new_edges, new_edges[-1] + step * (edges[1] - edges[0]))
    width = step * (edges[1] - edges[0])
    dens = merged / max(counts.sum(), 1) / width
    return new_edges, np.append(dens, dens[-1])
