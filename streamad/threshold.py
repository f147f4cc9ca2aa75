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

from streamad.histogram import DecayedHistogram, linear_quantile
from streamad.learning.gaussian import chi2_quantile

#: the shortest half-life of a young threshold's memory (scores)
MIN_MEMORY = 256
#: excesses needed for a tail fit
MIN_FIT = 10
#: the small-sample prior of the tail's shape (``SpotThreshold``): slightly heavier than
#: exponential, as strong as this many excesses
PRIOR_SHAPE = 0.1
PRIOR_PEAKS = 20.0
#: scores a threshold needs for its small-sample estimate (``Threshold.early``), and the
#: most it keeps for it
EARLY_MIN = 32
EARLY_CAP = 4096
#: the share of the early scores the small-sample tail is fitted above, and the
#: confidence of the upper bound on its scale that the estimate uses
EARLY_LEVEL = 0.9
EARLY_CONFIDENCE = 0.9
#: a window of at least ``EARLY_WINDOW`` records with this share or more above the
#: small-sample estimate raises no alarm (``Threshold.alarms``)
EARLY_MAX_SHARE = 0.25
EARLY_WINDOW = 8
#: the smallest tail probability reported: a score beyond the fitted tail's end
TINY = float(np.finfo(np.float64).tiny)


