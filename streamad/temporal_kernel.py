"""The temporal stage's inner loop (streamad/temporal.py), compiled with numba.

Each key's context is a recurrence over its records (running means, run lengths, the
last few values), so the natural form is one pass over the rows that updates the
state of the row's key. In numpy the same needed a few hundred small array operations
per window (keys grouped, the running means as triangular matrix products); their fixed
costs were most of the stage's time. Compiled, the pass costs about as much as copying
the window.

The compiled code is cached beside this module (numba's ``cache=True``), so only the
first process after an install compiles it (a few seconds); ``NUMBA_CACHE_DIR`` moves
the cache where the package directory is read-only. This module is imported when the
first window with temporal context is transformed (numba itself is loaded by every
pipeline: the histograms and the drift tests are compiled too).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _median_sorted(buf: np.ndarray, m: int) -> float:
    """Median of ``buf[:m]`` (sorted in place: insertion sort, ``m`` is a few values)."""
    for i in range(1, m):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    if m % 2 == 1:
        return buf[m // 2]
    return 0.5 * (buf[m // 2 - 1] + buf[m // 2])


@numba.njit(cache=True)
def _median5(a: float, b: float, c: float, d: float, e: float) -> float:
    """Median of five values by a fixed network of min/max pairs (Devillard's
    ``opt_med5``): no branch depends on the data, where an insertion sort's branches
    are mispredicted on noisy sensor values. The history is five values by default, so
    this is the median of nearly every jump and drift."""
    a, b = min(a, b), max(a, b)
    d, e = min(d, e), max(d, e)
    a, d = min(a, d), max(a, d)
    b, e = min(b, e), max(b, e)
    b, c = min(b, c), max(b, c)
    c, d = min(c, d), max(c, d)
    b, c = min(b, c), max(b, c)
    return c


@numba.njit(cache=True, error_model="numpy")
def run_rows(
    X: np.ndarray,
    g: np.ndarray,
    ts: np.ndarray,
    timed: bool,
    w: np.ndarray,
    a_s: float,
    a_l: float,
    step_clip: float,
    vol_floor: float,
    gap_eps: float,
    gap_eps_seconds: float,
    run_cap: int,
    offsets: np.ndarray,
    F: np.ndarray,
    run_out: np.ndarray,
    gap_out: np.ndarray,
    last: np.ndarray,
    hist: np.ndarray,
    ml: np.ndarray,
    vs: np.ndarray,
    vl: np.ndarray,
    run: np.ndarray,
    ever: np.ndarray,
    t_last: np.ndarray,
    ghist: np.ndarray,
    count: np.ndarray,
    cap: np.ndarray,
) -> None:
    """Fill the derived columns of ``F`` (the values are already in its first ``d``)
    row by row, each from its key's state, and move the states (arrays indexed by key)
    past the row. ``offsets``: the first column of jump, diff, drift, vol, run, gap
    (-1: not computed). ``gap_out`` gets the seconds since the key's previous record
    (0: unknown). ``cap``: each key's usual step size as the committed state knows it
    (before the window, where the states may be part-way through it): steps are clipped
    at a multiple of it, so one wild record early in a window cannot raise the clip for
    the records after it."""
    n, d = X.shape
    h = hist.shape[1]
    o_jump, o_diff, o_drift, o_vol, o_run, o_gap = offsets[0], offsets[1], offsets[2], offsets[3], offsets[4], offsets[5]
    need_vs = o_vol >= 0
    buf = np.empty(h)
    for i in range(n):
        k = g[i]
        a = a_l * w[i]
        for j in range(d):
            x = X[i, j]
            prev = last[k, j]
            step = x - prev
            if o_jump >= 0:
                if h == 5:
                    F[i, o_jump + j] = x - _median5(hist[k, 0, j], hist[k, 1, j], hist[k, 2, j], hist[k, 3, j], hist[k, 4, j])
                else:
                    for q in range(h):
                        buf[q] = hist[k, q, j]
                    F[i, o_jump + j] = x - _median_sorted(buf, h)
            m_new = (1.0 - a) * ml[k, j] + a * x
            if o_drift >= 0:
                # the recent level: the median of the last h values, this one included
                if h == 5:
                    F[i, o_drift + j] = _median5(hist[k, 1, j], hist[k, 2, j], hist[k, 3, j], hist[k, 4, j], x) - m_new
                else:
                    for q in range(h - 1):
                        buf[q] = hist[k, q + 1, j]
                    buf[h - 1] = x
                    F[i, o_drift + j] = _median_sorted(buf, h) - m_new
            ml[k, j] = m_new
            size = abs(step)
            usual = vl[k, j]
            v_new = (1.0 - a) * usual + a * size
            if need_vs:
                # one spike and its way back move the recent step size little: a step
                # counts at most ``step_clip`` usual steps
                c = cap[k, j]
                clipped = min(size, step_clip * c) if c > 0.0 else size
                s_new = (1.0 - a_s) * vs[k, j] + a_s * clipped
                vs[k, j] = s_new
                if v_new > 0.0:
                    F[i, o_vol + j] = math.log((s_new + vol_floor * v_new) / ((1.0 + vol_floor) * v_new))
                else:
                    F[i, o_vol + j] = 0.0
            vl[k, j] = v_new
            if x != prev:
                r = 0
                ever[k, j] = True
            else:
                r = min(run[k, j] + 1, run_cap)
            run[k, j] = r
            run_out[i, j] = r
            if o_run >= 0:
                F[i, o_run + j] = math.log(r) if r > 1 and ever[k, j] else 0.0
            if o_diff >= 0:
                F[i, o_diff + j] = step
            for q in range(h - 1):
                hist[k, q, j] = hist[k, q + 1, j]
            hist[k, h - 1, j] = x
            last[k, j] = x
        if timed:
            gap = ts[i] - t_last[k]
            if math.isfinite(gap):
                gap = max(gap, 0.0)
                gap_out[i] = gap
            else:
                gap = math.nan
                gap_out[i] = 0.0
            if o_gap >= 0:
                m = 0
                for q in range(h):
                    v = ghist[k, q]
                    if not math.isnan(v):
                        buf[m] = v
                        m += 1
                if m == 0 or math.isnan(gap):
                    F[i, o_gap] = 0.0  # unknown
                else:
                    usual_gap = _median5(buf[0], buf[1], buf[2], buf[3], buf[4]) if m == 5 else _median_sorted(buf, m)
                    ratio = math.log((gap + gap_eps * usual_gap + gap_eps_seconds) / ((1.0 + gap_eps) * usual_gap + gap_eps_seconds))
                    # rounded (as numpy's round does it), so that timestamps' rounding
                    # jitter leaves regular sampling at 0
                    F[i, o_gap] = np.rint(ratio * 100.0) / 100.0
            for q in range(h - 1):
                ghist[k, q] = ghist[k, q + 1]
            ghist[k, h - 1] = gap
            t_last[k] = ts[i]
        count[k] += 1


@numba.njit(cache=True)
def running_means(
    X: np.ndarray, g: np.ndarray, w: np.ndarray, a_s: float, a_l: float, step_clip: float, with_steps: bool,
    last: np.ndarray, ml: np.ndarray, vs: np.ndarray, vl: np.ndarray,
) -> None:  # fmt: skip
    """Only the running means of ``run_rows`` (the long level, the long and, with
    ``with_steps``, the short step size), from the same states: what the flags change
    (``TemporalFeatures.reweigh``). ``last`` is moved too."""
    n, d = X.shape
    cap = vl.copy()
    for i in range(n):
        k = g[i]
        a = a_l * w[i]
        for j in range(d):
            x = X[i, j]
            size = abs(x - last[k, j])
            usual = vl[k, j]
            if with_steps:
                c = cap[k, j]
                clipped = min(size, step_clip * c) if c > 0.0 else size
                vs[k, j] = (1.0 - a_s) * vs[k, j] + a_s * clipped
            ml[k, j] = (1.0 - a) * ml[k, j] + a * x
            vl[k, j] = (1.0 - a) * usual + a * size
            last[k, j] = x


@numba.njit(cache=True)
def scale_columns(
    F: np.ndarray, mean_a: np.ndarray, div_a: np.ndarray, mean_b: np.ndarray, div_b: np.ndarray, clip: float,
) -> np.ndarray:  # fmt: skip
    """A model's columns standard-scaled, clipped to ``±clip``: the first
    ``len(mean_a)`` (the features) by one scaler's center and divisor, the rest (the
    derived columns) by the other's. The same float64 values as numpy's
    ``(F - center) / divisor`` then the clip, in one pass and no joined copies of the
    two scalers' arrays (``Model._scale``: a window's scaling took twice the time of
    computing its context)."""
    n, m = F.shape
    d = mean_a.shape[0]
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            if j < d:
                v = (F[i, j] - mean_a[j]) / div_a[j]
            else:
                v = (F[i, j] - mean_b[j - d]) / div_b[j - d]
            # As np.minimum / np.maximum: a NaN stays NaN.
            if v > clip:
                v = clip
            elif v < -clip:
                v = -clip
            out[i, j] = v
    return out
