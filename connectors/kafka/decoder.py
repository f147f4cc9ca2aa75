"""Kafka message values (JSON objects) to batches: every message becomes a row or a reject.

No Kafka client here: the decoder reads anything with ``offset``, ``key``, ``value``
and ``timestamp`` attributes (kafka-python's ``ConsumerRecord``), so it is tested
without a broker.

>>> from types import SimpleNamespace as M
>>> from streamad.config import RecordSettings
>>> dec = JsonDecoder(RecordSettings(), max_message_bytes=100)
>>> msgs = [M(offset=0, key=b"p1", value=b'{"ts": 1.7e9, "a": 1, "b": 2.5, "site": "x"}', timestamp=0),
...         M(offset=1, key=None, value=b'{"a": "oops", "b": 1, "ts": 1}', timestamp=0),
...         M(offset=2, key=None, value=b'{"a": NaN, "b": 1, "ts": 1}', timestamp=0),
...         M(offset=3, key=None, value=b"\\xff", timestamp=0)]
>>> batch = dec.decode(Lane("sensors", 0), msgs)
>>> dec.features, batch.X.tolist(), batch.keys.tolist()
(('a', 'b'), [[1.0, 2.5]], ['p1'])
>>> [(r.offset, r.code) for r in batch.rejects]
[(1, 'non_numeric'), (2, 'non_finite'), (3, 'undecodable')]
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import orjson

from streamad.config import RecordSettings
from streamad.errors import InputError
from streamad.records import Batch, Lane, Reject
from streamad.schema import LABEL_NAMES, TIMESTAMP_NAMES, Schema

log = logging.getLogger("streamad.kafka")


class Message(Protocol):
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


@dataclass(frozen=True)
class KafkaReject(Reject):
    """A reject that remembers the message's key and timestamp, for the dead-letter topic."""

    key: bytes | None = None
    timestamp_ms: int | None = None


