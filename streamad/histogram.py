"""A decayed histogram of a stream of values over a range that follows the data.

Thresholds, importance weights and metrics all need a running picture of the score
distribution that forgets slowly and never stores the stream. Counts decay by
``decay`` per update; the bin range is fitted to the bulk of the data, with an
underflow and an overflow bin, and re-fitted when too much mass falls outside it.

>>> import numpy as np
>>> h = DecayedHistogram(bins=64, decay=1.0)
>>> h.update(np.random.default_rng(0).normal(size=20000))
>>> abs(h.quantile(0.5)) < 0.05, round(h.quantile(0.975), 1)
(True, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_NO_WEIGHTS = np.zeros(0)


class DecayedHistogram:
    """Equal-width bins between ``lo`` and ``hi``, plus one bin below and one above.

    Within a bin, mass is taken as uniform; the outer bins stretch to the most extreme
    value they have seen. ``min_init`` values are collected before the first range is
    fixed. When more than ``refit_share`` of the mass lies outside the range, the range
    is refitted to the central quantiles and the counts are redistributed.
    With ``half_life`` (in values), old counts halve after that many new values, however
    they are batched; otherwise they are multiplied by ``decay`` once per update.
    """

    def __init__(
        self,
        bins: int = 64,
        decay: float = 0.99,
        min_init: int = 64,
        refit_share: float = 0.02,
        margin: float = 0.25,
        smoothing: float = 1.0,
        half_life: float | None = None,
    ) -> None:
        if bins < 2:
            raise ValueError("bins must be at least 2")
        if not 0.0 < decay <= 1.0:
            raise ValueError("decay must be in (0, 1]")
        self.bins = bins
        self.decay = decay
        self.min_init = min_init
        self.refit_share = refit_share
        self.margin = margin
        self.smoothing = smoothing
        self.half_life = half_life
        self.reset()

    def reset(self) -> None:
        """Forget every value seen; keep the settings."""
        self.counts = np.zeros(self.bins + 2)  # [under, bins..., over]
        self.lo = 0.0
        self.hi = 0.0
        self.vmin = np.inf
        self.vmax = -np.inf
        self.ready = False
        self.n_seen = 0
        self._pending: list[np.ndarray] = []

    # -- updating ----------------------------------------------------------------------

    @property
    def total(self) -> float:
        if not self.ready:
            return float(sum(len(p) for p in self._pending))
        return float(self.counts.sum())

    @property
    def bin_width(self) -> float:
        """The width of an inner bin (0 before the first range is fixed)."""
        return (self.hi - self.lo) / self.bins

    @property
    def pending(self) -> np.ndarray:
        """The values collected before the first range is fixed (empty once it is)."""
        return np.concatenate(self._pending) if self._pending else np.empty(0)

    def update(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Decay the old counts once, then add ``values`` (non-finite ones are ignored)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
        keep = np.isfinite(v)
        if not keep.all():
            v = v[keep]
            w = None if w is None else w[keep]
        self.n_seen += len(v)
        if not self.ready:
            if len(v):
                self._pending.append(v)
            pooled = np.concatenate(self._pending) if self._pending else np.empty(0)
            if len(pooled) < self.min_init:
                return
            self._pending = []
            lo, hi = np.quantile(pooled, [0.01, 0.99])
            self._set_range(float(lo), float(hi))
            self.ready = True
            v, w = pooled, None
        elif self.half_life:
            self.counts *= 0.5 ** (len(v) / self.half_life)
        else:
            self.counts *= self.decay
        if len(v) == 0:
            return
        w_new = float(len(v)) if w is None else float(w.sum())
        # The outer bins are what falls outside the range: the new values' share of them
        # decides a refit, read off their bin counts.
        from streamad.histogram_kernel import binned  # numba: imported on first use

        wk = _NO_WEIGHTS if w is None else w
        add, vmin, vmax = binned(v, wk, w is not None, self.lo, self.hi, self.bins)
        if self.counts[0] + self.counts[-1] + float(add[0] + add[-1]) > self.refit_share * (self.counts.sum() + w_new):
            self._refit(v)
            add, vmin, vmax = binned(v, wk, w is not None, self.lo, self.hi, self.bins)
        self.vmin = min(self.vmin, vmin)
        self.vmax = max(self.vmax, vmax)
        self.counts += add

    def _set_range(self, lo: float, hi: float) -> None:
        span = hi - lo
        if not np.isfinite(span) or span <= 0:
            span = max(abs(lo), 1.0) * 1e-3
        self.lo = lo - self.margin * span
        self.hi = hi + self.margin * span

    def _index(self, v: np.ndarray) -> np.ndarray:
        pos = (v - self.lo) / (self.hi - self.lo) * self.bins
        np.floor(pos, out=pos)
        pos += 1.0
        np.clip(pos, 0, self.bins + 1, out=pos)  # before the cast: far values stay in range
        return pos.astype(np.int64)

    def _edges(self) -> np.ndarray:
        """Edges of all bins, outer ones included (bins + 3 values); read-only, cached
        until the range or the extremes change (readers call this on every update)."""
        key = (self.lo, self.hi, self.vmin, self.vmax, self.bins)
        if getattr(self, "_edges_key", None) != key:
            inner = np.linspace(self.lo, self.hi, self.bins + 1)
            left = min(self.vmin, self.lo)
            right = max(self.vmax, self.hi)
            edges = np.concatenate([[left], inner, [right]])
            edges.flags.writeable = False
            self._edges_cache, self._edges_key = edges, key
        return self._edges_cache

    def _refit(self, new: np.ndarray) -> None:
        """Fit the range to the central 99% of the old mass and of the incoming values,
        and move the old counts onto the new bins."""
        cand = list(np.quantile(new, [0.005, 0.995]))
        if self.counts.sum() > 0:
            cand += [self.quantile(0.005), self.quantile(0.995)]
        old_edges, old_cdf = self._edges(), self._cum()
        self._set_range(min(cand), max(cand))
        new_edges = self._edges()
        cdf_at = np.interp(new_edges, old_edges, old_cdf)
        self.counts = np.maximum(np.diff(cdf_at), 0.0)
        # np.interp clamps: put any mass left beyond the new outer edges back in the outer bins.
        self.counts[0] += cdf_at[0]
        self.counts[-1] += old_cdf[-1] - cdf_at[-1]

    # -- reading -----------------------------------------------------------------------

    def _cum(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.counts)])

    def quantile(self, q: float | np.ndarray) -> Any:
        """The value below which a share ``q`` of the (decayed) mass lies."""
        if not self.ready:
            pooled = np.concatenate(self._pending) if self._pending else np.empty(0)
            if len(pooled) == 0:
                return np.nan if np.ndim(q) == 0 else np.full(np.shape(q), np.nan)
            return linear_quantile(pooled, float(q)) if np.ndim(q) == 0 else np.quantile(pooled, q)
        # Within a bin the mass is uniform; runs of empty bins hold none (their edges are
        # left out of the interpolation).
        from streamad.histogram_kernel import quantiles  # numba: imported on first use

        qs = np.asarray(q, dtype=np.float64)
        out = quantiles(self.counts, self._edges(), qs.reshape(-1))
        return float(out[0]) if qs.ndim == 0 else out.reshape(qs.shape)

    def cdf(self, x: np.ndarray | float) -> Any:
        """Share of the mass below ``x``."""
        if not self.ready:
            pooled = np.concatenate(self._pending) if self._pending else np.empty(0)
            if len(pooled) == 0:
                return np.full(np.shape(x), np.nan) if np.ndim(x) else np.nan
            s = np.sort(pooled)
            out = np.searchsorted(s, x, side="right") / len(s)
            return out
        cum = self._cum()
        return np.interp(x, self._edges(), cum / cum[-1])

    def density(self, x: np.ndarray) -> np.ndarray:
        """Laplace-smoothed density estimate at ``x`` (per unit of the value)."""
        x = np.asarray(x, dtype=np.float64)
        idx = self._index(x)
        edges = self._edges()
        widths = np.maximum(np.diff(edges), (self.hi - self.lo) / self.bins)
        c = self.counts + self.smoothing
        return c[idx] / (c.sum() * widths[idx])

    def median_mad(self) -> tuple[float, float]:
        """Median and median absolute deviation, read off the histogram.

        The cdf is piecewise linear between bin edges, so the mass within ``r`` of the
        median is piecewise linear in ``r`` between the distances of the edges from the
        median: evaluating it there and interpolating gives the MAD exactly, in one pass.
        """
        med = float(self.quantile(0.5))
        if not self.ready:
            pooled = np.concatenate(self._pending) if self._pending else np.empty(0)
            if len(pooled) == 0:
                return np.nan, np.nan
            return med, float(np.median(np.abs(pooled - med)))
        r = np.unique(np.abs(self._edges() - med))
        inside = np.asarray(self.cdf(med + r)) - np.asarray(self.cdf(med - r))
        inside = np.maximum.accumulate(inside)  # guard against rounding
        return med, float(np.interp(0.5, inside, r))

    def mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of the (decayed) mass, taking each bin's mass at
        its centre (the outer bins' centres lie halfway to the extremes seen)."""
        if not self.ready:
            pooled = np.concatenate(self._pending) if self._pending else np.empty(0)
            if len(pooled) == 0:
                return np.nan, np.nan
            return float(pooled.mean()), float(pooled.std())
        edges = self._edges()
        centres = (edges[:-1] + edges[1:]) / 2
        total = self.counts.sum()
        if total <= 0:
            return np.nan, np.nan
        mean = float(self.counts @ centres / total)
        var = float(self.counts @ (centres - mean) ** 2 / total)
        return mean, var**0.5

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "decay": self.decay,
            "counts": self.counts.copy(),
            "lo": self.lo,
            "hi": self.hi,
            "vmin": self.vmin,
            "vmax": self.vmax,
            "ready": self.ready,
            "n_seen": self.n_seen,
            "pending": np.concatenate(self._pending) if self._pending else np.empty(0),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.bins = int(state["bins"])
        self.decay = float(state["decay"])
        self.counts = np.asarray(state["counts"], dtype=np.float64).copy()
        self.lo, self.hi = float(state["lo"]), float(state["hi"])
        self.vmin, self.vmax = float(state["vmin"]), float(state["vmax"])
        self.ready = bool(state["ready"])
        self.n_seen = int(state["n_seen"])
        pending = np.asarray(state["pending"], dtype=np.float64)
        self._pending = [pending] if len(pending) else []


def linear_quantile(a: np.ndarray, q: float) -> float:
    """``np.quantile(a, q)`` (its default, linear method) for a 1-d float array without
    NaN and one ``q`` in [0, 1], to the bit: numpy's steps (the same partition, the same
    neighbours, its ``_lerp``, which interpolates from the upper neighbour when ``q``
    lands in the upper half) without its generality, which costs about 20 us a call
    whatever the size. A fleet's young thresholds ask it for a handful of scores on
    every update.

    >>> x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    >>> all(linear_quantile(x, q) == np.quantile(x, q) for q in (0.0, 0.1, 0.5, 0.9, 1.0))
    True
    """
    n = len(a)
    v = (n - 1) * q
    below = math.floor(v)
    above = below + 1
    if v >= n - 1:  # numpy's index of the largest value, for both neighbours
        below = above = -1
    part = np.partition(a, np.unique([0, -1, below, above]))
    lo, hi = part[below], part[above]
    t = v - below
    d = hi - lo
    return float(hi - d * (1.0 - t) if t >= 0.5 else lo + d * t)
