"""Drift detection per lane: of each feature, and of the score stream.

Two questions, asked of every window after it has been scored and learned:

- **Has a feature's distribution moved?** Each feature is binned at the deciles (and
  the 1st, 5th, 95th and 99th percentiles) of a reference window (the first ``reference`` records, re-taken after an alarm) and the
  most recent ``recent`` records are compared with it by the population stability
  index (PSI) or a binned Kolmogorov-Smirnov statistic (the largest gap between the two
  CDFs at the bin edges). Counts are kept incrementally, so a window costs
  O(window × features), not O(recent × features).
- **Has the score stream moved up?** Each score becomes its rank among the reference
  scores (0..1, 0.5 on average while nothing changes), medians of ``chunk`` ranks are
  fed to a Page-Hinkley test, one-sided upwards: the model fitting the data
  worse is what matters; scores that fall as a model keeps learning are not drift.
  Medians of chunks make the test deaf to single spikes and short anomaly bursts.

Sensor streams are autocorrelated, so a window of a few thousand records holds far
fewer independent values than records, and the usual PSI rule of thumb (0.25) fires
on a stationary stream; the default alarm levels (PSI 1.0, KS 0.35) are set for that.
Everything is kept in numbers and arrays, so the state checkpoints without pickle.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> fd = FeatureDrift(2, reference=1000, recent=500)
>>> for i in range(10):
...     X = rng.normal(size=(250, 2))
...     if i >= 6:
...         X[:, 1] += 2.0  # the second feature shifts by two standard deviations
...     drifted = fd.update(X)
...     if len(drifted):
...         print(f"window {i}: features {drifted.tolist()} drifted, PSI {fd.fired[drifted[0]]:.1f}")
window 7: features [1] drifted, PSI 4.0
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Mapping, Protocol, Sequence

import numpy as np
import orjson

from streamad.records import Batch, Lane

log = logging.getLogger("streamad.drift")

KINDS = ("feature", "score")


# -- events and where they go ------------------------------------------------------------


@dataclass(frozen=True)
class DriftEvent:
    """One drift alarm: where, what, how strong, and what the pipeline did about it."""

    lane: Lane
    kind: str  # "feature" or "score"
    method: str  # "psi", "ks" or "page_hinkley"
    statistic: float
    threshold: float
    offset: int  # the last record of the window in which it was detected
    feature: str | None = None
    event_time: float | None = None  # that record's event time, when it has one
    detected_at: float = field(default_factory=time.time)
    action: str = "none"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (one line of the drift events file, one message of a drift topic).

        >>> e = DriftEvent(Lane("pumps", 1), "feature", "psi", 1.5, 1.0, 4242, "temperature", detected_at=0.0)
        >>> d = e.as_dict(); d["id"], d["feature"], d["detected_at"]
        ('pumps/1/4242/feature/temperature', 'temperature', '1970-01-01T00:00:00+00:00')
        """
        return {
            "id": "/".join(str(p) for p in (self.lane.stream, self.lane.partition, self.offset, self.kind, self.feature) if p is not None),
            "type": "drift",
            "source": {"stream": self.lane.stream, "partition": self.lane.partition, "offset": self.offset},
            "kind": self.kind,
            "feature": self.feature,
            "method": self.method,
            "statistic": self.statistic if math.isfinite(self.statistic) else None,
            "threshold": self.threshold,
            "timestamp": _iso(self.event_time),
            "detected_at": _iso(self.detected_at),
            "action": self.action,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_dict())

    @property
    def subject(self) -> str:
        """What drifted, for a log line: ``feature 'x0'`` or ``score stream``."""
        return f"feature {self.feature!r}" if self.feature else "score stream"

    def describe(self) -> str:
        """One log line.

        >>> DriftEvent(Lane("s"), "feature", "psi", 1.0004, 1.0, 1024, "x0").describe()
        "drift in feature 'x0' of s[0] at offset 1,024: psi 1.0004 > 1"
        """
        return (
            f"drift in {self.subject} of {self.lane} at offset {self.offset:,}: {self.method} {exceeding(self.statistic, self.threshold)} > {self.threshold:g}"
            + (f"; action: {self.action}" if self.action != "none" else "")
        )


