"""ODDS benchmark files (MATLAB ``.mat``): v5 through scipy, v7.3 (HDF5) through h5py.

ODDS files hold ``X`` (n × d) and ``y`` (n × 1, 1 = outlier). MATLAB v7.3 files are
HDF5 with arrays stored column-major, so ``X`` reads as d × n there and is transposed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamad.errors import InputError
from streamad.sources import ArraySource

__all__ = ["ArraySource", "MatSource", "load_mat"]


def load_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` as float64 (n × d) and ``y`` as int8 (n,), or ``None`` when the file has no ``y``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a file") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if not head:
        raise InputError(f"{path} is empty")
    from streamad.errors import require

    require("scipy", "mat", "reading MATLAB .mat files")
    require("h5py", "mat", "reading MATLAB .mat files")
    arrays = _read_hdf5(path) if _is_hdf5(path) else _read_v5(path)
    if "X" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(f"{path} has no 'X' array (found: {found})")
    X = np.asarray(arrays["X"])
    if X.ndim != 2:
        raise InputError(f"{path}: 'X' must be 2-D, got shape {X.shape}")
    if X.shape[1] == 0:
        raise InputError(f"{path}: 'X' has no columns")
    if np.iscomplexobj(X):
        raise InputError(f"{path}: 'X' holds complex numbers; streamad scores real-valued features")
    try:
        X = X.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'X' is not numeric (dtype {X.dtype})") from None
    y = arrays.get("y")
    if y is not None:
        y = np.asarray(y).ravel()
        if len(y) != len(X):
            raise InputError(f"{path}: 'y' has {len(y)} labels but 'X' has {len(X)} rows")
        y = (y.astype(np.float64) > 0).astype(np.int8)
    return X, y


def _is_hdf5(path: Path) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(str(path)))
    except OSError:
        return False


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            # Column-major storage: transpose back to MATLAB's row × column layout.
            return {k: np.asarray(f[k]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except OSError as e:
        raise InputError(f"cannot read {path} as MATLAB v7.3/HDF5: {e}") from None


def _read_v5(path: Path) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError as e:
        raise InputError(f"cannot read {path}: {e}") from None
    except Exception as e:  # scipy raises ValueError, TypeError or struct.error on garbage
        raise InputError(f"{path} is not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    return {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)}


class MatSource(ArraySource):
    """An ODDS ``.mat`` file replayed in file order, or in the benchmark protocol's
    order (``permutation_seed``), optionally cut to the first ``limit`` records."""

    def __init__(self, path: str | Path, permutation_seed: int | None = None, limit: int | None = None, chunk_rows: int = 8192) -> None:
        X, y = load_mat(path)
        if permutation_seed is not None:
            order = np.random.default_rng(permutation_seed).permutation(len(X))
            X, y = X[order], None if y is None else y[order]
        if limit is not None:
            X, y = X[:limit], None if y is None else y[:limit]
        self.has_labels = y is not None
        super().__init__(X, y, stream=str(path), chunk_rows=chunk_rows)
