"""An online Gaussian of the records LOE calls normal, and the calibration that puts
two scores on one scale (ours).

A reconstruction network learns a record's values, so when one sensor sticks at a
value while the sensors it drives keep moving, the network encodes the stuck value
and reconstructs it. A full covariance sees the broken correlation: the squared
Mahalanobis distance ``(x - mu)' P (x - mu)`` is the sum of each feature's squared
residual from a linear prediction by the others, in units of that prediction's
error. It also extrapolates: a new operating point along the learned correlations
(a pump running faster than ever before, with pressure and current following) stays
close, where a young network reconstructs it badly.

- ``mu``, ``S``: running mean and covariance of the LOE-normal records the trainer
  learns (anomalies LOE flags never enter them), forgetting with ``half_life``
  records;
- ``P``: the inverse of ``(1 - shrink) S + shrink * tr(S)/d * I`` (shrinkage toward a
  scaled identity keeps it well conditioned when features are collinear or constant,
  and while few records have been seen);
- per-feature contributions ``max(0, (x - mu)_j (P (x - mu))_j)``, which sum to the
  score when no cross term is negative.

``Calibrator`` maps a component's raw score to a robust z-score against the running
histogram of its own LOE-normal scores: ``(log1p(s) - median) / max(MAD, floor)``, so
the autoencoder's and the Gaussian's scores can be added (or maxed) whatever their
raw scales. It reads the histogram as it was before the window and, from the first
learned records on, one formula: no switch from raw to calibrated scores mid-stream.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> flow = rng.normal(size=2000)
>>> X = np.c_[flow, flow + 0.1 * rng.normal(size=2000)]  # pressure follows flow
>>> g = OnlineGaussian(2, half_life=None, shrink=0.001, prior=8.0)
>>> g.update(X)
>>> along, across = g.score(np.array([[2.0, 2.0], [0.0, 1.0]]))
>>> bool(across > 10 * along)  # one sensor off the correlation: far; both high together: near
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from streamad.histogram import DecayedHistogram


class OnlineGaussian:
    """Running mean and covariance with forgetting; squared Mahalanobis scores."""

    def __init__(self, n_features: int, half_life: float | None = 20_000.0, shrink: float = 0.05, prior: float = 64.0, min_weight: float = 1.0) -> None:
        if half_life is not None and half_life <= 0:
            raise ValueError("gauss half_life must be positive (or None: never forget)")
        if not 0.0 < shrink <= 1.0:
            raise ValueError("gauss shrink must be in (0, 1]")
        self.d = n_features
        self.half_life = half_life
        self.shrink = shrink
        self.prior = prior
        self.min_weight = min_weight
        self.reset()

    def reset(self) -> None:
        self.n = 0.0
        self.mean = np.zeros(self.d)
        self.scatter = np.zeros((self.d, self.d))
        self._prec: np.ndarray | None = None  # computed when first read (``precision``)
        self._chol: np.ndarray | None = None  # above COMPILED_MAX_COLUMNS: computed when first read (``_factor``)

    @property
    def ready(self) -> bool:
        return self.n >= self.min_weight

    def update(self, X: np.ndarray) -> None:
        """Fold in the records of ``X`` (n x d), all of equal weight."""
        X = np.asarray(X, dtype=np.float64)
        nb = float(len(X))
        if nb == 0:
            return
        # The records' own mean and scatter about it, by BLAS (a single record has none).
        if len(X) > 1:
            mb = X.mean(axis=0)
            c = X - mb
            spread = c.T @ c
        else:
            mb, spread = X[0].copy(), np.zeros((self.d, self.d))
        if self.d <= COMPILED_MAX_COLUMNS:
            # The rest in one compiled call, the arithmetic below in its order
            # (learning/gaussian_kernel.py).
            keep = 0.5 ** (nb / self.half_life) if self.half_life else 1.0
            mean = self.mean.copy()  # a new array, as below: a reader holding the old one keeps it
            self.n = _kernel().fold(len(X), mb, spread, mean, self.scatter, float(self.n), keep, bool(self.half_life))
            self.mean = mean
        else:
            if self.half_life:
                keep = 0.5 ** (nb / self.half_life)
                self.n *= keep
                self.scatter *= keep
            delta = mb - self.mean
            tot = self.n + nb
            self.scatter += spread + np.outer(delta, delta) * (self.n * nb / tot)
            self.mean = self.mean + delta * (nb / tot)
            self.n = tot
        self._prec = self._chol = None

    def forget(self, weight: float) -> None:
        """Keep the estimate but let it weigh no more than ``weight`` records, so the
        records after a drift soon dominate it."""
        if self.n > weight > 0:
            self.scatter *= weight / self.n
            self.n = float(weight)
            self._prec = self._chol = None

    @property
    def precision(self) -> np.ndarray:
        """``P``, computed on the first read after the estimate changed: once per update
        when scores are read between updates, never for an estimate that is only
        learning (on a fleet, a device's detector learns about 150 records before it
        scores: a refit per record, nearly all of a new device's cost)."""
        if self._prec is None:
            self._prec = self._derive()
        return self._prec

    def _derive(self) -> np.ndarray:
        if not self.ready:
            # Unit covariance around the running mean: the scaled record's squared norm.
            return np.eye(self.d)
        if self.d <= COMPILED_MAX_COLUMNS:
            # ``shrunk_covariance``'s arithmetic and the inverse in one compiled call
            # (learning/gaussian_kernel.py).
            cov, prec = np.empty((self.d, self.d)), np.empty((self.d, self.d))
            if _kernel().shrunk_precision(self.scatter, float(self.n), float(self.prior), float(self.shrink), cov, prec):
                return prec
            return symmetric_inverse(cov)
        return symmetric_inverse(self.shrunk_covariance())

    def shrunk_covariance(self) -> np.ndarray:
        """The covariance ``P`` inverts. The records arrive scaled online (zero mean, unit
        variance per feature), so the identity is the natural prior covariance: ``prior``
        pseudo-records of it keep a young estimate from calling every record of the
        second window an outlier."""
        diag = np.arange(self.d)
        cov = self.scatter + self.scatter.T
        cov[diag, diag] += 2.0 * self.prior
        cov *= 0.5 / (self.n + self.prior)
        target = max(float(np.trace(cov)) / self.d, 1e-6)
        cov *= 1.0 - self.shrink
        cov[diag, diag] += self.shrink * target + 1e-9
        return cov

    def _factor(self) -> np.ndarray | None:
        """Above ``COMPILED_MAX_COLUMNS``, the lower Cholesky factor of the shrunk
        covariance, computed on the first read after the estimate changed: scores read
        through it cost a sixth of the precision's refit (LAPACK's factor: 3 ms at 501
        columns, against 20 for the inverse; the temporal stage gives a Gaussian five
        columns a sensor, so ten sensors pass 48). None at or below it, before the
        estimate is ready, or when the matrix has no factor (scores then go through
        ``precision``)."""
        if self.d <= COMPILED_MAX_COLUMNS or not self.ready:
            return None
        if self._chol is None:
            try:
                L = np.linalg.cholesky(self.shrunk_covariance())
            except np.linalg.LinAlgError:
                L = np.empty((0, 0))
            self._chol = L if np.isfinite(L).all() else np.empty((0, 0))
        return self._chol if self._chol.size else None

    def score(self, X: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances (n,); no state changes."""
        diff = np.asarray(X, dtype=np.float64) - self.mean
        L = self._factor()
        if L is not None:
            out = np.empty(len(diff))
            _kernel().whitened_norms(L, np.ascontiguousarray(diff), out)
            return out
        return np.maximum(np.einsum("ij,ij->i", diff @ self.precision, diff), 0.0)

    def score_one(self, x: np.ndarray) -> float:
        """``score`` of one record (d,): up to ``COMPILED_MAX_COLUMNS`` columns its
        quadratic form in one compiled call, equal to ``score``'s up to rounding."""
        if self.d > COMPILED_MAX_COLUMNS:
            return float(self.score(x.reshape(1, -1))[0])
        return max(record_kernels().quadratic(np.asarray(x, dtype=np.float64) - self.mean, self.precision), 0.0)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        diff = np.asarray(X, dtype=np.float64) - self.mean
        L = self._factor()
        if L is not None:
            pd = np.empty_like(diff)
            _kernel().precision_times(L, np.ascontiguousarray(diff), pd)
            return np.maximum(diff * pd, 0.0)
        return np.maximum(diff * (diff @ self.precision), 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean.copy(), "scatter": self.scatter.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n = float(state["n"])
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(self.d).copy()
        self.scatter = np.asarray(state["scatter"], dtype=np.float64).reshape(self.d, self.d).copy()
        self._prec = self._chol = None


#: the largest matrix ``symmetric_inverse`` inverts by its compiled kernel: above it
#: numpy's (LAPACK's blocked) inverse is faster
COMPILED_MAX_COLUMNS = 48


def symmetric_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric matrix kept invertible by a ridge: up to
    ``COMPILED_MAX_COLUMNS`` a compiled Cholesky inverse (learning/gaussian_kernel.py),
    half the time of numpy's call at 31 columns; above, or for a matrix that is not positive
    definite, an LU inverse (about a tenth of the time of an SVD pseudo-inverse at 40
    features, and the same matrix to rounding); the pseudo-inverse when the matrix is
    singular after all.

    >>> symmetric_inverse(np.array([[4.0, 0.0], [0.0, 16.0]])).diagonal().tolist()
    [0.25, 0.0625]
    >>> symmetric_inverse(np.zeros((2, 2))).tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    """
    if len(a) <= COMPILED_MAX_COLUMNS:
        out = np.empty_like(a, dtype=np.float64)
        if _kernel().spd_inverse(np.ascontiguousarray(a, dtype=np.float64), out):
            return out
    try:
        inv = np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a, hermitian=True)
    if not np.isfinite(inv).all():
        return np.linalg.pinv(a, hermitian=True)
    return (inv + inv.T) / 2


@functools.cache
def record_kernels() -> Any:
    """streamad/record_kernel.py, loaded (numba and all) on the first one-record score
    and once: an import statement per record is a measurable part of its cost."""
    from streamad import record_kernel

    return record_kernel


@functools.cache
def _kernel() -> Any:
    # numba, and the compiled code, load on the first use (threshold.py imports this
    # module for chi2_quantile alone).
    from streamad.learning import gaussian_kernel

    return gaussian_kernel


def chi2_quantile(d: float, p: float) -> float:
    """The ``p`` quantile of a chi-square with ``d`` degrees of freedom, by the
    Wilson-Hilferty cube approximation (no scipy.stats import on the way to the first
    score).

    >>> round(chi2_quantile(12, 0.1), 2)  # scipy.stats.chi2.ppf(0.1, 12): 6.30
    6.31
    """
    k = 2.0 / (9.0 * d)
    return d * max(1.0 - k + NormalDist().inv_cdf(p) * math.sqrt(k), 1e-3) ** 3


@functools.lru_cache(maxsize=256)  # asked every window, with the same few arguments
def chi2_log_prior(d: int, tail: float | None = None) -> tuple[float, float]:
    """Centre and spread (as ``Calibrator`` reads them) of ``log1p`` of a chi-square
    with ``d`` degrees of freedom: what a Gaussian's squared Mahalanobis distances look
    like on its own records. Quantiles by ``chi2_quantile``; the MAD as the mean
    distance of the quartiles from the median.

    >>> med, mad = chi2_log_prior(6)
    >>> round(med, 2), round(mad, 2)
    (1.85, 0.34)
    >>> chi2_log_prior(0)  # no feature has varied: every distance is 0
    (0.0, 0.0)
    """
    if d <= 0:
        return 0.0, 0.0

    def q(p: float) -> float:
        return float(np.log1p(chi2_quantile(d, p)))

    med = q(0.5)
    if tail is not None:
        return med, (q(tail) - med) / math.log(0.5 / (1.0 - tail))
    return med, (q(0.75) - q(0.25)) / 2.0


class Calibrator:
    """Maps scores onto a common scale against a decayed histogram of ``log1p`` of the
    LOE-normal scores of one component.

    - ``tail=None``: a robust z-score, ``(log1p(s) - median) / max(MAD, floor)``;
    - ``tail=q`` (e.g. 0.99): ``(log1p(s) - median) / spread`` with ``spread =
      (quantile(q) - median) / log(0.5 / (1 - q))``: under an exponential upper tail
      of the log-scores this is ``-log P(S > s) - log 2``, the score's surprise, so two
      components with different tails (a network with a heavy normal tail, a Gaussian
      with a light one) raise false alarms at the same rate at the same value, and
      their sum is Fisher's combination of the two tail probabilities.

    ``prior`` (median, spread) is what the component's scores should look like before
    it has seen many; it is blended in with ``prior_weight`` pseudo-scores.

    >>> import numpy as np
    >>> c = Calibrator(bins=48, decay=1.0)
    >>> c.update(np.random.default_rng(0).exponential(1.0, 5000))
    >>> z = c(np.array([0.7, 20.0]))
    >>> bool(abs(z[0]) < 0.5 and z[1] > 5)
    True
    """

    def __init__(
        self,
        bins: int = 48,
        decay: float = 0.99,
        floor: float = 0.05,
        min_init: int = 32,
        tail: float | None = None,
        prior: tuple[float, float] | None = None,
        prior_weight: float = 64.0,
        hist: DecayedHistogram | None = None,
    ) -> None:
        if tail is not None and not 0.5 < tail < 1.0:
            raise ValueError("calibration tail must be in (0.5, 1)")
        self.floor = floor
        self.tail = tail
        self.prior = prior
        self.prior_weight = prior_weight
        self.shared = hist is not None  # a histogram another component updates (and checkpoints)
        self.hist = hist if hist is not None else DecayedHistogram(bins=bins, decay=decay, min_init=min_init)
        self._stats: tuple[float, float] | None = None

    @staticmethod
    def transform(scores: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(np.asarray(scores, dtype=np.float64), 0.0))

    def update(self, scores: np.ndarray) -> None:
        if not self.shared:
            self.hist.update(self.transform(scores))
        self._stats = None

    def refresh(self) -> None:
        """The histogram changed under it (a shared one, or a reload): recompute the stats."""
        self._stats = None

    def stats(self) -> tuple[float, float]:
        """Centre and spread of the log-scores so far."""
        if self._stats is None:
            med = float(self.hist.quantile(0.5))
            if self.tail is None:
                spread = self.hist.median_mad()[1] if np.isfinite(med) else np.nan
            else:
                spread = (float(self.hist.quantile(self.tail)) - med) / np.log(0.5 / (1.0 - self.tail)) if np.isfinite(med) else np.nan
            if not (np.isfinite(med) and np.isfinite(spread)):
                med, spread = (0.0, 1.0) if self.prior is None else self.prior
            elif self.prior is not None:
                # Few scores seen: lean on what the model says its scores should look like.
                w = self.hist.total / (self.hist.total + self.prior_weight)
                med = w * med + (1 - w) * self.prior[0]
                spread = w * spread + (1 - w) * self.prior[1]
            self._stats = (float(med), float(max(spread, self.floor)))
        return self._stats

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        med, spread = self.stats()
        return (self.transform(scores) - med) / spread

    def one(self, score: float) -> float:
        """``self`` of one score, without arrays (the one-record path)."""
        med, spread = self.stats()
        return (math.log1p(max(score, 0.0)) - med) / spread

    def reset(self) -> None:
        self.hist.reset()
        self._stats = None

    def state_dict(self) -> dict[str, Any]:
        return self.hist.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.hist.load_state_dict(state)
        self._stats = None


class GaussianComponent:
    """What a trainer keeps beside its network when it has a Gaussian: the online
    Gaussian of the records LOE calls normal (of every record with ``learn="all"``) and
    the calibration of its scores against their own LOE-normal history.

    The calibration's prior is the chi-square of the features that have varied
    (``fit_prior``): the others are exactly 0 and add nothing to a distance.
    """

    def __init__(
        self,
        n_features: int,
        half_life: float | None = 20_000.0,
        shrink: float = 0.05,
        prior: float = 64.0,
        learn: str = "loe",
        bins: int = 48,
        decay: float = 0.99,
        floor: float = 0.05,
        tail: float | None = None,
    ) -> None:
        if learn not in ("loe", "all"):
            raise ValueError(f"the Gaussian learns 'loe' (LOE-normal records) or 'all', not {learn!r}")
        self.model = OnlineGaussian(n_features, half_life=half_life, shrink=shrink, prior=prior)
        self.cal = Calibrator(bins=bins, decay=decay, floor=floor, tail=tail, prior=chi2_log_prior(n_features, tail))
        self.learn = learn

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated scores of the records of ``X``; no state changes."""
        return self.cal(self.model.score(X))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return self.model.contributions(X)

    def absorb(self, fresh: np.ndarray, normal: np.ndarray) -> None:
        """Learn a step's fresh records (the LOE-normal ones: each record enters once,
        anomalies never), after their scores joined the calibration."""
        xn = (fresh[normal] if self.learn == "loe" else fresh).astype(np.float64)
        self.cal.update(self.model.score(xn))
        self.model.update(xn)

    def fit_prior(self, n_varied: int | None) -> None:
        """Count only the features that have varied in the calibration's prior, so a
        stream that never varied scores a constant, not a prior fading away."""
        if n_varied is None:
            return
        prior = chi2_log_prior(n_varied, self.cal.tail)
        if prior != self.cal.prior:
            self.cal.prior = prior
            self.cal.refresh()

    def reopen(self, weight: float) -> None:
        """After a drift: the estimate weighs at most ``weight`` records, the calibration starts afresh."""
        self.model.forget(weight)
        self.cal.reset()