class JsonDecoder:
    """Parses JSON objects into batches with a fixed schema.

    The feature names come from ``record.features``, from a checkpoint (``fix``), or
    are inferred once from the first valid message: its numeric fields, less the
    key, timestamp, label and excluded fields (and, with ``guess_roles``, fields whose
    names say they are a timestamp or ground truth). After that they never change.
    Without a ``record.key`` field the message's Kafka key is the record key; without
    a timestamp field its Kafka timestamp is the event time.
    """

    def __init__(
        self,
        record: RecordSettings,
        max_message_bytes: int,
        on_features: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.record = record
        self.max_bytes = max_message_bytes
        self.on_features = on_features
        self._features: tuple[str, ...] | None = tuple(record.features) if record.features else None
        self.schema: Schema | None = None

    @property
    def features(self) -> tuple[str, ...] | None:
        return self.schema.features if self.schema is not None else self._features

    def fix(self, features: Sequence[str]) -> None:
        """Use these feature names (a checkpoint's) instead of inferring them."""
        if self.features is None:
            self._features = tuple(features)

    # -- decoding --------------------------------------------------------------------------

    def decode(self, lane: Lane, messages: Sequence[Message], arrival: float = 0.0) -> Batch:
        objs: list[Any] = []
        kept: list[Message] = []
        rejects: list[Reject] = []
        for m in messages:
            obj, code, reason = self._load(m.value)
            if code is None and self.schema is None:
                code, reason = self._resolve(obj, lane, m.offset)
            if code is not None:
                rejects.append(_reject(lane, m, code, str(reason)))
                continue
            objs.append(obj)
            kept.append(m)
        if self.schema is None:  # nothing valid yet: everything was rejected
            return Batch(lane, np.empty((0, 0)), np.empty(0, dtype=np.int64), arrival=arrival, rejects=rejects)
        offsets = np.fromiter((m.offset for m in kept), dtype=np.int64, count=len(kept))
        batch = self._parse(objs, offsets, lane, kept, arrival, rejects)
        if batch.rejects:
            by_offset = {m.offset: m for m in kept}
            rejects += [_reject(lane, by_offset[r.offset], r.code, r.reason, r.field) for r in batch.rejects]
        if len(batch) and (self.schema.key is None or self.schema.timestamp is None):
            rows = np.searchsorted(offsets, batch.offsets)
            if self.schema.key is None:
                batch.keys = np.array([_text(kept[i].key) for i in rows], dtype=object)
            if self.schema.timestamp is None:
                ts = np.fromiter((kept[i].timestamp for i in rows), dtype=np.float64, count=len(rows))
                batch.timestamps = np.where(ts >= 0, ts / 1000.0, np.nan)
        batch.rejects = sorted(rejects, key=lambda r: r.offset)
        return batch

    def _parse(self, objs: list[Any], offsets: np.ndarray, lane: Lane, kept: list[Message], arrival: float, rejects: list[Reject]) -> Batch:
        assert self.schema is not None
        raws = [m.value for m in kept]
        try:
            return self.schema.parse_mappings(objs, offsets, lane, raws=raws, arrival=arrival)
        except Exception:  # noqa: BLE001 - one odd record must not stop the stream
            pass
        # Find the records that break parsing, one by one, and dead-letter them.
        good = []
        for i, obj in enumerate(objs):
            try:
                self.schema.parse_mappings([obj], offsets[i : i + 1], lane, arrival=arrival)
            except Exception as e:  # noqa: BLE001
                rejects.append(_reject(lane, kept[i], "non_numeric", f"cannot parse the record: {type(e).__name__}: {e}"[:200]))
            else:
                good.append(i)
        keep = np.asarray(good, dtype=np.int64)
        return self.schema.parse_mappings([objs[i] for i in good], offsets[keep], lane, raws=[raws[i] for i in good], arrival=arrival)

    def _load(self, value: bytes | None) -> tuple[Any, str | None, str | None]:
        if not value:
            return None, "empty", "empty message (no value)"
        if len(value) > self.max_bytes:
            return None, "oversized", f"message of {len(value):,} bytes is over kafka.max_message_bytes ({self.max_bytes:,})"
        try:
            return orjson.loads(value), None, None
        except orjson.JSONDecodeError as e:
            if "UTF-8" in str(e):
                return None, "undecodable", "not valid UTF-8"
            try:
                # NaN / Infinity literals (Python's json.dumps writes them): parse them
                # so the reject names the non-finite field.
                return json.loads(value, parse_int=_int), None, None
            except (ValueError, RecursionError):
                return None, "not_json", f"not JSON: {e}"

    def _resolve(self, obj: Any, lane: Lane, offset: int) -> tuple[str | None, str | None]:
        """Fix the schema from the first usable object; (code, reason) when it is not one."""
        if not isinstance(obj, dict):
            return "not_object", f"expected a JSON object, got {_json_type(obj)}"
        r = self.record
        timestamp, label, guess = r.timestamp, r.label, r.guess_roles
        if self._features is not None and guess:
            # Known features are never guessed to be a timestamp or a label.
            free = {str(c).lower(): c for c in obj if c not in self._features}
            timestamp = timestamp or next((free[n] for n in TIMESTAMP_NAMES if n in free), None)
            label = label or next((free[n] for n in LABEL_NAMES if n in free), None)
            guess = False
        base = Schema(features=self._features, key=r.key, timestamp=timestamp, label=label)
        try:
            schema = base.resolve(list(obj), guess=guess)
        except InputError as e:
            return "missing_field", str(e)
        inferred = self._features is None
        if inferred:
            assert schema.features is not None
            excluded = set(r.exclude)
            candidates = [f for f in schema.features if f not in excluded]
            numeric = tuple(f for f in candidates if _is_number(obj[f]))
            bad = next((f for f in numeric if not math.isfinite(obj[f])), None)
            if bad is not None:
                return "non_finite", f"non-finite value {obj[bad]!r} in field '{bad}'"
            if not numeric:
                return "non_numeric", f"no numeric field to infer the features from (fields: {', '.join(map(str, obj))[:200]})"
            schema = replace(schema, features=numeric)
            ignored = [f for f in candidates if f not in numeric]
            log.info(
                "features inferred from the first valid message (%s offset %d), fixed from now on: %s%s",
                lane,
                offset,
                ", ".join(numeric),
                f"; ignored non-numeric fields: {', '.join(ignored)}" if ignored else "",
            )
        log.info(
            "record key: %s; event time: %s%s",
            f"field {schema.key!r}" if schema.key else "the Kafka message key",
            f"field {schema.timestamp!r}" if schema.timestamp else "the Kafka message timestamp",
            f"; label field {schema.label!r} (never a feature)" if schema.label else "",
        )
        self.schema = schema
        if inferred and self.on_features is not None:
            self.on_features(numeric)
        return None, None


def _reject(lane: Lane, m: Message, code: str, reason: str, field: str | None = None) -> KafkaReject:
    return KafkaReject(lane, int(m.offset), code, reason, m.value, field, key=m.key, timestamp_ms=m.timestamp)


def _int(text: str) -> int | float:
    # Python's json reads any integer; one too large for a float is infinite.
    return int(text) if len(text) < 300 else float(text)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(v), "a number")


def _text(key: bytes | None) -> str | None:
    # Detection messages carry the key as text; non-UTF-8 bytes show as \\x escapes.
    return None if key is None else key.decode("utf-8", errors="backslashreplace")
