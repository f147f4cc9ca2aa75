"""Label-free thresholds that turn scores into alarms.

Both learn from the scores alone, forget slowly, and judge a window with the state
they had before it. ``SpotThreshold`` fits a generalised Pareto tail above a high
running quantile (Siffer et al., KDD 2017, "Anomaly detection in streams with extreme
value theory") and puts the threshold where the fitted tail holds a ``risk`` share of
the records: the target false-alarm rate. Both give a tail probability for any score.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> thr = SpotThreshold(risk=1e-3, min_records=1000)
>>> for _ in range(40):
...     thr.update(rng.exponential(size=256))
>>> abs(thr.value - 6.91) < 0.5  # exact for Exp(1): -ln(1e-3) = 6.91
True
>>> p = thr.tail_probability(np.array([0.01, 6.91]))
>>> bool(p[0] > 0.98), bool(0.0005 < p[1] < 0.002)
(True, True)
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamad.histogram import DecayedHistogram


class Threshold(abc.ABC):
    """``value`` is the current threshold (``inf`` while warming up)."""

    name = "threshold"

    def __init__(self, min_records: int = 1000, half_life: float = 50_000, bins: int = 256) -> None:
        self.min_records = min_records
        self.half_life = half_life
        self.hist = DecayedHistogram(bins=bins, half_life=half_life, min_init=min(256, max(16, min_records // 4)))
        self.value = math.inf

    @property
    def warming_up(self) -> bool:
        return self.hist.n_seen < self.min_records

    @abc.abstractmethod
    def _refresh(self) -> None:
        """Recompute ``value`` from the state."""

    #: Whether scores that raised an alarm are kept out of the score histogram.
    excludes_alarms = False

    def update(self, scores: np.ndarray) -> None:
        """Learn from a window's scores."""
        scores = np.asarray(scores, dtype=np.float64)
        self.hist.update(scores[scores <= self.value] if self.excludes_alarms else scores)
        self._after_update(scores)
        if not self.warming_up:
            self._refresh()

    def _after_update(self, scores: np.ndarray) -> None:
        return None

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        """Estimated share of normal records that score at least this high."""
        if not self.hist.ready:
            return np.ones(len(scores))
        floor = 1.0 / (self.hist.total + 1.0)
        return np.clip(1.0 - np.asarray(self.hist.cdf(scores), dtype=np.float64), floor, 1.0)

    def reset(self) -> None:
        """Forget the score distribution (for example after drift) and warm up again."""
        self.hist.reset()
        self.value = math.inf

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "hist": self.hist.state_dict(), "value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.hist.load_state_dict(state["hist"])
        self.value = float(state["value"])


class QuantileThreshold(Threshold):
    """Alarm above the running ``q`` quantile of the scores."""

    name = "quantile"

    def __init__(self, q: float = 0.995, **kwargs: Any) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError("q must be in (0, 1)")
        super().__init__(**kwargs)
        self.q = q

    def _refresh(self) -> None:
        self.value = float(self.hist.quantile(self.q))


