"""The inverse of a small symmetric positive-definite matrix, compiled with numba
(``streamad.learning.gaussian.symmetric_inverse``).

The online Gaussians invert their shrunk covariance once per window: the ``gaussian``
detector's with windows of 32 records, the default's beside its network. At a few
dozen columns numpy's LU inverse spends most of its time around LAPACK (argument
checks, a copy, the error-state context), not in it: 25 us of 35 for 31 columns.
A Cholesky inverse in plain loops does the same work in a few microseconds and uses
the symmetry. Above ``MAX_COLUMNS`` LAPACK's blocked code wins, and the caller keeps
numpy's inverse. Plain loops, no ``np.linalg`` inside: numba's linear algebra needs
SciPy, which the base install does not have.

The compiled code is cached beside this module, like the other kernels
(``NUMBA_CACHE_DIR`` moves it).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: the largest matrix inverted here; numpy's (LAPACK's) inverse above
MAX_COLUMNS = 48


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


def warm() -> None:
    """Load the compiled function (from numba's cache, or compile it)."""
    spd_inverse(np.eye(2), np.empty((2, 2)))
