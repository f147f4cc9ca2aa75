"""An online multivariate Gaussian: the squared Mahalanobis distance to a running mean
under a running covariance, with forgetting.

A classical baseline for sensor data: fast, label-free, strong on spikes, level shifts
and broken correlations between sensors, and it tells which features are off.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = Gaussian()
>>> for _ in range(5):
...     _ = det.learn(rng.normal(size=(200, 3)))
>>> normal, odd = det.score(np.array([[0.0, 0.0, 0.0], [0.0, 6.0, 0.0]]))
>>> bool(odd > 20 > normal)
True
>>> int(det.contributions(np.array([[0.0, 6.0, 0.0]])).argmax())
1
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from streamad.detectors.base import Detector, LearnReport


class Gaussian(Detector):
    """Score = (x − μ)ᵀ Σ⁻¹ (x − μ) with μ, Σ learned window by window.

    ``half_life`` (records) lets the estimate follow drift; ``ridge`` keeps Σ
    invertible when sensors are collinear or constant. Until ``warmup`` records have
    been learned, scores are 0 and the report says so.
    """

    name = "gaussian"
    preferred_scaler = "standard"

    def __init__(self, half_life: float | None = 20_000, ridge: float = 1e-3, warmup: int = 256, seed: int | None = None) -> None:
        self.half_life = half_life
        self.ridge = ridge
        self.warmup = warmup
        self.n = 0.0
        self.seen = 0
        self.mean: np.ndarray | None = None
        self.scatter: np.ndarray | None = None
        self._precision: np.ndarray | None = None

    def _prec(self) -> np.ndarray | None:
        if self._precision is None and self.mean is not None and self.n > 1:
            assert self.scatter is not None
            cov = self.scatter / self.n
            d = len(cov)
            cov = cov + (self.ridge * np.trace(cov) / d + 1e-6) * np.eye(d)
            self._precision = np.linalg.pinv(cov, hermitian=True)
        return self._precision

    def score(self, X: np.ndarray) -> np.ndarray:
        P = self._prec()
        if P is None or self.seen < self.warmup:
            return np.zeros(len(X))
        diff = X - self.mean
        return np.einsum("ij,jk,ik->i", diff, P, diff)

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        P = self._prec()
        if P is None:
            return None
        diff = X - self.mean
        # Each feature's share of the quadratic form, clipped at 0 (cross terms can be negative).
        return np.maximum(diff * (diff @ P), 0.0)

    def learn(self, X: np.ndarray) -> LearnReport:
        X = np.asarray(X, dtype=np.float64)
        warm = self.seen < self.warmup
        if len(X) == 0:
            return LearnReport(0, warmup=warm)
        if self.mean is None:
            self.mean = np.zeros(X.shape[1])
            self.scatter = np.zeros((X.shape[1], X.shape[1]))
        assert self.scatter is not None
        if self.half_life:
            keep = 0.5 ** (len(X) / self.half_life)
            self.n *= keep
            self.scatter *= keep
        nb = float(len(X))
        mb = X.mean(axis=0)
        c = X - mb
        delta = mb - self.mean
        tot = self.n + nb
        self.scatter += c.T @ c + np.outer(delta, delta) * (self.n * nb / tot)
        self.mean = self.mean + delta * (nb / tot)
        self.n = tot
        self.seen += len(X)
        self._precision = None
        return LearnReport(n_learned=len(X), warmup=warm)

    def on_drift(self, kind: str) -> None:
        # Forget faster than the half-life would: keep the estimate, shrink its weight so
        # the records after the drift soon dominate it.
        if self.scatter is not None and self.n > self.warmup:
            self.scatter *= self.warmup / self.n
            self.n = float(self.warmup)
            self._precision = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {"half_life": self.half_life, "ridge": self.ridge, "warmup": self.warmup},
            "n": self.n,
            "seen": self.seen,
            "mean": self.mean,
            "scatter": self.scatter,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.__init__(**state["params"])  # type: ignore[misc]
        self.n = float(state["n"])
        self.seen = int(state["seen"])
        self.mean = None if state["mean"] is None else np.array(state["mean"], dtype=np.float64)
        self.scatter = None if state["scatter"] is None else np.array(state["scatter"], dtype=np.float64)