class SpotThreshold(Threshold):
    """Peaks-over-threshold with a generalised Pareto tail, refitted every window.

    The initial threshold ``t`` is the running ``level`` quantile; the excesses of
    recent scores over ``t`` (at most ``max_peaks`` of them) are fitted by
    probability-weighted moments, which is closed-form and stable for shape < 0.5.
    ``level`` is lower than SPOT's usual 0.98 so that a stream with a percent or two of
    anomalies still has mostly normal records among its excesses.
    Excesses are weighted by age with the histogram's half-life, so the tail and the
    bulk of the distribution forget at the same pace.

    SPOT keeps anomalies out of the tail fit. Doing that from the first, noisy fit
    truncates the tail and locks in a threshold that is too low. Here each refit starts
    from the excesses' quartiles (blind to the top quarter), drops excesses beyond the
    fitted ``risk * exclude_factor`` quantile, far past the alarm threshold, and refits;
    new scores that far out stay out of the peaks once ``min_peaks`` are known.
    """

    name = "spot"
    # As in SPOT, alarms teach nothing: a long anomalous episode must not become the new
    # normal for the threshold (a lasting change is the drift detector's business). The
    # quantile threshold cannot do this: cutting its own top share would ratchet it down.
    excludes_alarms = True

    def __init__(
        self,
        risk: float = 1e-3,
        level: float = 0.9,
        max_peaks: int = 5000,
        min_peaks: int = 100,
        exclude_factor: float = 0.01,
        trim_rounds: int = 3,
        refit_every: int = 2048,
        **kwargs: Any,
    ) -> None:
        if not 0.0 < risk < 1.0 - level:
            raise ValueError(f"risk must be in (0, {1.0 - level:g}) for level {level:g}")
        super().__init__(**kwargs)
        self.risk = risk
        self.level = level
        self.max_peaks = max_peaks
        self.min_peaks = min_peaks
        self.exclude_factor = exclude_factor
        self.trim_rounds = trim_rounds
        self.refit_every = refit_every
        self._fitted_at = -(10**18)  # hist.n_seen at the last tail fit
        self.exclude_above = math.inf
        self.peaks = np.empty(0)
        self.born = np.empty(0)  # hist.n_seen when each peak arrived
        self.t = math.nan
        self.shape = 0.0
        self.scale = math.nan

    def _after_update(self, scores: np.ndarray) -> None:
        t = float(self.hist.quantile(self.level))
        keep = scores[(scores > t) & (scores <= self.exclude_above)]
        if len(keep):
            self.peaks = np.concatenate([self.peaks, keep])[-self.max_peaks :]
            self.born = np.concatenate([self.born, np.full(len(keep), float(self.hist.n_seen))])[-self.max_peaks :]
        # Peaks whose weight has decayed to nothing only cost time.
        fresh = self.hist.n_seen - self.born < 10 * self.half_life
        if not fresh.all():
            self.peaks, self.born = self.peaks[fresh], self.born[fresh]
        self.t = t

    def _refresh(self) -> None:
        # The tail changes slowly; refitting it every window would cost more than the model.
        if self.hist.n_seen - self._fitted_at < self.refit_every and math.isfinite(self.value):
            return
        self._fitted_at = self.hist.n_seen
        above = self.peaks > self.t
        y = self.peaks[above] - self.t
        if len(y) < 10:
            self.value = float(self.hist.quantile(1.0 - self.risk))
            return
        w = 0.5 ** ((self.hist.n_seen - self.born[above]) / self.half_life)
        p_excl = self.risk * self.exclude_factor / (1.0 - self.level)
        # Start from a fit that a minority of anomalous excesses cannot move (quartiles),
        # drop what lies far beyond it, then fit the rest efficiently.
        self.shape, self.scale = fit_gpd_quartiles(y, w)
        for _ in range(self.trim_rounds):
            # Excesses far beyond what the fit itself expects are anomalies: refit without them.
            # Never trim on a bounded-tail fit: a noisy negative shape would cut real extremes.
            keep = y <= gpd_isf(p_excl, max(self.shape, 0.0), self.scale)
            if keep.sum() < 10:
                break
            y, w = y[keep], w[keep]
            self.shape, self.scale = fit_gpd_pwm(y, w)
            if keep.all():
                break
        self.value = self.t + gpd_isf(self.risk / (1.0 - self.level), self.shape, self.scale)
        if len(y) >= self.min_peaks:
            self.exclude_above = self.t + gpd_isf(p_excl, self.shape, self.scale)

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        p = super().tail_probability(scores)
        if not math.isfinite(self.scale):
            return p
        s = np.asarray(scores, dtype=np.float64)
        above = s > self.t
        if above.any():
            p = p.copy()
            p[above] = (1.0 - self.level) * gpd_sf(s[above] - self.t, self.shape, self.scale)
        return np.clip(p, 0.0, 1.0)

    def reset(self) -> None:
        super().reset()
        self.peaks, self.born = np.empty(0), np.empty(0)
        self.t, self.shape, self.scale = math.nan, 0.0, math.nan
        self.exclude_above = math.inf
        self._fitted_at = -(10**18)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "peaks": self.peaks,
            "born": self.born,
            "t": self.t,
            "shape": self.shape,
            "scale": self.scale,
            "exclude_above": self.exclude_above,
            "fitted_at": self._fitted_at,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.peaks = np.asarray(state["peaks"], dtype=np.float64)
        self.born = np.asarray(state["born"], dtype=np.float64)
        self.t, self.shape, self.scale = float(state["t"]), float(state["shape"]), float(state["scale"])
        self.exclude_above = float(state["exclude_above"])
        self._fitted_at = int(state["fitted_at"])


