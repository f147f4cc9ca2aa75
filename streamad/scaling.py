"""Online feature scalers that learn from whole windows.

A scaler transforms a window with the statistics it had *before* the window, then
learns from it, like the detector: no record is scaled with information from itself
or from the future.

>>> import numpy as np
>>> sc = StandardScaler()
>>> sc.learn(np.array([[1.0, 10.0], [3.0, 30.0]]))
>>> sc.transform(np.array([[2.0, 20.0], [4.0, 40.0]])).round(3).tolist()
[[0.0, 0.0], [2.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class Scaler:
    """Base class: ``transform`` leaves state unchanged; ``learn`` updates it."""

    name = "none"

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)

    def transform_one(self, x: np.ndarray) -> np.ndarray:
        """``transform`` of one record (d,)."""
        return self.transform(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]

    def learn(self, X: np.ndarray) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    @property
    def center(self) -> np.ndarray | None:
        """Where an unremarkable record sits, in raw units (for attribution)."""
        return None


#: ``StandardScaler``'s ``constant_share``: a feature holding one value in at least this
#: share of the records learned is constant to the scaler (benchmarks/results/ANALYSIS.md,
#: sixteenth round)
CONSTANT_SHARE = 0.97


class StandardScaler(Scaler):
    """Running mean and variance (Chan et al.'s parallel update), optionally forgetting.

    ``half_life`` (in records) makes old records count half as much after that many new
    ones, so the scale follows slow drift. Scaled values are clipped to ``±clip`` so a
    wild record cannot blow up training. Constant features scale to 0. ``floors`` (one
    per feature) bound the deviation from below: a feature that barely moved so far
    is not blown up to ``±clip`` by its first small move.

    ``constant_share``: a feature that holds one value in at least this share of the
    records learned (a duration that is 0 in 99% of connections, a flag that is rarely
    set) is constant too and scales to 0 (None: only a feature that never moves). Its
    standard deviation is made of its rare departures alone, so each departure would be
    many deviations out, and a record that merely takes one (0.6% of http.mat's normal
    connections) would outrank every anomaly whose values move on features with a
    spread. An isolation forest ignores such a feature the same way, in every sample
    where it does not move.

    >>> import numpy as np
    >>> X = np.zeros((1000, 2)); X[:, 1] = np.random.default_rng(0).normal(size=1000)
    >>> X[::100, 0] = 5.0  # feature 0 departs from 0 in 1% of the records
    >>> sc = StandardScaler(); sc.learn(X)
    >>> sc.transform(np.array([[5.0, 2.0]])).round(1).tolist()
    [[0.0, 2.1]]
    >>> every = StandardScaler(constant_share=None); every.learn(X)
    >>> every.transform(np.array([[5.0, 2.0]])).round(1).tolist()  # 9.9 deviations out
    [[9.9, 2.1]]
    """

    name = "standard"

    def __init__(
        self, half_life: float | None = None, clip: float = 10.0, floors: np.ndarray | None = None, constant_share: float | None = CONSTANT_SHARE
    ) -> None:
        if constant_share is not None and not 0.5 < constant_share <= 1.0:
            raise ValueError("constant_share must be in (0.5, 1] (or None)")
        self.half_life = half_life
        self.clip = clip
        self.floors = None if floors is None else np.asarray(floors, dtype=np.float64)
        self.constant_share = constant_share
        self.n = 0.0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        # Per feature, the value it held most lately (a candidate: replaced by a window's
        # median when it held under half of that window) and the records that held it,
        # forgetting as ``n`` does.
        self.mode: np.ndarray | None = None
        self.at_mode: np.ndarray | None = None
        self._cache: tuple[Any, Any, float, np.ndarray | None] | None = None
        self._kernel: Callable[..., np.ndarray] | None = None  # transform_one's

    def learn(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return
        self.learn_moments(*moments(X), X)

    def learn_moments(self, nb: float, mb: np.ndarray, m2b: np.ndarray, X: np.ndarray | None = None) -> None:
        """``learn`` of a window given its ``moments`` (one computation shared by the
        scalers of overlapping columns); ``X``, the window itself, counts the values each
        feature holds (``constant_share``; None: not counted)."""
        if nb <= 0:
            return
        if self.mean is None:
            self.mean = np.zeros(len(mb))
            self.m2 = np.zeros(len(mb))
        assert self.m2 is not None
        if self.half_life:
            keep = 0.5 ** (nb / self.half_life)
            self.n *= keep
            self.m2 *= keep
            if self.at_mode is not None:
                self.at_mode = self.at_mode * keep
        if self.constant_share is not None and X is not None and len(X):
            self._count_modes(np.asarray(X, dtype=np.float64))
        delta = mb - self.mean
        tot = self.n + nb
        self.mean = self.mean + delta * (nb / tot)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / tot)
        self.n = tot

    def _count_modes(self, X: np.ndarray) -> None:
        if self.mode is None or self.at_mode is None:
            # A state from before the count (or a first window): counted from here, so
            # the share of records already learned is unknown and reads as low.
            self.mode, self.at_mode = np.full(X.shape[1], np.nan), np.zeros(X.shape[1])
        held = (X == self.mode).sum(axis=0)
        lost = 2 * held < len(X)
        if lost.any():
            # A value held by over half of the window is its median.
            # (New arrays, not writes into them: a state_dict handed out holds them.)
            cols = np.flatnonzero(lost)
            self.mode = self.mode.copy()
            self.mode[cols] = np.partition(X[:, cols], len(X) // 2, axis=0)[len(X) // 2]
            self.at_mode = np.where(lost, 0.0, self.at_mode)
            held[cols] = (X[:, cols] == self.mode[cols]).sum(axis=0)
        self.at_mode = self.at_mode + held

    @property
    def std(self) -> np.ndarray | None:
        if self.mean is None or self.n < 2:
            return None
        assert self.m2 is not None
        return np.sqrt(self.m2 / self.n)

    @property
    def center(self) -> np.ndarray | None:
        return self.mean

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        safe = self._divisor()
        if safe is None:
            return np.zeros_like(X)
        z = (X - self.mean) / safe
        # np.clip's Python wrapper costs more than the work on a record or a few.
        np.minimum(z, self.clip, out=z)
        return np.maximum(z, -self.clip, out=z)

    def transform_one(self, x: np.ndarray) -> np.ndarray:
        """``transform`` of one record (d,), in one compiled call (the same values)."""
        safe = self._divisor()
        if safe is None or self.mean is None:
            return np.zeros(len(x))
        if self._kernel is None:
            from streamad.record_kernel import scale_record  # numba: imported on first use

            self._kernel = scale_record
        return self._kernel(np.asarray(x, dtype=np.float64), self.mean, safe, float(self.clip))

    def affine(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``transform`` as ``(X - center) / divisor``, clipped: the two arrays (None
        until it has learned enough to scale)."""
        safe = self._divisor()
        return None if safe is None or self.mean is None else (self.mean, safe)

    def _divisor(self) -> np.ndarray | None:
        """The standard deviation, infinite for constant features; computed once per
        state (``learn`` and ``load_state_dict`` replace ``mean`` and ``m2``), not per
        ``transform``: one record at a time, it was a fifth of a score."""
        key = (self.mean, self.m2, self.n)
        cached = self._cache
        if cached is not None and cached[0] is key[0] and cached[1] is key[1] and cached[2] == key[2]:
            return cached[3]
        std, mean = self.std, self.mean
        if std is not None and self.floors is not None:
            std = np.maximum(std, self.floors)
        safe = None if std is None or mean is None else np.where(std > 1e-12 * (1.0 + np.abs(mean)), std, np.inf)
        if safe is not None and self.constant_share is not None and self.at_mode is not None:
            safe = np.where(self.at_mode >= self.constant_share * self.n, np.inf, safe)
        self._cache = (*key, safe)
        return safe

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "mean": self.mean, "m2": self.m2, "mode": self.mode, "at_mode": self.at_mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n = float(state["n"])
        self.mean = None if state["mean"] is None else np.asarray(state["mean"], dtype=np.float64)
        self.m2 = None if state["m2"] is None else np.asarray(state["m2"], dtype=np.float64)
        mode, at_mode = state.get("mode"), state.get("at_mode")  # states before the count have neither
        self.mode = None if mode is None else np.asarray(mode, dtype=np.float64)
        self.at_mode = None if at_mode is None else np.asarray(at_mode, dtype=np.float64)


def moments(X: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """A window's record count, column means and summed squared deviations from them."""
    mb = X.mean(axis=0)
    return float(len(X)), mb, ((X - mb) ** 2).sum(axis=0)


class MinMaxScaler(Scaler):
    """Running minimum and maximum; values outside the seen range clip to [-clip, 1+clip]."""

    name = "minmax"

    def __init__(self, clip: float = 1.0) -> None:
        self.clip = clip
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None

    def learn(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return
        lo, hi = X.min(axis=0), X.max(axis=0)
        self.lo = lo if self.lo is None else np.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else np.maximum(self.hi, hi)

    @property
    def center(self) -> np.ndarray | None:
        return None if self.lo is None or self.hi is None else (self.lo + self.hi) / 2

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.lo is None or self.hi is None:
            return np.zeros_like(X)
        span = self.hi - self.lo
        safe = np.where(span > 0, span, np.inf)
        return np.clip((X - self.lo) / safe, -self.clip, 1.0 + self.clip)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lo": self.lo, "hi": self.hi}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lo = None if state["lo"] is None else np.asarray(state["lo"], dtype=np.float64)
        self.hi = None if state["hi"] is None else np.asarray(state["hi"], dtype=np.float64)


SCALERS: dict[str, type[Scaler]] = {"none": Scaler, "standard": StandardScaler, "minmax": MinMaxScaler}


def make_scaler(name: str, **params: Any) -> Scaler:
    try:
        cls = SCALERS[name]
    except KeyError:
        raise ValueError(f"unknown scaler {name!r}; choose one of {', '.join(SCALERS)}") from None
    return cls(**params)
