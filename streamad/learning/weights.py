"""Importance weights toward a Gaussian score distribution (after Lee et al., IJCNN 2025).

Normal data with several patterns give a right-skewed score distribution: training
favours the dense majority and minority normal patterns end up with high scores. Each
record's loss is weighted by ``q(s) / p(s)``, where ``p`` is a decayed histogram of the
scores of LOE-normal records (in ``log1p`` space) and ``q`` a Gaussian with the same
mean and standard deviation (``target="moments"``) or at its median with
``sigma = 1.4826 MAD`` (``target="robust"``, methods.md's first draft: its narrow
Gaussian leaves a long tail outside, so it crushes the very minority patterns the
weights are meant to lift; the ablation compares the two). Weights are clipped, normalised to mean 1 over the batch,
and tempered (``w ** tau``) when their effective sample size falls below ``ess_min``
of the batch. Until the histogram holds ``min_count`` scores every weight is 1.
The estimator is ours: the paper's is not public.

>>> import numpy as np
>>> from streamad.histogram import DecayedHistogram
>>> hist = DecayedHistogram(bins=48, decay=1.0)
>>> rng = np.random.default_rng(0)
>>> hist.update(np.log1p(np.r_[rng.exponential(0.2, 950), rng.uniform(1, 3, 50)]))  # dense mode, long tail
>>> w, ess = ImportanceWeights(min_count=100).weights(np.log1p([0.05, 0.5, 1.5]), hist)
>>> bool(w[0] < w[1]), round(float(w.mean()), 6)
(True, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamad.histogram import DecayedHistogram

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class ImportanceWeights:
    """Per-record loss weights, read off a histogram of LOE-normal scores as it was
    before the batch (the trainer owns the histogram; scores are in its space, ``log1p``).
    Holds no state: one instance may serve many trainers.
    """

    clip: tuple[float, float] = (0.1, 10.0)
    ess_min: float = 0.3
    min_count: int = 256
    target: Literal["moments", "robust"] = "moments"

    def __post_init__(self) -> None:
        lo, hi = self.clip
        if not 0.0 < lo <= 1.0 <= hi:
            raise ValueError("importance weight clip must satisfy 0 < low <= 1 <= high")
        if not 0.0 <= self.ess_min <= 1.0:
            raise ValueError("ess_min must be in [0, 1]")
        if self.target not in ("moments", "robust"):
            raise ValueError(f"importance weight target must be 'moments' or 'robust', not {self.target!r}")
        object.__setattr__(self, "clip", (float(lo), float(hi)))

    def ready(self, hist: DecayedHistogram) -> bool:
        return hist.ready and hist.n_seen >= self.min_count

    def weights(self, z: np.ndarray, hist: DecayedHistogram) -> tuple[np.ndarray, float]:
        """Weights with mean 1 for scores ``z`` (in the histogram's space), and their
        effective sample size as a share of the batch; all 1 while warming up."""
        n = len(z)
        if n == 0 or not self.ready(hist):
            return np.ones(n), 1.0
        z = np.asarray(z, dtype=np.float64)
        if self.target == "robust":
            med, mad = hist.median_mad()
            sigma = 1.4826 * mad
        else:
            med, sigma = hist.mean_std()
        if not (np.isfinite(sigma) and sigma > 0):
            return np.ones(n), 1.0
        q = np.exp(-0.5 * ((z - med) / sigma) ** 2) / (sigma * _SQRT_2PI)
        p = hist.density(z)
        w = np.clip(q / np.maximum(p, 1e-300), *self.clip)
        w /= w.mean()
        ess = ess_share(w)
        if ess < self.ess_min:
            w, ess = temper(w, self.ess_min)
        return w, ess


def ess_share(w: np.ndarray) -> float:
    """Effective sample size ``(sum w)^2 / sum w^2`` as a share of ``len(w)``.

    >>> ess_share(np.ones(4)), ess_share(np.array([1.0, 0.0, 0.0, 0.0]))
    (1.0, 0.25)
    """
    s2 = float(np.dot(w, w))
    return float(w.sum() ** 2 / (s2 * len(w))) if s2 > 0 else 1.0


def temper(w: np.ndarray, ess_min: float, steps: int = 20) -> tuple[np.ndarray, float]:
    """The largest ``tau`` in [0, 1] (by bisection) such that ``w ** tau``, renormalised,
    reaches an ESS share of ``ess_min``; ``tau = 0`` gives uniform weights.

    >>> w, ess = temper(np.array([10.0, 0.1, 0.1, 0.1]), 0.9)
    >>> ess >= 0.9, round(float(w.mean()), 6)
    (True, 1.0)
    """
    logw = np.log(np.maximum(w, 1e-300))
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if ess_share(np.exp(mid * logw)) >= ess_min:
            lo = mid
        else:
            hi = mid
    out = np.exp(lo * logw)
    out /= out.mean()
    return out, ess_share(out)
