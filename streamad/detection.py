"""Detections: the pipeline's output, one window at a time, and their JSON messages.

The message is the contract with whoever consumes detections (architecture.md):
source coordinates, key, event time, score, threshold, verdict, tail probability,
the top contributing features and the model. Its ``id`` is derived from the input's
coordinates, so a detection re-emitted after a crash carries the same id. With the
temporal stage, each feature entry also says how the feature behaved (``behaviour``:
level, jump, drift, stuck, flat, noisy, gap) and a ``description`` in words.

>>> import numpy as np
>>> from streamad.records import Lane
>>> d = DetectionBatch(lane=Lane("sensors", 2), offsets=np.array([41]), keys=None,
...     timestamps=np.array([1.7e9]), scores=np.array([3.5]), threshold=2.0,
...     is_anomaly=np.array([True]), tail_probability=np.array([1e-4]),
...     top_features=[[("pressure", 0.75), ("flow", 0.25)]], model="demo", model_version="1")
>>> msg = next(d.messages())
>>> msg.id
'sensors/2/41'
>>> import orjson; orjson.loads(msg.value)["features"]
[{'name': 'pressure', 'share': 0.75}, {'name': 'flow', 'share': 0.25}]
>>> d.top_features = [[("pressure", 1.0, "stuck", "pressure: stuck at 3.2 for 40 records")]]
>>> orjson.loads(next(d.messages()).value)["features"]
[{'name': 'pressure', 'share': 1.0, 'behaviour': 'stuck', 'description': 'pressure: stuck at 3.2 for 40 records'}]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson

from streamad.records import Lane

SCHEMA_VERSION = 1


class Message(NamedTuple):
    id: str
    key: bytes | None
    value: bytes
    lane: Lane
    offset: int


@dataclass
class DetectionBatch:
    """Detections of one window (only the rows to be emitted)."""

    lane: Lane
    offsets: np.ndarray
    keys: np.ndarray | None
    timestamps: np.ndarray | None
    scores: np.ndarray
    threshold: float | np.ndarray  # per record with a threshold per key
    is_anomaly: np.ndarray
    tail_probability: np.ndarray
    top_features: Sequence[Sequence[tuple[str, float] | tuple[str, float, str, str]]]
    model: str
    model_version: str

    def __len__(self) -> int:
        return len(self.offsets)

    def records(self) -> Iterator[dict[str, Any]]:
        lane = self.lane
        stream, partition = lane.stream, lane.partition
        prefix = f"{stream}/{partition}/"
        n = len(self.offsets)
        thr = [t if math.isfinite(t) else None for t in np.broadcast_to(self.threshold, n).tolist()]
        model = {"name": self.model, "version": self.model_version}
        offsets = self.offsets.tolist()
        scores = self.scores.tolist()
        flags = self.is_anomaly.tolist()
        probs = self.tail_probability.tolist()
        stamps: list[float | None] = [None] * n if self.timestamps is None else [None if t != t else t for t in self.timestamps.tolist()]
        events: list[str | None] = [None] * n if self.timestamps is None else event_times(self.timestamps)
        keys = [None] * n if self.keys is None else self.keys.tolist()
        for i, off in enumerate(offsets):
            yield {
                "id": prefix + str(off),
                "schema_version": SCHEMA_VERSION,
                "source": {"stream": stream, "partition": partition, "offset": off},
                "key": keys[i],
                "timestamp": stamps[i],
                "event_time": events[i],
                "score": scores[i],
                "threshold": thr[i],
                "is_anomaly": flags[i],
                "tail_probability": probs[i],
                "features": [_feature(f) for f in self.top_features[i]],
                "model": model,
            }

    def messages(self) -> Iterator[Message]:
        for rec in self.records():
            key = rec["key"]
            yield Message(
                id=rec["id"],
                key=None if key is None else str(key).encode(),
                # A copy: orjson's own result keeps its ~4 KB working buffer while alive,
                # which a producer's send buffer multiplies by thousands of messages.
                value=bytes(memoryview(orjson.dumps(rec))),
                lane=self.lane,
                offset=rec["source"]["offset"],
            )


def event_times(stamps: np.ndarray) -> list[str | None]:
    """``datetime.fromtimestamp(t, timezone.utc).isoformat()`` of each of ``stamps``
    (epoch seconds; None where NaN), the same text computed for the whole array at once:
    one Python datetime a record was a tenth of a replay that emits every record. The
    microseconds are rounded half to even, as CPython rounds them.

    >>> event_times(np.array([0.0, 1.7e9 + 0.25, np.nan]))
    ['1970-01-01T00:00:00+00:00', '2023-11-14T22:13:20.250000+00:00', None]
    """
    t = np.asarray(stamps, dtype=np.float64)
    known = np.isfinite(t)
    frac, whole = np.modf(np.where(known, t, 0.0))
    us = np.rint(frac * 1e6)
    whole = whole + (us >= 1e6) - (us < 0)
    us = np.where(us >= 1e6, us - 1e6, np.where(us < 0, us + 1e6, us)).astype(np.int64)
    text = np.datetime_as_string(whole.astype(np.int64).astype("datetime64[s]"), unit="s")
    micro = np.where(us != 0, np.strings.add(".", np.strings.zfill(us.astype(str), 6)), "")
    out = np.strings.add(np.strings.add(text, micro), "+00:00").tolist()
    return out if known.all() else [s if k else None for s, k in zip(out, known.tolist())]


def _feature(entry: tuple[str, float] | tuple[str, float, str, str]) -> dict[str, Any]:
    """One entry of a message's ``features``: name and share, then (temporal stage on)
    the behaviour and its description."""
    out: dict[str, Any] = {"name": entry[0], "share": round(entry[1], 4)}
    if len(entry) == 4:
        out["behaviour"] = entry[2]
        out["description"] = entry[3]
    return out
