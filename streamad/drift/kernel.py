"""The drift tests' per-window work (streamad/drift/detectors.py), compiled with numba.

Binning values (a window's, a new reference's), moving the recent window's counts, the statistic of each
feature, the ranks and chunk medians of the scores and the Page-Hinkley test over those
medians are a few loops over small arrays. In numpy and Python they were some forty
operations a window, whose fixed costs made the drift monitor a fifth of a replay's
time (http.mat: 240 µs of a window's 1.3 ms); compiled, the same work costs a few
microseconds. The results are those of the numpy expressions the docstrings give
(counts exactly; statistics up to the order of a float sum).

The compiled code is cached beside this module (numba's ``cache=True``); ``warm``
loads it, and the pipeline calls it when it is built (``streamad.pipeline.warm_kernels``),
so that the first window does not pay for it.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _bin(x: float, edges: np.ndarray, j: int) -> int:
    """The bin of ``x`` among feature ``j``'s edges: how many are at or below it (NaN: 0)."""
    b = 0
    for e in range(edges.shape[1]):
        if x >= edges[j, e]:
            b += 1
    return b


@numba.njit(cache=True)
def bins(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of every value of ``X`` (n × d) among its feature's ``edges`` (d × m):
    ``(X[:, :, None] >= edges[None]).sum(axis=2)``."""
    n, d = X.shape
    out = np.empty((n, d), dtype=np.int64)
    for i in range(n):
        for j in range(d):
            out[i, j] = _bin(X[i, j], edges, j)
    return out


@numba.njit(cache=True)
def feed(X: np.ndarray, edges: np.ndarray, ring: np.ndarray, ring_bins: np.ndarray, counts: np.ndarray, pos: int, filled: int) -> None:
    """Put the rows of ``X`` (at most a ring's worth) into the ring from row ``pos``;
    a ring row that held a record (below ``filled``) leaves the counts first. A value's
    bin is ``bins``'."""
    n, d = X.shape
    recent = ring.shape[0]
    for i in range(n):
        r = (pos + i) % recent
        if r < filled:
            for j in range(d):
                counts[j, ring_bins[r, j]] -= 1.0
        for j in range(d):
            x = X[i, j]
            b = _bin(x, edges, j)
            ring[r, j] = x
            ring_bins[r, j] = b
            counts[j, b] += 1.0


@numba.njit(cache=True)
def statistic(counts: np.ndarray, ref_counts: np.ndarray, ref_n: np.ndarray, ks: bool) -> np.ndarray:
    """Per feature: the binned KS distance (``ks``) or the PSI with half a count in every
    bin, of the recent counts against the reference's (``FeatureDrift._statistic``)."""
    d, nb = counts.shape
    out = np.empty(d)
    for j in range(d):
        n = 0.0
        for b in range(nb):
            n += counts[j, b]
        s = 0.0
        if ks:
            c = 0.0
            for b in range(nb):
                c += counts[j, b] / n - ref_counts[j, b] / ref_n[j]
                s = max(s, abs(c))
        else:
            for b in range(nb):
                p = (counts[j, b] + 0.5) / (n + 0.5 * nb)
                p0 = (ref_counts[j, b] + 0.5) / (ref_n[j] + 0.5 * nb)
                s += (p - p0) * math.log(p / p0)
        out[j] = s
    return out


@numba.njit(cache=True)
def _rank(grid: np.ndarray, s: float) -> float:
    """Mid-rank of ``s`` among the sorted ``grid``, in [0, 1]:
    ``searchsorted`` left and right, averaged."""
    L = grid.shape[0]
    lo, hi = 0, L
    while lo < hi:  # first index with grid >= s
        mid = (lo + hi) >> 1
        if grid[mid] < s:
            lo = mid + 1
        else:
            hi = mid
    left = lo
    hi = L
    while lo < hi:  # first index with grid > s
        mid = (lo + hi) >> 1
        if grid[mid] <= s:
            lo = mid + 1
        else:
            hi = mid
    u = (left + lo) / (2.0 * (L - 1)) - 0.5 / (L - 1)
    return min(max(u, 0.0), 1.0)


@numba.njit(cache=True)
def chunk_medians(scores: np.ndarray, grid: np.ndarray, pending: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The finite ``scores`` as ranks among ``grid``, after the ``pending`` ranks: the
    median of each full chunk of ``chunk`` ranks, and the ranks left over."""
    u = np.empty(len(pending) + len(scores))
    k = 0
    for v in pending:
        u[k] = v
        k += 1
    for s in scores:
        if math.isfinite(s):
            u[k] = _rank(grid, s)
            k += 1
    m = k // chunk
    medians = np.empty(m)
    h = chunk // 2
    for c in range(m):
        part = np.sort(u[c * chunk : (c + 1) * chunk])
        medians[c] = part[h] if chunk % 2 else (part[h - 1] + part[h]) / 2.0
    return medians, u[m * chunk : k].copy()


@numba.njit(cache=True)
def page_hinkley(values: np.ndarray, state: np.ndarray, min_instances: int, delta: float, threshold: float) -> int:
    """``PageHinkley.update`` of each value in turn, on ``state`` (n, mean, sum of
    increases, their minimum; updated in place), up to the first value that completes an
    upward change: its index, or -1."""
    n, mean, total, low = state[0], state[1], state[2], state[3]
    hit = -1
    for i in range(len(values)):
        x = values[i]
        n += 1.0
        mean += (x - mean) / n
        total += x - mean - delta
        low = min(low, total)
        if n >= min_instances and total - low > threshold:
            hit = i
            break
    state[0], state[1], state[2], state[3] = n, mean, total, low
    return hit


def warm() -> None:
    """Load the compiled functions (from numba's cache, or compile them): what the first
    window would otherwise do."""
    X = np.zeros((2, 1))
    edges, ring, ring_bins, counts = np.zeros((1, 2)), np.zeros((2, 1)), np.zeros((2, 1), dtype=np.int64), np.zeros((1, 3))
    feed(X, edges, ring, ring_bins, counts, 0, 0)
    bins(X, edges)
    statistic(counts + 1.0, counts + 1.0, np.ones(1), False)
    chunk_medians(np.zeros(2), np.zeros(3), np.zeros(1), 2)
    page_hinkley(np.zeros(2), np.array([0.0, 0.0, 0.0, np.inf]), 30, 0.05, 5.0)
