"""Histograms of the records LOE calls normal, one per feature (HBOS) or per random
sparse direction (LODA): an isolation-type density beside the network and the Gaussian.

An autoencoder and a Gaussian both model the data as one smooth shape. A record whose
every value is ordinary on that shape's scale, but rare in the data (a pixel that is
almost never inked, a lab value in the long empty tail of a skewed feature, one mode
of a multi-modal feature that normal records never take), reconstructs well and is
close in Mahalanobis distance; isolation-type detectors see it because they count how
few records share its values. This component counts:

- one direction per feature (``kind="axes"``: the histogram-based outlier score,
  Goldstein and Dengel 2012), or ``n_projections`` random sparse directions on about
  ``sqrt(d)`` features each with Gaussian weights, normalised to unit length
  (``kind="sparse"``: LODA, Pevný 2016). Records arrive scaled online, so a direction
  has about unit spread;
- per direction, a histogram of fixed-width bins (``width`` in those units, randomly
  shifted per direction, the outermost of ``bins`` taking everything beyond) of the
  LOE-normal records, the counts forgetting with ``half_life`` records like the
  Gaussian;
- the score of a record is the mean over directions of ``log((N + 1) / (c + 1))``
  (``c``: the count of its bin, ``N``: the records counted): the negative mean log
  frequency of its values, never negative.

Built when the width of the records is known; scoring is a floor and a gather (and a
matrix product for sparse directions), vectorised over the window; the log table is
refreshed once per update, so scoring takes no logarithm.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.c_[rng.choice([-2.0, 2.0], size=2000) + rng.normal(0, 0.3, size=2000), rng.normal(size=2000)]
>>> h = ProjectionHistograms(2, seed=0)
>>> h.update(X)
>>> mode, between = h.score(np.array([[2.0, 0.0], [0.0, 0.0]]))
>>> bool(between > mode + 2)  # between the two modes of feature 0: at its mean, yet rare
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamad.learning.gaussian import Calibrator, record_kernels

KINDS = ("axes", "sparse")


class ProjectionHistograms:
    """Fixed-width histograms of the features (``kind="axes"``) or of ``n_projections``
    random sparse projections (``kind="sparse"``), forgetting with ``half_life``
    records; ``score`` is the mean negative log bin frequency."""

    def __init__(
        self,
        n_features: int,
        kind: str = "axes",
        n_projections: int = 32,
        width: float = 0.25,
        bins: int = 128,
        half_life: float | None = 20_000.0,
        seed: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"projection kind must be one of {', '.join(KINDS)}, not {kind!r}")
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
        self.kind = kind
        self.width = width
        self.bins = bins
        self.half_life = half_life
        # The directions and shifts follow from the seed and the shape alone, so a
        # checkpoint stores only the counts.
        rng = np.random.default_rng((seed, n_features, n_projections, 0x10DA))
        self.proj: np.ndarray | None = None  # None: the features themselves
        if kind == "sparse":
            nnz = max(1, int(round(math.sqrt(n_features))))
            W = np.zeros((n_features, n_projections))
            for j in range(n_projections):
                idx = rng.choice(n_features, size=nnz, replace=False)
                W[idx, j] = rng.normal(size=nnz)
            W /= np.maximum(np.linalg.norm(W, axis=0), 1e-12)
            self.proj = W / width  # in bin units
        self.k = n_features if self.proj is None else n_projections
        # bin = floor(value / width + offset): a random shift, the centre bin at 0.
        self.offset = rng.uniform(0.0, 1.0, size=self.k) + bins // 2
        self.base = np.arange(self.k) * bins  # where each direction's table starts
        self.reset()

    def reset(self) -> None:
        self.n = 0.0
        self.counts = np.zeros(self.k * self.bins)
        self._derive()

    def _index(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        b = X * (1.0 / self.width) if self.proj is None else X @ self.proj
        b += self.offset
        np.floor(b, out=b)
        np.clip(b, 0, self.bins - 1, out=b)
        return b.astype(np.intp) + self.base

    def _derive(self) -> None:
        # What score() reads: -log of the smoothed bin frequency, once per update.
        self._table = np.log(self.n + 1.0) - np.log(self.counts + 1.0)

    def _check(self, X: np.ndarray) -> None:
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"projection histograms were built for {self.d} features, not records of shape {X.shape}")

    def update(self, X: np.ndarray) -> None:
        """Count the records of ``X`` (n x d), all of equal weight."""
        X = np.asarray(X)
        self._check(X)
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
        X = np.asarray(X)
        self._check(X)
        if len(X) == 0:
            return np.empty(0)
        return self._table[self._index(X)].mean(axis=1)

    def score_record(self, x: np.ndarray, clip: float) -> float:
        """``score`` of one record (d,), NaN read as 0 and clipped to ``±clip`` (as the
        detector cleans a batch), in one compiled call; one histogram per feature only."""
        if self.proj is not None:
            raise ValueError("score_record reads one histogram per feature (kind 'axes')")
        return float(record_kernels().axes_score(x, clip, 1.0 / self.width, self.offset, self.base, self.bins, self._table))

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

    def __init__(self, model: ProjectionHistograms, cal: Calibrator) -> None:
        self.model = model
        self.cal = cal

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated scores of the records of ``X``; no state changes."""
        return self.cal(self.model.score(X))

    def absorb(self, fresh: np.ndarray, normal: np.ndarray) -> None:
        """Learn a step's fresh LOE-normal records, after their scores joined the calibration."""
        xn = fresh[normal]
        if len(xn):
            # Empty histograms score every record 0: that would make the calibration's
            # spread 0 and blow up the next window's scores.
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
