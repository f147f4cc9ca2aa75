"""An online multivariate Gaussian: squared Mahalanobis distances, with forgetting.

The distance to a running mean under a running covariance. With ``trim`` below 1 it
learns only the records scoring under that quantile of the scores it has judged: LOE's
hard E-step with a running threshold (methods.md, 1), applied to the Gaussian. A full
covariance is quick to absorb a long anomaly (a valve left shut for minutes widens it
until the anomaly looks normal); trimmed, it learns the core of the stream and follows
slow drift through it (benchmarks/results/ANALYSIS.md, SKAB).

A classical baseline for sensor data: fast, label-free, strong on spikes, level shifts
and broken correlations between sensors, and it tells which features are off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from streamad.detectors.base import Detector, LearnReport
from streamad.histogram import DecayedHistogram
from streamad.learning.gaussian import OnlineGaussian
from streamad.minibatch import Keys, Record


class Gaussian(Detector):
    """Score = (x − μ)ᵀ Σ⁻¹ (x − μ) with μ, Σ learned window by window.

    The estimate is the same ``OnlineGaussian`` that ``loe-ae`` keeps beside its
    network, here fed every record (no LOE) and without a prior.

    Parameters
    ----------
    half_life : float, optional, default 20000
        Records after which old records count half, so the estimate follows drift
        (None: never forget).
    ridge : float in (0, 1], default 1e-3
        Shrinks Σ toward a scaled identity, to keep it invertible when sensors are
        collinear or constant.
    warmup : int, default 256
        Until this many records have been learned, the report says the detector warms
        up (its scores set only the threshold's provisional estimate), and scores are 0
        unless ``early``.
    early : bool, default False
        Score during the warm-up too, once the estimate holds ``EARLY_RECORDS`` records
        per column: each squared distance times ``(n - d - 2) / (n + 1)``, the small-
        sample inflation of a new record's expected squared distance under an estimate
        from ``n`` records in ``d`` columns (Hotelling's T²), so that the young scores
        that set the provisional threshold are on the scale the grown estimate's settle
        on. A stream of a few hundred records can then alarm (benchmarks/results/
        ANALYSIS.md, fifth round). The warm-up still learns every record, alarmed or
        not, as when it scores 0; after it the scores are the distances as they are.
    trim : float in (0, 1], default 1.0
        After the warm-up, learn only the records whose score is below this quantile of
        the scores judged so far (a running histogram forgetting with ``half_life``);
        1.0 learns every record. A score above that bar enters the histogram as one of
        its bins above the bar, so a fault raises the bar slowly, until ``OVER_RUN``
        records in a row have been over it: a state that lasts is then learned as
        before. Keep it near 1: far below 0.9 the records over the bar are many, and a
        bar that climbs a bin at a time holds the estimate back on a slow drift.
    seed : int, optional
        Accepted for a uniform interface; nothing here is random.

    Examples
    --------
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

    Trimmed, a shift that fills most of the next windows is not learned as normal:

    >>> trimmed = Gaussian(trim=0.7)
    >>> for _ in range(5):
    ...     _ = trimmed.learn(rng.normal(size=(200, 3)))
    >>> shifted = rng.normal(size=(400, 3)) + [0.0, 4.0, 0.0]
    >>> report = trimmed.learn(shifted)
    >>> report.n_learned < 100
    True
    >>> bool(trimmed.score(np.array([[0.0, 4.0, 0.0]]))[0] > 10)
    True

    With ``early``, twenty records are enough to speak up during the warm-up:

    >>> young = Gaussian(early=True)
    >>> report = young.learn(rng.normal(size=(20, 3)))
    >>> normal, odd = young.score(np.array([[0.0, 0.0, 0.0], [0.0, 6.0, 0.0]]))
    >>> report.warmup, bool(odd > 20 > normal)
    (True, True)
    """

    name = "gaussian"
    preferred_scaler = "standard"
    warmup_param = "warmup"
    #: records per column learned before ``early`` scores: with 4 the provisional
    #: threshold, set from the first young scores, alarmed twice as often on normal
    #: records of 300-record streams (benchmarks/results/ANALYSIS.md, fifth round)
    EARLY_RECORDS = 5
    #: records over the trim bar, more than ``1 - trim`` of each window, after which
    #: their scores enter the bar's histogram as they are: the records a bar needs
    #: before it is read at all (``_empty_history``'s ``min_init``)
    OVER_RUN = 64

    half_life: float | None
    ridge: float
    warmup: int
    early: bool
    trim: float
    seed: int | None

    def __init__(
        self,
        half_life: Annotated[float, Field(gt=0)] | None = 20_000,
        ridge: Annotated[float, Field(gt=0, le=1)] = 1e-3,
        warmup: Annotated[int, Field(ge=0)] = 256,
        early: bool = False,
        trim: Annotated[float, Field(gt=0, le=1)] = 1.0,
        seed: int | None = None,
    ) -> None:
        self._set_params(Gaussian, locals())
        self.seen = 0
        self.over_run = 0  # records in a row over the bar (see learn)
        self.g: OnlineGaussian | None = None  # sized by the first window
        self.judged = self._empty_history()

    @property
    def learns_alarmed(self) -> bool:  # type: ignore[override]  # read-only here: it follows the warm-up
        # With ``early``, its warm-up learns every record, alarmed or not, as it does when
        # it scores 0 (no record is then alarmed): the young estimate's rough scores
        # decide alarms, not what it learns (SKAB: false alarms 1.55% -> 1.26%).
        return self.early and self.seen < self.warmup

    def _empty_history(self) -> DecayedHistogram:
        # log1p: squared distances span decades; the quantile needs resolution at the bulk.
        return DecayedHistogram(bins=64, decay=1.0, min_init=64, half_life=self.half_life)

    def _estimate(self, d: int) -> OnlineGaussian:
        return OnlineGaussian(d, half_life=self.half_life, shrink=self.ridge, prior=0.0, min_weight=1.0 + 1e-9)

    def score(self, X: np.ndarray, keys: Keys = None) -> np.ndarray:
        weight = self._weight()
        if weight == 0.0 or self.g is None:
            return np.zeros(len(X))
        return self.g.score(X) * weight  # (times 1.0 once grown: the same values)

    def score_one(self, x: Record, key: str | None = None) -> float:
        """``score`` of one record, its quadratic form in one compiled call (no numpy
        call per record; equal to ``score`` up to rounding)."""
        row = self._row(x)
        weight = self._weight()
        if weight == 0.0 or self.g is None or row.shape[1] != self.g.d:
            return float(self.score(row)[0])
        return self.g.score_one(row[0]) * weight

    def _weight(self) -> float:
        """What the estimate's scores are multiplied by now: 0 before it scores."""
        if self.g is None or not self.g.ready:
            return 0.0
        if self.seen < self.warmup:
            # Gated on the records learned; scaled by the estimate's weight (their
            # number, a little less with forgetting).
            n, d = self.g.n, self.g.d
            if not self.early or self.seen < self.EARLY_RECORDS * d:
                return 0.0
            return (n - d - 2.0) / (n + 1.0)
        return 1.0

    def contributions(self, X: np.ndarray, keys: Keys = None) -> np.ndarray | None:
        if self.g is None or not self.g.ready:
            return None
        # Each feature's share of the quadratic form, clipped at 0 (cross terms can be negative).
        return self.g.contributions(X)

    def learn(self, X: np.ndarray, keys: Keys = None) -> LearnReport:
        X = np.asarray(X, dtype=np.float64)
        warm = self.seen < self.warmup
        if len(X) == 0:
            return LearnReport(0, warmup=warm)
        if self.g is None:
            self.g = self._estimate(X.shape[1])
        self.seen += len(X)
        flag_rate: float | None = None
        if self.trim < 1.0 and not warm and self.g.ready:
            z = np.log1p(self.g.score(X))
            # The bar comes from grown-up scores only (a young estimate's are high), read
            # before this window joins them: a long anomaly filling the window does not
            # raise the bar it is judged against. Until it holds 64 scores, all is learned.
            level = float(self.judged.quantile(self.trim)) if self.judged.ready else np.inf
            normal = z <= level
            flag_rate = 1.0 - float(normal.mean())  # LOE's hard labels: the share left unlearned
            self.over_run = self.over_run + len(X) if flag_rate > 1.0 - self.trim else 0
            # A score over the bar counts as just over it (one bin) until OVER_RUN records
            # in a row have been over it: a young bar, read from few scores, is otherwise
            # pulled into a fault once the fault holds 1 - trim of them, a few windows in
            # (SKAB: the last 200 rows of 400-row faults were learned). A state that lasts
            # (OVER_RUN records given to learn; the model gives it one in ten of those it
            # alarms on) raises the bar as before, so a new operating point is learned.
            # Before the bar exists the level is infinite, and nothing is capped.
            capped = self.over_run < self.OVER_RUN
            self.judged.update(np.minimum(z, level + self.judged.bin_width) if capped else z)
            X = X[normal]
        if len(X):
            self.g.update(X)
        return LearnReport(n_learned=len(X), loe_flag_rate=flag_rate, warmup=warm)

    def on_drift(self, kind: str) -> None:
        # Forget faster than the half-life would: keep the estimate, shrink its weight so
        # the records after the drift soon dominate it.
        self._forget()

    def on_lasting_state(self, keys: Sequence[Any]) -> None:
        # A new operating point that lasts: learned within a few hundred records, however
        # many the estimate holds (with a half-life of 20,000 it held a step out for
        # 7,000 records after 10,000 before it).
        self._forget()

    def _forget(self) -> None:
        if self.g is not None:
            self.g.forget(self.warmup)
        self.judged = self._empty_history()  # the scores before the drift no longer set the bar
        self.over_run = 0

    def state_dict(self) -> dict[str, Any]:
        g = self.g.state_dict() if self.g is not None else {"n": 0.0, "mean": None, "scatter": None}
        params = {"half_life": self.half_life, "ridge": self.ridge, "warmup": self.warmup, "early": self.early, "trim": self.trim}
        return {"params": params, "seen": self.seen, "over_run": self.over_run, **g, "judged": self.judged.state_dict(), "one": self._one_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_params(state["params"])
        self.seen = int(state["seen"])
        self.over_run = int(state.get("over_run", 0))  # states before it: none in a row
        self.judged = self._empty_history()
        if "judged" in state:  # states before trim have none: they learned every record
            self.judged.load_state_dict(state["judged"])
        self.g = None
        if state["mean"] is not None:
            self.g = self._estimate(len(state["mean"]))
            self.g.load_state_dict(state)
        self._load_one_state(state.get("one"))