def fit_gpd_pwm(y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto fitted to excesses ``y`` (optionally
    weighted) by probability-weighted moments (Hosking & Wallis, Technometrics 1987).

    The shape is kept in [-0.5, 0.49], where the estimator is valid; when it has to be
    clipped, the scale is set from the mean excess so the fitted mean stays right.
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    order = np.argsort(y)
    y, w = y[order], w[order]
    W = w.sum()
    a0 = float(np.dot(w, y) / W)
    F = (np.cumsum(w) - 0.5 * w) / W  # weighted plotting positions
    a1 = float(np.dot(w, (1.0 - F) * y) / W)
    denom = a0 - 2.0 * a1
    if denom <= 0 or a0 <= 0:
        return 0.0, max(a0, 1e-12)
    k = a0 / denom - 2.0  # Hosking's shape; the usual xi is -k
    shape = -k
    scale = 2.0 * a0 * a1 / denom
    if not -0.5 <= shape <= 0.49:
        shape = float(np.clip(shape, -0.5, 0.49))
        scale = a0 * (1.0 - shape)  # mean of a GPD excess is scale / (1 - shape)
    return float(shape), max(float(scale), 1e-12)


def weighted_quantile(y: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(y)
    cw = np.cumsum(w[order])
    return float(np.interp(q * cw[-1], cw - 0.5 * w[order], y[order]))


def fit_gpd_quartiles(y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """Shape and scale of a generalised Pareto from the median and upper quartile of the
    excesses: Q(3/4) / Q(1/2) = 2**shape + 1. It ignores the top quarter of the sample,
    so anomalies among the excesses do not inflate the tail.
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    q50, q75 = weighted_quantile(y, w, 0.5), weighted_quantile(y, w, 0.75)
    if q50 <= 0:
        return 0.0, max(q75, 1e-12)
    shape = float(np.clip(np.log2(max(q75 / q50 - 1.0, 2.0**-0.5)), -0.5, 0.49))
    scale = q50 / np.log(2.0) if abs(shape) < 1e-9 else q50 * shape / (2.0**shape - 1.0)
    return shape, max(float(scale), 1e-12)


def gpd_sf(y: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """P(Y > y) for a generalised Pareto with the given shape and scale."""
    y = np.maximum(np.asarray(y, dtype=np.float64), 0.0)
    if abs(shape) < 1e-9:
        return np.exp(-y / scale)
    base = 1.0 + shape * y / scale
    return np.where(base > 0, np.power(np.maximum(base, 1e-300), -1.0 / shape), 0.0)


def gpd_isf(p: float, shape: float, scale: float) -> float:
    """The excess exceeded with probability ``p``."""
    if abs(shape) < 1e-9:
        return -scale * math.log(p)
    return scale / shape * (p ** (-shape) - 1.0)


THRESHOLDS: dict[str, type[Threshold]] = {"spot": SpotThreshold, "quantile": QuantileThreshold}


def make_threshold(name: str, **params: Any) -> Threshold:
    try:
        cls = THRESHOLDS[name]
    except KeyError:
        raise ValueError(f"unknown threshold {name!r}; choose one of {', '.join(THRESHOLDS)}") from None
    return cls(**params)