def _share_at_least(values: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The share of ``values`` at least as high as each of ``s``, one more counted among
    them (so never below 1 / (len(values) + 1))."""
    seen = np.sort(values)
    return (len(seen) - np.searchsorted(seen, s, side="left") + 1.0) / (len(seen) + 1.0)


class Threshold(abc.ABC):
    """``value`` is the current threshold (``inf`` while warming up).

    Until the threshold proper has the scores it needs (``min_records``, after the
    windows it skips), ``value`` is a small-sample estimate (``early`` is True): an
    exponential tail fitted to the top tenth of every score offered so far, the skipped
    windows' included, its scale at a 90% upper confidence bound, extended to the target
    rate (``target_rate``). Those first scores come from a model that knows little and
    run high, so the estimate is high: a stream of a few hundred records can alarm on
    what stands far out (a spike, the start of a shift), while the threshold proper
    waits for scores that mean something. Windows of
    identical scores (a detector that says nothing yet) teach it nothing. When a quarter
    or more of a window rises above it while the detector still warms up, the score level
    moved, not a few records: a young model on ground it has not seen yet (the other half
    of a slow cycle, a temperature climbing), which it cannot tell from an anomaly, and
    that window raises no alarm (``alarms``). Once the detector's warm-up is over such a
    window alarms: a fault that shifts every record (a pump's pressure reading 15 of its
    spreads off from its record 400) is what its grown model has not seen.

    From 64 scores of Exp(1), whose 0.001 point is 6.9, an estimate on the high side:

    >>> thr = QuantileThreshold(q=0.999, min_records=1000)
    >>> thr.update(np.random.default_rng(1).exponential(size=64))
    >>> thr.early, 6.9 < thr.value < 25.0
    (True, True)
    """

    name = "threshold"

    def __init__(self, min_records: int = 1000, half_life: float = 50_000, bins: int = 256, young: float = 1.0, skip_first: int = 0) -> None:
        self.min_records = min_records
        self.half_life = half_life
        self.young = young
        self.skip_first = skip_first
        self.offered = 0  # scores offered to ``update`` since the stream began (never reset)
        self.grown = False  # learned scores of a detector past its warm-up
        self.provisional = False  # ``value`` comes from a young detector's scores
        self.detector_young = True  # the last scores offered were a detector's in its warm-up
        self.hist = DecayedHistogram(bins=bins, half_life=half_life, min_init=min(256, max(16, min_records // 4)))
        self.value = math.inf
        self._early_scores = np.empty(0)  # the scores the small-sample estimate comes from
        self._early_tail = (math.nan, math.nan)  # its exponential tail: start, scale (nan: none)

    @property
    def early(self) -> bool:
        """``value`` is the small-sample estimate."""
        return not math.isnan(self._early_tail[0])

    @property
    @abc.abstractmethod
    def target_rate(self) -> float:
        """The share of normal records meant to raise an alarm."""

    def alarms(self, scores: np.ndarray) -> np.ndarray:
        """Which of a window's scores raise an alarm: those above ``value``, but none of
        a window that the small-sample estimate would alarm on for a quarter or more of
        its records while the detector warms up (its last scores were ``young``: a slowly
        cycling process seen for half a cycle, 228 false alarms in 10 streams of 1,000
        records without this, 1 with it; benchmarks/results/ANALYSIS.md).

        >>> thr = QuantileThreshold(q=0.999, min_records=1000)
        >>> thr.update(np.random.default_rng(1).exponential(size=64), young=True)
        >>> thr.alarms(np.array([0.5, 1.0, 40.0, 0.2, 0.1, 0.3, 0.9, 1.1])).tolist()
        [False, False, True, False, False, False, False, False]
        >>> bool(thr.alarms(np.full(8, 40.0)).any())  # the whole window moved
        False
        """
        above = np.asarray(scores, dtype=np.float64) > self.value
        if self.early and self.detector_young and len(above) >= EARLY_WINDOW and above.mean() >= EARLY_MAX_SHARE:
            return np.zeros_like(above)
        return above

    @property
    def warming_up(self) -> bool:
        """True while no score can raise an alarm."""
        return not math.isfinite(self.value)

    @property
    def learned(self) -> int:
        """Scores learned since the threshold last started afresh."""
        return self.hist.n_seen

    @property
    def memory(self) -> float:
        """The half-life the scores are forgotten with now: ``young`` times the scores
        seen so far, up to ``half_life``. A young model's scores fall as it learns; the
        first ones must not hold the threshold up for the next ``half_life`` records."""
        if not self.young:
            return self.half_life
        return min(self.half_life, max(float(MIN_MEMORY), self.young * self.hist.n_seen))

    @abc.abstractmethod
    def _refresh(self) -> None:
        """Recompute ``value`` from the state."""

    #: Whether scores that raised an alarm are kept out of the score histogram.
    excludes_alarms = False

    def update(self, scores: np.ndarray, young: bool = False) -> None:
        """Learn from a window's scores; ``young``: scores of a detector still in its
        warm-up. They give a provisional threshold (high: a young model's scores run
        high) until the first grown-up scores arrive; then the threshold starts afresh
        from those, keeping the provisional value until it has ``min_records`` of them.

        The windows that begin within the stream's first ``skip_first`` records teach
        nothing: they were scored by a model that had learned fewer records than that,
        and their scores measure its ignorance, several times the scores a few hundred
        records later. In the tail they held the provisional threshold above whole
        anomalies of a short stream (benchmarks/results/ANALYSIS.md, SKAB)."""
        first = self.offered
        self.offered += len(scores)
        self.detector_young = young
        # A warm-up reopened (drift.action) after grown-up scores: its scores teach nothing.
        if first >= self.skip_first and not (young and self.grown):
            self._learn(scores, young)
        self._update_early(scores)

    def _learn(self, scores: np.ndarray, young: bool) -> None:
        if not young and not self.grown:
            self.grown = True
            if self.hist.n_seen:
                self.restart()
        scores = np.asarray(scores, dtype=np.float64)
        self.hist.half_life = self.memory
        # The small-sample estimate is too rough to keep scores from the threshold proper.
        self.hist.update(scores[scores <= self.value] if self.excludes_alarms and not self.early else scores)
        self._after_update(scores)
        if self.hist.n_seen >= self.min_records:
            self._refresh()

    def _set(self, value: float) -> None:
        """The threshold proper takes over from the small-sample estimate."""
        self.value = value
        self._forget_early()

    def _forget_early(self) -> None:
        self._early_scores = np.empty(0)
        self._early_tail = (math.nan, math.nan)

    def _update_early(self, scores: np.ndarray) -> None:
        if math.isfinite(self.value) and not self.early:
            return
        s = np.asarray(scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if len(s) and float(s.max()) > float(s.min()):
            self._early_scores = np.concatenate([self._early_scores, s])[-EARLY_CAP:]
        est = self._early_estimate(self._early_scores, self.target_rate)
        if est is not None:
            self.value, self._early_tail = est[0], (est[1], est[2])

    @staticmethod
    def _early_estimate(pooled: np.ndarray, target_rate: float) -> tuple[float, float, float] | None:
        """Threshold, tail start and tail scale from ``pooled``, or None."""
        if len(pooled) < EARLY_MIN:
            return None
        t = linear_quantile(pooled, EARLY_LEVEL)
        excess = pooled[pooled > t] - t
        # Excesses at the float resolution of the scores (or subnormal) are no spread:
        # a tail scaled by them would put the threshold where rounding, not the scores,
        # decides (a window of zeros and one 5e-324 gave a tail probability off by 1%).
        if not len(excess) or excess.mean() <= max(16.0 * float(np.spacing(abs(t))), TINY):
            return None
        # The scale's upper confidence bound, not its estimate: from a dozen excesses the
        # mean is rough, and a young model's scores move (they fall as it learns, rise on
        # a sensor that trends), so the estimate errs toward fewer alarms. 2k·mean/scale
        # is chi-square with 2k degrees of freedom for k exponential excesses
        # (Wilson-Hilferty's cube for its quantile); the bound tightens as scores come.
        dof = 2.0 * len(excess)
        scale = float(excess.mean()) * dof / chi2_quantile(dof, 1.0 - EARLY_CONFIDENCE)
        # P(S > t + x) = (1 - level) * exp(-x / scale): the target rate's point.
        return t + scale * math.log((1.0 - EARLY_LEVEL) / min(target_rate, 1.0 - EARLY_LEVEL)), t, scale

    def _after_update(self, scores: np.ndarray) -> None:
        return None

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        """Estimated share of normal records that score at least this high: from the
        first scores on, the share of the scores seen that were at least as high (one
        more counted among them, so never below 1 / (scores + 1)); while the threshold
        is its small-sample estimate, that estimate's share: the early scores' own up to
        the top tenth, the fitted exponential tail beyond (the target rate at the
        threshold)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.early and len(self._early_scores):
            p = _share_at_least(self._early_scores, s)
            t, scale = self._early_tail
            far = s > t
            p[far] = (1.0 - EARLY_LEVEL) * np.exp(-(s[far] - t) / scale)
            return np.clip(p, TINY, 1.0)
        if not self.hist.ready:
            return _share_at_least(self.hist.pending, s)
        floor = 1.0 / (self.hist.total + 1.0)
        return np.clip(1.0 - np.asarray(self.hist.cdf(scores), dtype=np.float64), floor, 1.0)

    def reset(self) -> None:
        """Forget the score distribution (for example after drift) and warm up again."""
        self.restart()
        self.value = math.inf
        self.provisional = False
        self._forget_early()

    def restart(self) -> None:
        """Forget the scores learned, keeping the current threshold (and tail) until
        enough new ones replace it."""
        self.hist.reset()

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hist": self.hist.state_dict(),
            "value": self.value,
            "grown": self.grown,
            "provisional": self.provisional,
            "detector_young": self.detector_young,
            "offered": self.offered,
            "early_scores": self._early_scores,
            "early_tail": list(self._early_tail),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.hist.load_state_dict(state["hist"])
        self.value = float(state["value"])
        self.grown = bool(state.get("grown", True))
        self.provisional = bool(state.get("provisional", False))
        self.detector_young = bool(state.get("detector_young", True))
        self._early_scores = np.asarray(state.get("early_scores", ()), dtype=np.float64)
        self._early_tail = tuple(float(v) for v in state.get("early_tail", (math.nan, math.nan)))  # type: ignore[assignment]
        # A checkpoint from before the count was kept is of a stream past its first records.
        self.offered = int(state.get("offered", max(self.skip_first, self.hist.n_seen)))


class QuantileThreshold(Threshold):
    """Alarm above the running ``q`` quantile of the scores."""

    name = "quantile"

    def __init__(self, q: float = 0.995, **kwargs: Any) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError("q must be in (0, 1)")
        super().__init__(**kwargs)
        self.q = q

    @property
    def target_rate(self) -> float:
        return 1.0 - self.q

    def _refresh(self) -> None:
        self._set(float(self.hist.quantile(self.q)))
        self.provisional = not self.grown


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
    fitted ``risk * trim_factor`` quantile, a little past the alarm threshold, and
    refits; once ``min_peaks`` are known, new scores beyond the ``risk *
    exclude_factor`` quantile stay out of the peaks. Both were 0.01 (far past the alarm
    threshold): the alarms of a few anomalies then made the tail heavy enough to lift
    the threshold to several times the normal scores' 99.9% quantile for the rest of the
    stream (two of the ten demo streams hit 8 of their 25 spikes). The price of cutting
    closer is a tail a little too light on anomaly-free streams: 1.3-1.8 times the risk
    in false alarms (tests/test_threshold.py), about 1.1 times on the demo's normal
    records (benchmarks/results/calibration.md).

    An alarm that follows an alarm (an episode: a stuck sensor, a valve left shut)
    never enters the peaks, whatever the fit: before ``exclude_above`` is known, a long
    episode's rising scores made up to 40% of a young tail's excesses, past what the
    quartile fit withstands, and lifted the threshold a hundredfold for thousands of
    records (benchmarks/results/wide_streams.md, ANALYSIS.md, thirteenth round).

    Before it has ``min_records`` scores it raises no alarm; with fewer than a few
    hundred excesses the fitted shape is pulled toward ``prior_shape`` (``shrink_shape``).
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
        exclude_factor: float = 0.1,
        trim_factor: float = 0.3,
        trim_rounds: int = 3,
        refit_every: int = 2048,
        prior_shape: float = PRIOR_SHAPE,
        prior_peaks: float = PRIOR_PEAKS,
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
        self.trim_factor = trim_factor
        self.trim_rounds = trim_rounds
        self.refit_every = refit_every
        self.prior_shape = prior_shape
        self.prior_peaks = prior_peaks
        self._fitted_at = -(10**18)  # hist.n_seen at the last tail fit
        self.exclude_above = math.inf
        self.peaks = np.empty(0)
        self.born = np.empty(0)  # hist.n_seen when each peak arrived
        self.t = math.nan
        self.shape = 0.0
        self.scale = math.nan
        self.fitted_max = math.inf  # the largest excess the tail was fitted to
        self._alarmed_before = False  # the last score learned was an alarm

    #: an episode's alarms stay out of the peaks (``_after_update``)
    exclude_episodes = True

    def _after_update(self, scores: np.ndarray) -> None:
        t = float(self.hist.quantile(self.level))
        if not t == t:  # nothing learned yet: the window's own quantile
            t = linear_quantile(scores, self.level) if len(scores) else math.inf
        admit = (scores > t) & (scores <= self.exclude_above)
        if self.exclude_episodes and len(scores):
            # An alarm right after an alarm is an episode (a stuck sensor, a valve left
            # shut), not the tail: it stays out of the peaks, which a young tail (before
            # ``exclude_above`` is known) would otherwise take in by the hundred. A lone
            # alarm still enters, as a young tail needs; two in a row at a risk of 0.001
            # are one normal pair in a million.
            if self.grown and not self.early:
                alarmed = scores > self.value
                admit &= ~(alarmed & np.r_[self._alarmed_before, alarmed[:-1]])
                self._alarmed_before = bool(alarmed[-1])
            else:
                self._alarmed_before = False
        keep = scores[admit]
        if len(keep):
            self.peaks = np.concatenate([self.peaks, keep])[-self.max_peaks :]
            self.born = np.concatenate([self.born, np.full(len(keep), float(self.hist.n_seen))])[-self.max_peaks :]
        # Peaks whose weight has decayed to nothing only cost time.
        fresh = self.hist.n_seen - self.born < 10 * self.half_life
        if not fresh.all():
            self.peaks, self.born = self.peaks[fresh], self.born[fresh]

    def _refresh(self) -> None:
        # The tail changes slowly; refitting it every window would cost more than the
        # model. A young tail changes fast: refit once a quarter more scores came.
        due = min(self.refit_every, max(16, self.hist.n_seen // 4))
        if self.hist.n_seen - self._fitted_at < due and math.isfinite(self.value) and not self.early:
            return
        self._fitted_at = self.hist.n_seen
        t = float(self.hist.quantile(self.level))
        above = self.peaks > t
        y = self.peaks[above] - t
        if len(y) < MIN_FIT:
            return  # too few excesses to say where a risk-sized tail ends: as before
        self.t = t
        w = 0.5 ** ((self.hist.n_seen - self.born[above]) / self.memory)
        p_excl = self.risk * self.exclude_factor / (1.0 - self.level)
        p_trim = self.risk * self.trim_factor / (1.0 - self.level)
        # Start from a fit that a minority of anomalous excesses cannot move (quartiles),
        # drop what lies far beyond it, then fit the rest efficiently.
        self.shape, self.scale = fit_gpd_quartiles(y, w)
        for _ in range(self.trim_rounds):
            # Excesses far beyond what the fit itself expects are anomalies: refit without them.
            # Never trim on a bounded-tail fit: a noisy negative shape would cut real extremes.
            keep = y <= gpd_isf(p_trim, max(self.shape, 0.0), self.scale)
            if keep.sum() < MIN_FIT:
                break
            y, w = y[keep], w[keep]
            self.shape, self.scale = fit_gpd_pwm(y, w)
            if keep.all():
                break
        self.shape, self.scale = shrink_shape(self.shape, self.scale, float(w.sum()), self.prior_shape, self.prior_peaks)
        self.fitted_max = float(y.max())
        self._set(self.t + gpd_isf(self.risk / (1.0 - self.level), self.shape, self.scale))
        self.provisional = not self.grown
        if len(y) >= self.min_peaks:
            self.exclude_above = self.t + gpd_isf(p_excl, self.shape, self.scale)

    @property
    def target_rate(self) -> float:
        return self.risk

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        p = super().tail_probability(scores)
        if not math.isfinite(self.scale):
            return p
        s = np.asarray(scores, dtype=np.float64)
        above = s > self.t
        if above.any():
            p = p.copy()
            e = s[above] - self.t
            # A bounded fit (shape < 0) ends a little past the largest excess it saw, and
            # most alarms lie beyond: it would call them impossible (p = 0). Past the
            # alarm threshold and the excesses fitted, such a tail is continued as an
            # exponential of the fitted scale, which decays slower than the bounded one:
            # p stays continuous, falls with the score, and is below the risk exactly
            # where the threshold alarms. An unbounded tail is read as fitted (ref = inf).
            ref = max(self.fitted_max, self.value - self.t) if self.shape < 0 else math.inf
            tail = gpd_sf(np.minimum(e, ref), self.shape, self.scale)
            p[above] = (1.0 - self.level) * tail * np.exp(-np.maximum(e - ref, 0.0) / self.scale)
        # Far out an exponential tail the estimate still underflows: report the smallest
        # positive probability instead of a certainty.
        return np.clip(p, TINY, 1.0)

    def reset(self) -> None:
        super().reset()
        self.t, self.shape, self.scale = math.nan, 0.0, math.nan
        self.fitted_max = math.inf
        self.exclude_above = math.inf
        self._alarmed_before = False

    def restart(self) -> None:
        super().restart()
        self.peaks, self.born = np.empty(0), np.empty(0)
        self._fitted_at = -(10**18)
        self._alarmed_before = False

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "peaks": self.peaks,
            "born": self.born,
            "t": self.t,
            "shape": self.shape,
            "scale": self.scale,
            "fitted_max": self.fitted_max,
            "exclude_above": self.exclude_above,
            "fitted_at": self._fitted_at,
            "alarmed_before": self._alarmed_before,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.peaks = np.asarray(state["peaks"], dtype=np.float64)
        self.born = np.asarray(state["born"], dtype=np.float64)
        self.t, self.shape, self.scale = float(state["t"]), float(state["shape"]), float(state["scale"])
        self.fitted_max = float(state.get("fitted_max", math.inf))  # older states: the bounded tail as fitted
        self.exclude_above = float(state["exclude_above"])
        self._fitted_at = int(state["fitted_at"])
        self._alarmed_before = bool(state.get("alarmed_before", False))  # older states: no episode open


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


def shrink_shape(shape: float, scale: float, weight: float, prior_shape: float, prior_peaks: float) -> tuple[float, float]:
    """The fitted shape pulled toward ``prior_shape`` as if ``prior_peaks`` excesses
    had that shape (``weight``: the excesses fitted), the scale moved so the mean excess
    stays. With a few dozen excesses a fitted shape is mostly noise, and a noisy
    bounded tail puts the threshold too low; a heavier prior errs toward fewer alarms,
    and its pull fades as the excesses grow (it is about 2% of 5,000 peaks).

    >>> shrink_shape(-0.2, 1.0, 20.0, 0.1, 20.0)
    (-0.05, 0.875)
    """
    if prior_peaks <= 0:
        return shape, scale
    new = (weight * shape + prior_peaks * prior_shape) / (weight + prior_peaks)
    new = float(np.clip(new, -0.5, 0.49))
    return round(new, 12), round(scale * (1.0 - new) / (1.0 - shape), 12)


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