def exceeding(value: float, threshold: float) -> str:
    """``value`` with just enough digits that, printed, it still exceeds ``threshold``
    (a statistic of 1.0004 over a threshold of 1 must not read "1 > 1").

    >>> exceeding(1.31, 1.0), exceeding(1.0004, 1.0), exceeding(5.0000001, 5.0), exceeding(float("inf"), 1.0)
    ('1.31', '1.0004', '5.0000001', 'inf')
    """
    if not math.isfinite(value) or value <= threshold:
        return f"{value:.3g}"
    for digits in range(3, 18):
        text = f"{value:.{digits}g}"
        if float(text) > threshold:
            return text
    return repr(value)


def _iso(t: float | None) -> str | None:
    if t is None or not math.isfinite(t):
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


@dataclass(frozen=True)
class DriftStatus:
    """What a lane's drift monitor says after a window: its alarms and latest statistics."""

    events: tuple[DriftEvent, ...] = ()
    features: Mapping[str, float] = field(default_factory=dict)  # latest statistic per feature
    score: float | None = None  # Page-Hinkley's upward statistic of the score stream
    method: str = "psi"
    feature_threshold: float = math.nan
    score_threshold: float | None = None


class DriftSink(Protocol):
    """Where drift events go: a JSONL file on replay, a drift topic on Kafka."""

    def write(self, events: Sequence[DriftEvent]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonlDriftSink:
    """Drift events as JSON lines, appended to a file."""

    def __init__(self, path: str | Path) -> None:
        from streamad.errors import InputError

        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[bytes] = open(self.path, "ab")
        except OSError as e:
            raise InputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.written = 0

    def write(self, events: Sequence[DriftEvent]) -> None:
        self._f.write(b"".join(e.to_json() + b"\n" for e in events))
        self.written += len(events)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._f.close()


class MemoryDriftSink:
    """Keeps events in a list (tests)."""

    def __init__(self) -> None:
        self.events: list[DriftEvent] = []

    def write(self, events: Sequence[DriftEvent]) -> None:
        self.events.extend(events)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


# -- feature drift ---------------------------------------------------------------------------


class FeatureDrift:
    """PSI or binned KS of each feature between a reference window and the recent records.

    ``update(X)`` takes the raw records of a window and returns the indices of the
    features whose statistic crossed ``threshold``. Such a feature then waits for
    ``recent`` new records and takes them as its new reference, so one shift raises
    one alarm, and a drift that goes on raises another once it has moved on further.
    ``statistic`` holds the latest value per feature (NaN until a recent window is full);
    ``fired`` the value that raised the last alarm.
    """

    TAILS = (0.01, 0.05, 0.95, 0.99)

    def __init__(self, n_features: int, method: str = "psi", threshold: float | None = None, reference: int = 5000, recent: int = 2000, bins: int = 10) -> None:
        if method not in ("psi", "ks"):
            raise ValueError(f"unknown feature drift method {method!r}: psi or ks")
        if bins < 2:
            raise ValueError("bins must be at least 2")
        self.d = int(n_features)
        self.method = method
        self.threshold = float(threshold if threshold is not None else (1.0 if method == "psi" else 0.35))
        self.reference = int(reference)
        self.recent = int(recent)
        self.bins = int(bins)
        # Equal-mass bins, plus finer ones in both tails: a change of spread shows first
        # in the tails, where equal-mass bins of 10% would hide it.
        self.levels = np.unique(np.concatenate([np.linspace(0.0, 1.0, self.bins + 1)[1:-1], self.TAILS]).round(6))
        self.nb = len(self.levels) + 1
        self.edges: np.ndarray | None = None  # d × (nb - 1) inner edges
        self.ref_counts = np.zeros((self.d, self.nb))
        self.ref_n = np.zeros(self.d)
        self._collect: list[np.ndarray] = []  # raw records until the first reference is full
        self.ring = np.zeros((self.recent, self.d))
        self.pos = 0  # next ring row to write
        self.filled = 0
        self.counts = np.zeros((self.d, self.nb))
        self.statistic = np.full(self.d, np.nan)
        self.fired = np.full(self.d, np.nan)
        # After an alarm a feature waits for a recent window of new records, then takes
        # them as its reference: a reference straddling the change would alarm again.
        self.rebase = np.zeros(self.d, dtype=bool)
        self.wait = np.zeros(self.d, dtype=np.int64)

    @property
    def ready(self) -> bool:
        return self.edges is not None

    def _bin(self, X: np.ndarray, features: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Bin index of each value (n × len(features)); ``>=`` matches searchsorted(side='right')."""
        assert self.edges is not None
        return (X[:, :, None] >= self.edges[features][None, :, :]).sum(axis=2)

    def _histogram(self, idx: np.ndarray) -> np.ndarray:
        d = idx.shape[1]
        flat = (idx + np.arange(d) * self.nb).ravel()
        return np.bincount(flat, minlength=d * self.nb).reshape(d, self.nb).astype(np.float64)

    def _set_reference(self, R: np.ndarray, features: np.ndarray) -> None:
        """Quantile edges and counts of ``R`` (n × len(features)) for ``features``."""
        assert self.edges is not None
        self.edges[features] = np.quantile(R, self.levels, axis=0).T
        self.ref_counts[features] = self._histogram(self._bin(R, features))
        self.ref_n[features] = len(R)

    def update(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"expected records with {self.d} features, got shape {X.shape}")
        if len(X) == 0:
            return np.empty(0, dtype=np.int64)
        if self.edges is None:
            self._collect.append(X)
            pooled = np.concatenate(self._collect)
            if len(pooled) < self.reference:
                return np.empty(0, dtype=np.int64)
            self._collect = []
            self.edges = np.zeros((self.d, self.nb - 1))
            self._set_reference(pooled[: self.reference], np.arange(self.d))
            X = pooled[self.reference :]
            if len(X) == 0:
                return np.empty(0, dtype=np.int64)
        X = X[-self.recent :]
        n = len(X)
        rows = (self.pos + np.arange(n)) % self.recent
        held = rows[rows < self.filled]  # ring rows fill in order from 0, so these hold records
        if len(held):
            self.counts -= self._histogram(self._bin(self.ring[held]))
        self.ring[rows] = X
        self.counts += self._histogram(self._bin(X))
        self.pos = int((self.pos + n) % self.recent)
        self.filled = min(self.recent, self.filled + n)
        self.wait = np.maximum(self.wait - n, 0)
        rebased = np.flatnonzero(self.rebase & (self.wait == 0))
        if len(rebased):
            # The ring now holds only records from after the alarm: the new reference.
            self._set_reference(self.ring[:, rebased], rebased)
            self.counts[rebased] = self.ref_counts[rebased]
            self.rebase[rebased] = False
        if self.filled < self.recent:
            return np.empty(0, dtype=np.int64)
        stat = self._statistic()
        stat[self.rebase] = np.nan
        self.statistic = stat
        drifted = np.flatnonzero(stat > self.threshold)
        if len(drifted):
            self.fired[drifted] = stat[drifted]
            self.rebase[drifted] = True
            self.wait[drifted] = self.recent
        return drifted

    def _statistic(self) -> np.ndarray:
        n = self.counts.sum(axis=1, keepdims=True)
        if self.method == "ks":
            p = self.counts / n
            p0 = self.ref_counts / self.ref_n[:, None]
            return np.abs(np.cumsum(p - p0, axis=1)).max(axis=1)
        # Half a count in every bin keeps empty bins finite without hiding real shifts.
        p = (self.counts + 0.5) / (n + 0.5 * self.nb)
        p0 = (self.ref_counts + 0.5) / (self.ref_n[:, None] + 0.5 * self.nb)
        return ((p - p0) * np.log(p / p0)).sum(axis=1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {"n_features": self.d, "method": self.method, "threshold": self.threshold, "reference": self.reference, "recent": self.recent, "bins": self.bins},
            "edges": self.edges,
            "ref_counts": self.ref_counts,
            "ref_n": self.ref_n,
            "collect": np.concatenate(self._collect) if self._collect else np.empty((0, self.d)),
            "ring": self.ring,
            "pos": self.pos,
            "filled": self.filled,
            "statistic": self.statistic,
            "fired": self.fired,
            "rebase": self.rebase,
            "wait": self.wait,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.__init__(**state["params"])  # type: ignore[misc]
        self.rebase = np.array(state["rebase"], dtype=bool)
        self.wait = np.array(state["wait"], dtype=np.int64)
        self.edges = None if state["edges"] is None else np.array(state["edges"], dtype=np.float64)
        self.ref_counts = np.array(state["ref_counts"], dtype=np.float64)
        self.ref_n = np.array(state["ref_n"], dtype=np.float64)
        collect = np.asarray(state["collect"], dtype=np.float64)
        self._collect = [collect] if len(collect) else []
        self.ring = np.array(state["ring"], dtype=np.float64)
        self.pos, self.filled = int(state["pos"]), int(state["filled"])
        self.statistic = np.array(state["statistic"], dtype=np.float64)
        self.fired = np.array(state["fired"], dtype=np.float64)
        if self.edges is not None and self.filled:
            # The counts follow from the ring; recomputing them keeps the checkpoint small.
            self.counts = self._histogram(self._bin(self.ring[: self.filled]))


# -- score drift ------------------------------------------------------------------------------


class PageHinkley:
    """The one-sided (upward) Page-Hinkley test (Page, Biometrika 1954), computed as
    river's ``drift.PageHinkley(mode="up", alpha=1)`` computes it, without importing
    river.drift (which pulls in river's datasets and scikit-learn: most of a second, in
    the first window of every run).

    >>> ph = PageHinkley(min_instances=5, delta=0.05, threshold=1.0)
    >>> [ph.update(v) for v in [0.5] * 10 + [0.9] * 10].index(True)  # the 4th value after the step
    13
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.n = 0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.min_increase = math.inf

    @property
    def statistic(self) -> float:
        return self.sum_increase - self.min_increase if self.n >= self.min_instances else math.nan

    def update(self, x: float) -> bool:
        """Add a value; True when it completes an upward change."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.sum_increase += x - self.mean - self.delta
        self.min_increase = min(self.min_increase, self.sum_increase)
        return self.n >= self.min_instances and self.sum_increase - self.min_increase > self.threshold

    def state_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": self.mean, "sum_increase": self.sum_increase, "min_increase": self.min_increase}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n = int(state["n"])
        self.mean = float(state["mean"])
        self.sum_increase = float(state["sum_increase"])
        self.min_increase = float(state["min_increase"])


class ScoreDrift:
    """A Page-Hinkley test on the ranks of scores among reference scores.

    ``update(scores)`` returns True when the scores have moved up. After an alarm the
    reference is re-taken from the next ``reference`` scores and the test starts afresh.
    ``statistic`` is Page-Hinkley's upward statistic, alarming above ``threshold``.
    """

    LEVELS = 200

    def __init__(self, reference: int = 5000, chunk: int = 32, delta: float = 0.05, threshold: float = 5.0, min_chunks: int = 30) -> None:
        self.reference = int(reference)
        self.chunk = int(chunk)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_chunks = int(min_chunks)
        self.grid: np.ndarray | None = None  # reference quantiles at LEVELS + 1 levels
        self._collect: list[np.ndarray] = []
        self._pending = np.empty(0)  # ranks not yet filling a chunk
        self.statistic = math.nan
        self.fired = math.nan
        self._ph = self._new_test()

    def _new_test(self) -> PageHinkley:
        return PageHinkley(min_instances=self.min_chunks, delta=self.delta, threshold=self.threshold)

    @property
    def ready(self) -> bool:
        return self.grid is not None

    def ranks(self, scores: np.ndarray) -> np.ndarray:
        """Mid-rank of each score among the reference quantiles, in [0, 1]."""
        assert self.grid is not None
        lo = np.searchsorted(self.grid, scores, side="left")
        hi = np.searchsorted(self.grid, scores, side="right")
        return np.clip((lo + hi) / (2.0 * (len(self.grid) - 1)) - 0.5 / (len(self.grid) - 1), 0.0, 1.0)

    def update(self, scores: np.ndarray) -> bool:
        s = np.asarray(scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if self.grid is None:
            if len(s):
                self._collect.append(s)
            pooled = np.concatenate(self._collect) if self._collect else np.empty(0)
            if len(pooled) < self.reference:
                return False
            self._collect = []
            self.grid = np.quantile(pooled[: self.reference], np.linspace(0.0, 1.0, self.LEVELS + 1))
            s = pooled[self.reference :]
        u = np.concatenate([self._pending, self.ranks(s)]) if len(s) else self._pending
        m = len(u) // self.chunk
        self._pending = u[m * self.chunk :]
        ph = self._ph
        for med in np.median(u[: m * self.chunk].reshape(m, self.chunk), axis=1) if m else ():
            detected = ph.update(float(med))
            self.statistic = ph.statistic
            if detected:
                self.fired = self.statistic
                self.grid = None
                self._pending = np.empty(0)
                self._ph = self._new_test()
                return True
        return False

    def state_dict(self) -> dict[str, Any]:
        ph = self._ph
        return {
            "params": {"reference": self.reference, "chunk": self.chunk, "delta": self.delta, "threshold": self.threshold, "min_chunks": self.min_chunks},
            "grid": self.grid,
            "collect": np.concatenate(self._collect) if self._collect else np.empty(0),
            "pending": self._pending,
            "statistic": self.statistic,
            "fired": self.fired,
            "ph": self._ph.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.__init__(**state["params"])  # type: ignore[misc]
        self.grid = None if state["grid"] is None else np.array(state["grid"], dtype=np.float64)
        collect = np.asarray(state["collect"], dtype=np.float64)
        self._collect = [collect] if len(collect) else []
        self._pending = np.array(state["pending"], dtype=np.float64)
        self.statistic, self.fired = float(state["statistic"]), float(state["fired"])
        self._ph.load_state_dict(state["ph"])


# -- per lane ---------------------------------------------------------------------------------


class DriftMonitor:
    """Feature and score drift of one lane, turned into events.

    >>> import numpy as np
    >>> from streamad.config import DriftSettings
    >>> m = DriftMonitor(Lane("s"), ["a", "b"], DriftSettings(reference_records=500, recent_records=500))
    >>> rng = np.random.default_rng(1)
    >>> events = []
    >>> for i in range(8):
    ...     X = rng.normal(size=(250, 2)) + (i >= 4) * np.array([0.0, 3.0])
    ...     w = Batch(Lane("s"), X, np.arange(i * 250, (i + 1) * 250))
    ...     events += m.update(w, rng.exponential(size=250), warmup=False).events
    >>> [(e.kind, e.feature, e.offset) for e in events]
    [('feature', 'b', 1249)]
    """

    def __init__(self, lane: Lane, feature_names: Sequence[str], settings: Any) -> None:
        self.lane = lane
        self.feature_names = tuple(feature_names)
        self.settings = settings
        self.features = FeatureDrift(
            len(self.feature_names),
            method=settings.method,
            threshold=settings.feature_threshold,
            reference=settings.reference_records,
            recent=settings.recent_records,
            bins=settings.bins,
        )
        self.score: ScoreDrift | None = None
        if settings.score:
            self.score = ScoreDrift(reference=settings.reference_records, chunk=settings.score_chunk, delta=settings.score_delta, threshold=settings.score_threshold)
        self.counts = {k: 0 for k in KINDS}

    def update(self, window: Batch, scores: np.ndarray, warmup: bool) -> "DriftStatus":
        """Feed one processed window; scores of a model still warming up are not watched."""
        events: list[DriftEvent] = []
        if len(window):
            offset = int(window.offsets[-1])
            ts = None if window.timestamps is None else float(window.timestamps[-1])
            fd = self.features
            for j in fd.update(window.X):
                events.append(DriftEvent(self.lane, "feature", fd.method, float(fd.fired[j]), fd.threshold, offset, self.feature_names[j], ts))
            if self.score is not None and not warmup and self.score.update(scores):
                events.append(DriftEvent(self.lane, "score", "page_hinkley", self.score.fired, self.score.threshold, offset, None, ts))
        act = self.settings.action
        events = [replace(e, action=act if e.kind in self.settings.act_on else "none") for e in events]
        for e in events:
            self.counts[e.kind] += 1
        return self.status(events)

    def status(self, events: Sequence[DriftEvent] = ()) -> "DriftStatus":
        fd, sd = self.features, self.score
        stats = dict(self.feature_statistics())
        # The gauge shows the value that raised an alarm, not the one after re-referencing.
        for e in events:
            if e.feature is not None:
                stats[e.feature] = e.statistic
        score = None
        if sd is not None:
            score = sd.fired if any(e.kind == "score" for e in events) else sd.statistic
        return DriftStatus(
            events=tuple(events),
            features=stats,
            score=None if score is None or not math.isfinite(score) else float(score),
            method=fd.method,
            feature_threshold=fd.threshold,
            score_threshold=None if sd is None else sd.threshold,
        )

    def feature_statistics(self) -> dict[str, float]:
        """Latest statistic per feature (features without one yet are left out)."""
        st = self.features.statistic
        return {name: float(v) for name, v in zip(self.feature_names, st) if math.isfinite(v)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "features": self.features.state_dict(),
            "score": None if self.score is None else self.score.state_dict(),
            "counts": dict(self.counts),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.features.load_state_dict(state["features"])
        if self.score is not None and state.get("score") is not None:
            self.score.load_state_dict(state["score"])
        self.counts.update({k: int(v) for k, v in state.get("counts", {}).items()})


@dataclass
class _Tally:
    """The alarms of one feature (or the score stream) of one lane, for the log."""

    first: DriftEvent
    count: int = 1
    last_offset: int = 0
    peak: float = -math.inf
    unreported: int = 0  # alarms since the last log line about this feature
    reported_at: float = 0.0

    def add(self, e: DriftEvent) -> None:
        self.count += 1
        self.unreported += 1
        self.last_offset = e.offset
        if math.isfinite(e.statistic):
            self.peak = max(self.peak, e.statistic)

    def describe(self) -> str:
        e = self.first
        peak = f"; {e.method} up to {self.peak:.3g}" if math.isfinite(self.peak) and self.count > 1 else ""
        if self.count == 1:
            return f"drift: {e.subject} of {e.lane}: 1 alarm, at offset {e.offset:,}"
        return f"drift: {e.subject} of {e.lane}: {self.count:,} alarms between offset {e.offset:,} and {self.last_offset:,}{peak}"


class DriftLog:
    """A pipeline observer that writes every drift event to a drift sink and logs them
    so that an operator can read the log.

    A drifting stream can raise an alarm every few windows; a line for each buries
    everything else. So the first alarm of each feature (and of the score stream) of a
    lane is logged in full; later ones are counted, and a feature with new alarms gets
    at most one line per ``report_every`` seconds saying how many. ``close()`` (the end
    of a replay) logs one line per feature that had alarms: how many, and between
    which offsets. The sink still gets every event.

    >>> import sys
    >>> shown = logging.StreamHandler(sys.stdout); log.addHandler(shown)
    >>> dl = DriftLog(report_every=3600.0, clock=lambda: 0.0)
    >>> for off in (1024, 2048, 4096):
    ...     dl.log(DriftEvent(Lane("s"), "feature", "psi", 1.5, 1.0, off, "x0"))
    drift in feature 'x0' of s[0] at offset 1,024: psi 1.5 > 1 (further alarms of this feature are counted)
    >>> dl.close()
    drift: feature 'x0' of s[0]: 3 alarms between offset 1,024 and 4,096; psi up to 1.5
    >>> log.removeHandler(shown)
    """

    def __init__(self, sink: DriftSink | None = None, report_every: float = 60.0, clock: Any = time.monotonic) -> None:
        self.sink = sink
        self.report_every = float(report_every)
        self.clock = clock
        self.tallies: dict[tuple[Lane, str, str | None], _Tally] = {}
        self._closed = False

    def on_batch(self, batch: Batch) -> None:
        return None

    def on_rejects(self, rejects: Sequence[Any]) -> None:
        return None

    def on_window(self, result: Any) -> None:
        status = getattr(result, "drift", None)
        events = status.events if status is not None else ()
        for e in events:
            self.log(e)
        if events and self.sink is not None:
            self.sink.write(events)

    def log(self, e: DriftEvent) -> None:
        """Log one event: in full when it is the first of its feature, else counted."""
        key = (e.lane, e.kind, e.feature)
        now = self.clock()
        t = self.tallies.get(key)
        if t is None:
            self.tallies[key] = _Tally(e, last_offset=e.offset, peak=e.statistic if math.isfinite(e.statistic) else -math.inf, reported_at=now)
            what = "feature" if e.feature else "score stream"
            log.warning("%s (further alarms of this %s are counted)", e.describe(), what)
            return
        t.add(e)
        if now - t.reported_at >= self.report_every:
            log.warning(
                "drift: %s of %s: %d more alarm%s (latest at offset %s: %s %s > %g); %s so far",
                e.subject, e.lane, t.unreported, "" if t.unreported == 1 else "s",
                f"{e.offset:,}", e.method, exceeding(e.statistic, e.threshold), e.threshold, f"{t.count:,}",
            )
            t.unreported, t.reported_at = 0, now

    def summary(self) -> list[str]:
        """One line per feature (and score stream) of each lane that had alarms."""
        return [t.describe() for _, t in sorted(self.tallies.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))]

    def on_checkpoint(self, lanes: Sequence[Lane]) -> None:
        if self.sink is not None:
            self.sink.flush()

    def close(self) -> None:
        """Log the per-feature summary (once) and close the sink."""
        if not self._closed:
            self._closed = True
            for line in self.summary():
                log.warning(line)
        if self.sink is not None:
            self.sink.close()
