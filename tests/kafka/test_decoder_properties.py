"""The Kafka decoder under random input (no broker): it never raises, every message
ends as a row or a reject (the counts reconcile), a valid message is never lost, and
a malformed message gets the same dead-letter code, reason and field whatever the
worker has seen before it."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace as Msg
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamad.config import RecordSettings
from streamad.connectors.kafka.decoder import JsonDecoder
from streamad.records import REJECT_CODES, Lane
from tests.kafka.streams import MALFORMED, MAX_MESSAGE_BYTES

LANE = Lane("sensors", 0)
FEATURES = ("flow", "pressure", "temp")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
valid_record = st.fixed_dictionaries({"device": st.text(max_size=8), "flow": finite, "pressure": finite, "temp": finite})
json_value = st.recursive(
    st.none() | st.booleans() | finite | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
keys = st.none() | st.binary(max_size=8)
timestamps = st.integers(min_value=-2, max_value=2**53)


@st.composite
def mutated(draw: Any) -> bytes | None:
    """A valid record's JSON, damaged: bytes flipped, inserted, deleted or cut, or a
    field removed, renamed, added or given any JSON value (NaN and 400-digit integers
    included)."""
    record = dict(draw(valid_record))
    how = draw(st.sampled_from(["bytes", "cut", "drop", "rename", "add", "value", "literal", "wrap", "none"]))
    if how == "drop":
        record.pop(draw(st.sampled_from(sorted(record))))
    elif how == "rename":
        old = draw(st.sampled_from(sorted(record)))
        record[draw(st.text(max_size=6))] = record.pop(old)
    elif how == "add":
        record[draw(st.text(max_size=6))] = draw(json_value)
    elif how == "value":
        record[draw(st.sampled_from(sorted(record)))] = draw(json_value)
    elif how == "wrap":
        return _dumps([record])
    elif how == "none":
        return draw(st.sampled_from([None, b""]))
    data = _dumps(record)
    if how == "literal":
        field = draw(st.sampled_from(FEATURES)).encode()
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * 400, b"null", b'"high"', b"true", b"[]"]))
        start = data.index(b'"' + field + b'":') + len(field) + 3
        stop = start
        while data[stop : stop + 1] not in (b",", b"}"):
            stop += 1
        return data[:start] + literal + data[stop:]
    if how == "bytes":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, max(0, len(data) - 1)))
            op = draw(st.sampled_from(["flip", "insert", "delete"]))
            byte = bytes([draw(st.integers(0, 255))])
            data = data[:i] + byte + data[i + 1 :] if op == "flip" else data[:i] + byte + data[i:] if op == "insert" else data[:i] + data[i + 1 :]
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _dumps(value: Any) -> bytes:
    # Python's json: integers of any size (orjson stops at 64 bits).
    return json.dumps(value, separators=(",", ":")).encode()


any_message = st.one_of(st.binary(max_size=64), mutated(), valid_record.map(orjson.dumps), st.sampled_from([v for v, _ in MALFORMED]))


def as_messages(values: list[bytes | None], keys_: list[bytes | None] | None = None, start: int = 0, ts: list[int] | None = None) -> list[Msg]:
    return [
        Msg(offset=start + i, key=(keys_[i] if keys_ else b"k"), value=v, timestamp=(ts[i] if ts else 1_700_000_000_000))
        for i, v in enumerate(values)
    ]


def reconciles(batch: Any, messages: list[Msg]) -> None:
    rows = [int(o) for o in batch.offsets]
    rejected = [r.offset for r in batch.rejects]
    assert len(rows) + len(rejected) == len(messages)
    assert sorted(rows + rejected) == [m.offset for m in messages]
    by_offset = {m.offset: m for m in messages}
    for r in batch.rejects:
        assert r.code in REJECT_CODES and r.reason
        assert r.raw == by_offset[r.offset].value and r.key == by_offset[r.offset].key


def judged(dec: JsonDecoder, value: bytes | None, offset: int = 10_000) -> tuple[Any, ...]:
    """What the decoder makes of one message: its row, or its (code, reason, field)."""
    batch = dec.decode(LANE, as_messages([value], start=offset))
    if len(batch):
        return row(dec, batch, 0)
    (r,) = batch.rejects
    return (r.code, r.reason, r.field)


def row(dec: JsonDecoder, batch: Any, i: int) -> tuple[Any, ...]:
    """A batch's i-th row by feature name (the column order follows the first record)."""
    assert dec.features is not None
    return ("row", dict(zip(dec.features, batch.X[i].tolist())))


def decoder(features: bool = False, guess: bool = True) -> JsonDecoder:
    return JsonDecoder(RecordSettings(features=list(FEATURES) if features else None, guess_roles=guess), MAX_MESSAGE_BYTES)


