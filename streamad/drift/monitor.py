"""One lane's drift tests, and the events they raise."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from streamad.drift.detectors import FeatureDrift, ScoreDrift
from streamad.records import Batch, Lane

log = logging.getLogger("streamad.drift")

#: what drifted: a feature's distribution, the score stream, or a key's state, which the
#: model adopted as its new normal after it had lasted (``threshold.adopt_after``)
KINDS = ("feature", "score", "state")


@dataclass(frozen=True)
class DriftEvent:
    """One drift alarm: where, what, how strong, and what the pipeline did about it."""

    lane: Lane
    kind: str  # "feature", "score" or "state"
    method: str  # "psi", "ks" or "page_hinkley"; "adopted" for a state
    statistic: float
    threshold: float
    offset: int  # the last record of the window in which it was detected
    feature: str | None = None
    event_time: float | None = None  # that record's event time, when it has one
    detected_at: float = field(default_factory=time.time)
    action: str = "none"
    key: Any = None  # the record key whose state it is (kind "state"; None: the stream's)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (one line of the drift events file, one message of a drift topic).

        >>> e = DriftEvent(Lane("pumps", 1), "feature", "psi", 1.5, 1.0, 4242, "temperature", detected_at=0.0)
        >>> d = e.as_dict(); d["id"], d["feature"], d["detected_at"]
        ('pumps/1/4242/feature/temperature', 'temperature', '1970-01-01T00:00:00+00:00')
        """
        return {
            "id": "/".join(str(p) for p in (self.lane.stream, self.lane.partition, self.offset, self.kind, self.feature, self.key) if p is not None),
            "type": "drift",
            "source": {"stream": self.lane.stream, "partition": self.lane.partition, "offset": self.offset},
            "kind": self.kind,
            "key": None if self.key is None else str(self.key),
            "feature": self.feature,
            "method": self.method,
            "statistic": self.statistic if math.isfinite(self.statistic) else None,
            "threshold": self.threshold,
            "timestamp": _iso(self.event_time),
            "detected_at": _iso(self.detected_at),
            "action": self.action,
        }

    def to_json(self) -> bytes:
        return bytes(memoryview(orjson.dumps(self.as_dict())))  # exact size: see detection.py

    @property
    def subject(self) -> str:
        """What drifted, for a log line: ``feature 'x0'``, ``score stream`` or ``lasting states``."""
        if self.kind == "state":
            return "lasting states"
        return f"feature {self.feature!r}" if self.feature else "score stream"

    def describe(self) -> str:
        """One log line.

        >>> DriftEvent(Lane("s"), "feature", "psi", 1.0004, 1.0, 1024, "x0").describe()
        "drift in feature 'x0' of s[0] at offset 1,024: psi 1.0004 > 1"
        >>> DriftEvent(Lane("s"), "state", "adopted", 1040, 1024, 9000, key="pump-7").describe()
        "the lasting state of key 'pump-7' of s[0] is adopted as its normal at offset 9,000: flagged for 1,040 records in a row (threshold.adopt_after 1024)"
        """
        if self.kind == "state":
            whose = "the stream" if self.key is None else f"key {str(self.key)!r}"
            return (
                f"the lasting state of {whose} of {self.lane} is adopted as its normal at offset {self.offset:,}: "
                f"flagged for {self.statistic:,.0f} records in a row (threshold.adopt_after {self.threshold:g})"
            )
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

    def update(self, window: Batch, scores: np.ndarray, warmup: bool, also: Sequence[DriftEvent] = ()) -> DriftStatus:
        """Feed one processed window; scores of a model still warming up are not watched.
        ``also``: events the lane raised itself with this window (a key's lasting state
        adopted), reported and counted with the monitor's."""
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
        events += also
        for e in events:
            self.counts[e.kind] += 1
        return self.status(events)

    def status(self, events: Sequence[DriftEvent] = ()) -> DriftStatus:
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
