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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from streamad.config import RecordSettings
from streamad.records import Batch, Lane, Reject
from streamad.schema import GROUND_TRUTH_NAMES, LABEL_NAMES, TIMESTAMP_NAMES, Schema

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
    are inferred once, from the first batch that holds a usable object: an object
    whose candidate fields (all but the key, timestamp, label and excluded fields,
    and with ``guess_roles`` fields whose names say they are a timestamp or ground
    truth) hold finite numbers or text, at least one a number. The features are the
    numeric fields of the most common shape (set of numeric fields) among the batch's
    usable objects, the first of those shapes on a tie, in the order of its first
    object: a malformed message in a batch of good ones does not decide them. After
    that they never change.

    Every message is judged by the same rules whatever came before it: the checks
    that need no schema (empty, oversized, not UTF-8, not JSON, not an object; and,
    when the features are inferred, an object with no number in any candidate field)
    come first, then the fixed schema's. Only a batch without a single usable object
    is judged without a schema: the first null (``missing_field``) or non-finite
    (``non_finite``) value is named, as the schema would name it. Without a
    ``record.key`` field the message's Kafka key is the record key; without a
    timestamp field its Kafka timestamp is the event time.
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
        # Features inferred (now or by the worker that wrote a checkpoint): an object
        # without any number can be refused before the schema is known, and is then
        # refused the same way after.
        self._inferring = not record.features
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
            if code is None:
                code, reason = self._precheck(obj)
            if code is not None:
                rejects.append(_reject(lane, m, code, str(reason)))
                continue
            objs.append(obj)
            kept.append(m)
        if self.schema is None and objs:
            self._fix_schema(objs, kept, lane)
        if self.schema is None:
            # Not one usable object: judge each without a schema.
            for obj, m in zip(objs, kept):
                code, reason, fld = self._judge_without_schema(obj)
                rejects.append(_reject(lane, m, code, reason, fld))
            rejects.sort(key=lambda r: r.offset)
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

    # -- rules that need no schema ----------------------------------------------------------

    def _precheck(self, obj: Any) -> tuple[str | None, str | None]:
        if not isinstance(obj, dict):
            return "not_object", f"expected a JSON object, got {_json_type(obj)}"
        if self._inferring and not self._has_number(obj):
            return "non_numeric", f"no number in any field (fields: {', '.join(map(str, obj))[:200]})"
        return None, None

    def _has_number(self, obj: Mapping[str, Any]) -> bool:
        """Whether a field that can be a feature holds a number."""
        # The inferred features are candidates: a number among them settles it.
        if self.schema is not None and any(_is_number(obj.get(f)) for f in self.schema.features or ()):
            return True
        return any(_is_number(obj[f]) for f in self._candidates(obj))

    def _roles(self, obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(timestamp, label) fields of an object: configured, else guessed by name."""
        if self.schema is not None:
            return self.schema.timestamp, self.schema.label
        r = self.record
        timestamp, label = r.timestamp, r.label
        if r.guess_roles:
            named = set(self._features or ()) | {r.key} | set(r.exclude)
            free = {str(c).lower(): c for c in obj if c not in named}
            timestamp = timestamp or next((free[n] for n in TIMESTAMP_NAMES if n in free), None)
            label = label or next((free[n] for n in LABEL_NAMES if n in free), None)
        return timestamp, label

    def _candidates(self, obj: Mapping[str, Any]) -> list[str]:
        """Fields of an object that can be features."""
        if self.schema is not None and not self._inferring:
            return [f for f in self.schema.features or () if f in obj]
        r = self.record
        timestamp, label = self._roles(obj)
        skip = {r.key, timestamp, label, *r.exclude}
        truth = set(GROUND_TRUTH_NAMES) if r.guess_roles else set()
        return [c for c in obj if c not in skip and str(c).lower() not in truth]

    def _usable(self, obj: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The numeric fields of an object that can fix the schema, else None."""
        numeric = []
        for f in self._candidates(obj):
            v = obj[f]
            if v is None:
                return None
            if _is_number(v):
                if not math.isfinite(v):
                    return None
                numeric.append(f)
            elif isinstance(v, (dict, list, bool)):
                return None
        return tuple(numeric) or None

    def _judge_without_schema(self, obj: Mapping[str, Any]) -> tuple[str, str, str | None]:
        for f in self._candidates(obj):
            v = obj[f]
            if v is None:
                return "missing_field", f"missing value (null) in field '{f}'", f
            if _is_number(v) and not math.isfinite(v):
                return "non_finite", f"non-finite value {float(v)!r} in field '{f}'", f
        # An object with numbers but also a nested value or a boolean: the schema would
        # take the numbers; without one, nothing can be said about the rest.
        return "non_numeric", f"no schema can be inferred from this record (fields: {', '.join(map(str, obj))[:200]})", None

    # -- fixing the schema -------------------------------------------------------------------

    def _fix_schema(self, objs: list[Any], kept: list[Message], lane: Lane) -> None:
        r = self.record
        if self._features is not None:
            numeric, share = self._features, ""
            members = [o for o in objs if all(f in o for f in numeric)] or objs
        else:
            usable = [self._usable(o) for o in objs]
            # A shape is a set of fields: producers need not keep the fields' order.
            shapes = [None if u is None else frozenset(u) for u in usable]
            counts = Counter(s for s in shapes if s is not None)
            if not counts:
                return
            best = max(counts.values())
            ref = next(i for i, s in enumerate(shapes) if s is not None and counts[s] == best)
            found = usable[ref]
            assert found is not None
            numeric = found
            share = f"{best} of its {len(objs)} objects have this shape; "
            members = [o for o, shape in zip(objs, shapes) if shape == shapes[ref]]
        # A timestamp or label is guessed from the fields every such object has, so an
        # odd field of one object does not become a role.
        first = members[0]
        timestamp, label = self._roles({c: first[c] for c in first if all(c in o for o in members)})
        ref = next(i for i, o in enumerate(objs) if o is first)
        self.schema = Schema(features=numeric, key=r.key, timestamp=timestamp, label=label)
        if share:
            ignored = [f for f in self._candidates(objs[ref]) if f not in numeric]
            log.info(
                "features inferred from the first batch of %s (%sthe first at offset %d), fixed from now on: %s%s",
                lane,
                share,
                kept[ref].offset,
                ", ".join(numeric),
                f"; ignored non-numeric fields: {', '.join(ignored)}" if ignored else "",
            )
        log.info(
            "record key: %s; event time: %s%s",
            f"field {r.key!r}" if r.key else "the Kafka message key",
            f"field {timestamp!r}" if timestamp else "the Kafka message timestamp",
            f"; label field {label!r} (never a feature)" if label else "",
        )
        if share and self.on_features is not None:
            self.on_features(tuple(numeric))


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
