"""The decayed histogram's per-window work (streamad/histogram.py), compiled with numba.

Every window updates a few histograms (the threshold's, the warm-up twin's, the
importance weights') and reads quantiles off them; each update or quantile was a dozen
small numpy operations, together about a tenth of a replay's time on http.mat. Here
each is one loop. The results are those of the numpy expressions the docstrings give,
operation for operation (the same sums in the same order, ``np.interp``'s choice of
segment and its rules at the ends), so thresholds and detections do not move.

Imported at first use (when a histogram first updates or is read); ``warm`` loads the compiled code from numba's cache ahead of
that, and the pipeline calls it when it is built (``streamad.pipeline.warm_kernels``).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def binned(v: np.ndarray, w: np.ndarray, weighted: bool, lo: float, hi: float, bins: int) -> tuple[np.ndarray, float, float]:
    """The (weighted) count of ``v`` in each of ``bins`` equal bins between ``lo`` and
    ``hi`` plus an underflow and an overflow bin, and the smallest and largest value:
    ``np.bincount(index(v), weights=w, minlength=bins + 2)``, ``v.min()``, ``v.max()``
    (``v`` finite and not empty)."""
    add = np.zeros(bins + 2)
    vmin = math.inf
    vmax = -math.inf
    span = hi - lo
    top = float(bins + 1)
    for i in range(len(v)):
        x = v[i]
        pos = np.floor((x - lo) / span * bins) + 1.0  # a float, as numpy's: math.floor would make an int of inf
        pos = min(max(pos, 0.0), top)
        add[int(pos)] += w[i] if weighted else 1.0
        vmin = min(vmin, x)
        vmax = max(vmax, x)
    return add, vmin, vmax


@numba.njit(cache=True)
def quantiles(counts: np.ndarray, edges: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """The value below which a share ``q`` of the mass lies, for each of ``qs``: mass
    uniform within each bin, runs of empty bins holding none. As numpy::

        cum = np.concatenate([[0.0], np.cumsum(counts)])
        full = np.diff(cum) > 0
        keep = np.concatenate([[False], full]) | np.concatenate([full, [False]])
        np.interp(qs * cum[-1], cum[keep], edges[keep])

    (NaN where nothing is kept, where numpy raises)."""
    m = len(counts)
    cum = np.empty(m + 1)
    cum[0] = 0.0
    for i in range(m):
        cum[i + 1] = cum[i] + counts[i]
    xp = np.empty(m + 1)
    fp = np.empty(m + 1)
    k = 0
    for e in range(m + 1):
        if (e >= 1 and cum[e] - cum[e - 1] > 0) or (e < m and cum[e + 1] - cum[e] > 0):
            xp[k] = cum[e]
            fp[k] = edges[e]
            k += 1
    out = np.empty(len(qs))
    for t in range(len(qs)):
        out[t] = _interp(qs[t] * cum[m], xp, fp, k)
    return out


@numba.njit(cache=True)
def _interp(x: float, xp: np.ndarray, fp: np.ndarray, k: int) -> float:
    """``np.interp(x, xp[:k], fp[:k])`` as numpy computes it (numpy/_core/src/multiarray/compiled_base.c)."""
    if k == 0 or math.isnan(x):
        return math.nan
    if k == 1:
        return fp[0]
    if x > xp[k - 1]:
        return fp[k - 1]
    if x < xp[0]:
        return fp[0]
    lo, hi = 0, k  # the last index j with xp[j] <= x
    while lo < hi:
        mid = (lo + hi) >> 1
        if x >= xp[mid]:
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    if j == k - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    y = slope * (x - xp[j]) + fp[j]
    if math.isnan(y):
        y = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(y) and fp[j] == fp[j + 1]:
            y = fp[j]
    return y


def warm() -> None:
    """Load the compiled functions (from numba's cache, or compile them)."""
    binned(np.zeros(2), np.zeros(0), False, 0.0, 1.0, 4)
    edges = np.arange(5.0)
    edges.flags.writeable = False  # as DecayedHistogram._edges hands them out
    quantiles(np.ones(4), edges, np.array([0.5]))
