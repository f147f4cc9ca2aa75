"""The inverse of a small symmetric positive-definite matrix, compiled with numba
(``streamad.learning.gaussian.symmetric_inverse``).

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


def warm() -> None:
    """Load the compiled function (from numba's cache, or compile it)."""
    spd_inverse(np.eye(2), np.empty((2, 2)))