def warmed(features: bool = False, guess: bool = True) -> JsonDecoder:
    """A decoder that has seen valid messages (its schema is fixed)."""
    dec = decoder(features, guess)
    dec.decode(LANE, as_messages([orjson.dumps({"device": "p", "flow": 1.0, "pressure": 2.0, "temp": 3.0})] * 3))
    assert dec.features == FEATURES
    return dec


# -- never raises, always reconciles ---------------------------------------------------------


@SETTINGS
@given(st.lists(any_message, max_size=12), st.lists(keys, min_size=12, max_size=12), st.lists(timestamps, min_size=12, max_size=12), st.booleans(), st.booleans())
def test_any_batch_reconciles(values, keys_, ts, features, warm):
    dec = warmed(features) if warm else decoder(features)
    messages = as_messages(values, keys_[: len(values)], ts=ts[: len(values)])
    batch = dec.decode(LANE, messages)
    reconciles(batch, messages)
    if len(batch):
        assert batch.X.shape == (len(batch), len(FEATURES)) or dec.features != FEATURES
        assert all(math.isfinite(x) for x in batch.X.ravel())


# -- a valid message is never lost ----------------------------------------------------------


@SETTINGS
@given(st.lists(valid_record, min_size=1, max_size=8), st.lists(any_message, max_size=8), st.randoms(use_true_random=False), st.booleans())
def test_valid_messages_become_rows_with_their_values(records, junk, rnd, features):
    # Valid messages outnumber the rest, so an inferred schema is theirs too.
    junk = junk[: max(0, len(records) - 1)]
    values = [orjson.dumps(r) for r in records] + junk
    order = list(range(len(values)))
    rnd.shuffle(order)
    messages = as_messages([values[i] for i in order])
    dec = decoder(features)
    batch = dec.decode(LANE, messages)
    reconciles(batch, messages)
    assert dec.features is not None and set(dec.features) == set(FEATURES)
    rows = {int(o): tuple(x) for o, x in zip(batch.offsets, batch.X)}
    for pos, i in enumerate(order):
        if i < len(records):
            assert rows[pos] == tuple(records[i][f] for f in dec.features)


# -- the same bytes get the same verdict, whatever came before ----------------------------------


@pytest.mark.parametrize("value, code", MALFORMED, ids=[c for _, c in MALFORMED])
def test_malformed_examples_are_judged_the_same_before_and_after_valid_messages(value, code):
    # Configured features (and no role guessed from a field name): always the same.
    assert judged(decoder(features=True, guess=False), value) == judged(warmed(features=True, guess=False), value)
    assert judged(warmed(features=True), value)[0] == code
    # Inferred features, the message in a first batch with valid ones: the same.
    good = orjson.dumps({"device": "p", "flow": 1.0, "pressure": 2.0, "temp": 3.0})
    dec = decoder()
    batch = dec.decode(LANE, as_messages([value, good, good]))
    (first,) = [r for r in batch.rejects if r.offset == 0]
    assert (first.code, first.reason, first.field) == judged(warmed(), value)


# Alone, a record that lacks a field or has text in a numeric field cannot be told
# from a valid record of another shape: a worker inferring its features takes it
# for one (docs/kafka.md). Every other kind tells by itself.
AMBIGUOUS_ALONE = {b'{"flow": 1.0, "pressure": 2.0}', b'{"flow": "high", "pressure": 2.0, "temp": 1.0}'}


@pytest.mark.parametrize("value", [v for v, _ in MALFORMED if v not in AMBIGUOUS_ALONE] + [b'{"device": "p"}', b'{"flow": "x", "s": "y"}', b"{}"])
def test_malformed_messages_that_tell_by_themselves_are_judged_the_same_alone(value):
    """Even as the very first message a worker sees, with features to infer: the
    classes a message shows by itself (not JSON, not an object, a null or non-finite
    value, no number at all, ...) get the code, reason and field the fixed schema gives."""
    assert judged(decoder(), value) == judged(warmed(), value)


@SETTINGS
@given(mutated(), st.booleans())
def test_mutated_messages_are_judged_the_same_before_and_after_valid_messages(value, features):
    good = orjson.dumps({"device": "p", "flow": 1.0, "pressure": 2.0, "temp": 3.0})
    after = judged(warmed(features), value)
    # Before: the message is the first thing the worker sees, in a batch with valid ones.
    dec = decoder(features)
    batch = dec.decode(LANE, as_messages([value, good, good]))
    if 0 in set(int(o) for o in batch.offsets):
        before = row(dec, batch, list(batch.offsets).index(0))
    else:
        (r,) = [r for r in batch.rejects if r.offset == 0]
        before = (r.code, r.reason, r.field)
    assert before == after
    if features:
        # Every role configured (features; no timestamp or label guessed from a field
        # name): alone, too.
        assert judged(decoder(features=True, guess=False), value) == judged(warmed(features=True, guess=False), value)
