"""Histograms of random sparse projections of the records LOE calls normal: an
isolation-type density beside the network and the Gaussian (LODA, Pevný 2016, online).

An autoencoder and a Gaussian both model the data as one smooth shape: a record that
sits in an empty region *inside* that shape (between clusters of a multi-modal
stream, in a rare combination of ordinary values) reconstructs well and is close in
Mahalanobis distance. Isolation-type detectors see it because they count how few
records share its neighbourhood. This component counts in one dimension at a time:

- ``K`` random sparse directions, each on about ``sqrt(d)`` features with Gaussian
  weights, normalised to unit length (records arrive scaled online, so a projection
  has about unit spread);
- per direction, a histogram of fixed-width bins (``width`` in those units, randomly
  shifted per direction, clipped to ``bins`` bins) of the LOE-normal records, the
  counts forgetting with ``half_life`` records like the Gaussian;
- the score of a record is the mean over directions of ``log((N + 1) / (c + 1))``
  (``c``: the count of its bin, ``N``: the records counted): LODA's negative mean
  log-density up to a constant, never negative.

One table per direction, built when the width of the records is known; scoring is one
matrix product, a floor and a gather, vectorised over the window (the log table is
refreshed once per update, so scoring takes no logarithm).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(-2, 0.3, size=(1000, 2)), rng.normal(2, 0.3, size=(1000, 2))]
>>> h = ProjectionHistograms(2, seed=0)
>>> h.update(X)
>>> cluster, between = h.score(np.array([[2.0, 2.0], [0.0, 0.0]]))
>>> bool(between > cluster + 2)  # between two clusters: close to the mean, yet rare
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamad.learning.gaussian import Calibrator


class ProjectionHistograms:
    """Fixed-width histograms of ``n_projections`` random sparse projections, forgetting
    with ``half_life`` records; ``score`` is the mean negative log bin frequency."""

    def __init__(
        self,
        n_features: int,
        n_projections: int = 32,
        width: float = 0.25,
        bins: int = 128,
        half_life: float | None = 20_000.0,
        seed: int = 0,
        kind: str = "sparse",
    ) -> None:
        if kind not in ("sparse", "axes", "both"):
            raise ValueError(f"projection kind must be 'sparse', 'axes' or 'both', not {kind!r}")
        if n_features < 1:
            raise ValueError("projection histograms need at least one feature")
        if n_projections < 1:
            raise ValueError("projection histograms need at least one projection")
        if width <= 0:
            raise ValueError("projection bin width must be positive")
        if bins < 2:
            raise ValueError("projection histograms need at least 2 bins")
        if half_life is not None and half_life <= 0:
            raise ValueError("projection half_life must be positive (or None: never forget)")
        self.d = n_features
        self.k = n_projections
        self.width = width
        self.bins = bins
        self.half_life = half_life
        self.seed = seed
        # The directions and shifts are a function of the seed and the width alone, so a
        # checkpoint stores only the counts.
        rng = np.random.default_rng((seed, n_features, n_projections, 0x10DA))
        nnz = max(1, int(round(math.sqrt(n_features))))
        W = np.zeros((n_features, n_projections))
        for j in range(n_projections):
            idx = rng.choice(n_features, size=nnz, replace=False)
            W[idx, j] = rng.normal(size=nnz)
        W /= np.maximum(np.linalg.norm(W, axis=0), 1e-12)
        if kind == "axes":
            W = np.eye(n_features)
        elif kind == "both":
            W = np.c_[np.eye(n_features), W]
        n_projections = self.k = W.shape[1]
        # Scaled to bin units, the shift folded in: bin = floor(x @ proj + offset).
        self.proj = W / width
        self.offset = rng.uniform(0.0, 1.0, size=n_projections) + bins // 2
        self.base = np.arange(n_projections) * bins  # where each direction's table starts
        self.reset()

    def reset(self) -> None:
        self.n = 0.0
        self.counts = np.zeros(self.k * self.bins)
        self._derive()

    def _index(self, X: np.ndarray) -> np.ndarray:
        b = np.floor(np.asarray(X, dtype=np.float64) @ self.proj + self.offset)
        np.clip(b, 0, self.bins - 1, out=b)
        return b.astype(np.intp) + self.base

    def _derive(self) -> None:
        # What score() reads: -log of the smoothed bin frequency, one table per update.
        self._table = np.log(self.n + 1.0) - np.log(self.counts + 1.0)

    def update(self, X: np.ndarray) -> None:
        """Count the records of ``X`` (n x d), all of equal weight."""
        if len(X) == 0:
            return
        if self.half_life:
            keep = 0.5 ** (len(X) / self.half_life)
            self.n *= keep
            self.counts *= keep
        self.counts += np.bincount(self._index(X).ravel(), minlength=self.counts.size)
        self.n += float(len(X))
        self._derive()

    def forget(self, weight: float) -> None:
        """Keep the shape of the histograms but let them weigh no more than ``weight`` records."""
        if self.n > weight > 0:
            self.counts *= weight / self.n
            self.n = float(weight)
            self._derive()

    def score(self, X: np.ndarray) -> np.ndarray:
        """Mean over directions of ``log((N + 1) / (c + 1))`` (n,); no state changes."""
        if len(X) == 0:
            return np.empty(0)
        return self._table[self._index(X)].mean(axis=1)

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "counts": self.counts.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        counts = np.asarray(state["counts"], dtype=np.float64)
        if counts.shape != self.counts.shape:
            raise ValueError(f"projection histograms of {counts.size} cells cannot load into {self.counts.size} ({self.k} x {self.bins})")
        self.n = float(state["n"])
        self.counts = counts.copy()
        self._derive()


class ProjectionComponent:
    """What a trainer keeps beside its network when it has projection histograms: the
    histograms of the LOE-normal records and the calibration of their scores against
    the component's own LOE-normal score history (as ``GaussianComponent``)."""

    def __init__(
        self,
        n_features: int,
        n_projections: int = 32,
        width: float = 0.25,
        bins: int = 128,
        half_life: float | None = 20_000.0,
        seed: int = 0,
        kind: str = "sparse",
        cal_bins: int = 48,
        decay: float = 0.99,
        floor: float = 0.05,
        tail: float | None = None,
    ) -> None:
        self.model = ProjectionHistograms(n_features, n_projections=n_projections, width=width, bins=bins, half_life=half_life, seed=seed, kind=kind)
        self.cal = Calibrator(bins=cal_bins, decay=decay, floor=floor, tail=tail)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated scores of the records of ``X``; no state changes."""
        return self.cal(self.model.score(X))

    def absorb(self, fresh: np.ndarray, normal: np.ndarray) -> None:
        """Learn a step's fresh LOE-normal records, after their scores joined the calibration."""
        xn = fresh[normal]
        if len(xn):
            # Scores of empty histograms are all 0: they would make the calibration's
            # spread 0 and the next window's scores explode.
            if self.model.n > 0:
                self.cal.update(self.model.score(xn))
            self.model.update(xn)

    def reopen(self, weight: float) -> None:
        """After a drift: the histograms weigh at most ``weight`` records, the calibration starts afresh."""
        self.model.forget(weight)
        self.cal.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "cal": self.cal.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.cal.load_state_dict(state["cal"])
