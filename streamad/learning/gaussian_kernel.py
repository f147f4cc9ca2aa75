"""The online Gaussians' arithmetic, compiled with numba: the inverse of a small
symmetric positive-definite matrix (``streamad.learning.gaussian.symmetric_inverse``),
the update and the shrunk precision in numpy's order, and above
``gaussian.COMPILED_MAX_COLUMNS`` the substitutions that score through a Cholesky
factor instead of an inverse (``OnlineGaussian._factor``).

The online Gaussians invert their shrunk covariance once per window: the ``gaussian``
detector's every 32 records with ``examples/sensor-streams.yaml``. At a few dozen
columns numpy's LU inverse costs mostly its call: 25-29 us at 31 columns (35 with the
symmetrising around it), where this Cholesky inverse in plain loops takes 14 (5 at 21
columns) and is symmetric by construction. Above ``gaussian.COMPILED_MAX_COLUMNS`` (48)
LAPACK's blocked code is faster, and numpy keeps the work. Plain loops, no
``np.linalg`` inside: numba's linear algebra needs SciPy, which the base install does
not have.

The compiled code is cached beside this module, like the other kernels
(``NUMBA_CACHE_DIR`` moves it).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def spd_inverse(a: np.ndarray, out: np.ndarray) -> bool:
    """``out`` <- the inverse of ``a`` (symmetric, read from its lower triangle), by its
    Cholesky factor: ``a = L Lᵀ``, ``a⁻¹ = L⁻ᵀ L⁻¹``, exactly symmetric. False when
    ``a`` is not positive definite or the inverse is not finite (``out`` is then
    undefined)."""
    d = a.shape[0]
    L = np.zeros((d, d))
    for j in range(d):
        s = a[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return False
        ljj = math.sqrt(s)
        L[j, j] = ljj
        for i in range(j + 1, d):
            s = a[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / ljj
    # U = L⁻ᵀ (upper triangular), so that every inner loop below runs along rows:
    # column j of L⁻¹ by forward substitution is row j of U.
    U = np.zeros((d, d))
    for j in range(d):
        U[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, d):
            s = 0.0
            for k in range(j, i):
                s += L[i, k] * U[j, k]
            U[j, i] = -s / L[i, i]
    # a⁻¹ = L⁻ᵀ L⁻¹ = U Uᵀ: entry (i, j) is the dot product of rows i and j of U.
    for i in range(d):
        for j in range(i, d):
            s = 0.0
            for k in range(j, d):
                s += U[i, k] * U[j, k]
            if not math.isfinite(s):
                return False
            out[i, j] = s
            out[j, i] = s
    return True


@numba.njit(cache=True)
def _sum_as_numpy(a: np.ndarray) -> float:
    """``a.sum()`` of a short 1-d array, added in numpy's order (its pairwise sum: eight
    running sums from eight values on, then the rest), so that the result is numpy's to
    the last bit. Up to 128 values, numpy's block size."""
    n = a.shape[0]
    if n < 8:
        s = 0.0
        for i in range(n):
            s += a[i]
        return s
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i < n - (n % 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        s += a[i]
        i += 1
    return s


@numba.njit(cache=True)
def shrunk_precision(scatter: np.ndarray, n: float, prior: float, shrink: float, cov: np.ndarray, out: np.ndarray) -> bool:
    """``cov`` <- the covariance ``OnlineGaussian._derive`` shrinks (symmetrised scatter
    plus ``prior`` pseudo-records of the identity, over the weight, shrunk toward its
    mean variance), computed as its numpy code computes it, to the bit; ``out`` <- its
    inverse (``spd_inverse``). False when ``cov`` is not positive definite (``out`` is
    then undefined, ``cov`` is not): one call where the numpy code made a dozen, at a
    few dozen columns mostly their fixed costs."""
    d = scatter.shape[0]
    for i in range(d):
        for j in range(d):
            cov[i, j] = scatter[i, j] + scatter[j, i]
    for i in range(d):
        cov[i, i] += 2.0 * prior
    f = 0.5 / (n + prior)
    for i in range(d):
        for j in range(d):
            cov[i, j] *= f
    diag = np.empty(d)
    for i in range(d):
        diag[i] = cov[i, i]
    target = max(_sum_as_numpy(diag) / d, 1e-6)
    g = 1.0 - shrink
    for i in range(d):
        for j in range(d):
            cov[i, j] *= g
    add = shrink * target + 1e-9
    for i in range(d):
        cov[i, i] += add
    return spd_inverse(cov, out)


@numba.njit(cache=True)
def fold(nb: int, mb: np.ndarray, spread: np.ndarray, mean: np.ndarray, scatter: np.ndarray, n: float, keep: float, forgets: bool) -> float:
    """``OnlineGaussian.update``'s arithmetic in numpy's order, to the bit: ``scatter``
    (decayed by ``keep`` when ``forgets``) and ``mean`` move in place to include ``nb``
    records whose mean is ``mb`` and whose scatter about it is ``spread`` (numpy's
    ``X.mean(axis=0)`` and ``c.T @ c``; the record itself and zeros for one record);
    returns the new weight. On a fleet a device's estimate learns a record or two a
    window, where the numpy code's dozen calls cost many times the arithmetic."""
    d = mb.shape[0]
    if forgets:
        n = n * keep
        for a in range(d):
            for b in range(d):
                scatter[a, b] *= keep
    delta = np.empty(d)
    for j in range(d):
        delta[j] = mb[j] - mean[j]
    tot = n + float(nb)
    w = n * float(nb) / tot
    for a in range(d):
        for b in range(d):
            scatter[a, b] += spread[a, b] + (delta[a] * delta[b]) * w
    f = float(nb) / tot
    for j in range(d):
        mean[j] = mean[j] + delta[j] * f
    return tot


@numba.njit(cache=True)
def whitened_norms(L: np.ndarray, diff: np.ndarray, out: np.ndarray) -> None:
    """``out[r]`` <- ``|L⁻¹ diff[r]|²``, the squared Mahalanobis distance of each row
    of ``diff`` (records minus the mean) when ``L`` is the lower Cholesky factor of
    the covariance: a forward substitution, ``d²/2`` multiply-adds a record, where
    the precision the explicit inverse gives costs ``2d³`` a refit (above 48 columns,
    the Gaussians' cost: 20 ms at 501). All records advance together, row by row of
    ``L``, so the innermost loop runs over records (vectorised; each record's
    arithmetic in the order of one substitution alone)."""
    n, d = diff.shape
    y = np.empty((d, n))
    acc = np.empty(n)
    for r in range(n):
        out[r] = 0.0
    for i in range(d):
        for r in range(n):
            acc[r] = diff[r, i]
        for j in range(i):
            lij = L[i, j]
            for r in range(n):
                acc[r] -= lij * y[j, r]
        lii = L[i, i]
        for r in range(n):
            v = acc[r] / lii
            y[i, r] = v
            out[r] += v * v


@numba.njit(cache=True)
def precision_times(L: np.ndarray, diff: np.ndarray, out: np.ndarray) -> None:
    """``out[r]`` <- ``P diff[r]`` with ``P = L⁻ᵀ L⁻¹``: a forward, then a backward
    substitution a record."""
    n, d = diff.shape
    y = np.empty(d)
    for r in range(n):
        for i in range(d):
            s = diff[r, i]
            for j in range(i):
                s -= L[i, j] * y[j]
            y[i] = s / L[i, i]
        for i in range(d - 1, -1, -1):
            s = y[i]
            for j in range(i + 1, d):
                s -= L[j, i] * out[r, j]
            out[r, i] = s / L[i, i]


def warm() -> None:
    """Load the compiled functions (from numba's cache, or compile them)."""
    spd_inverse(np.eye(2), np.empty((2, 2)))
    whitened_norms(np.eye(2), np.zeros((1, 2)), np.empty(1))
    precision_times(np.eye(2), np.zeros((1, 2)), np.empty((1, 2)))
    shrunk_precision(np.eye(2), 1.0, 0.0, 0.5, np.empty((2, 2)), np.empty((2, 2)))
    fold(1, np.zeros(2), np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2)), 0.0, 1.0, True)
