"""Test streams for the Kafka tests: sensor-like JSON records with planted anomalies,
and malformed messages of every kind with the reject code each must get."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

# (value, expected reject code); the oversized one is over the tests' max_message_bytes.
MAX_MESSAGE_BYTES = 4096
MALFORMED: list[tuple[bytes | None, str]] = [
    (b"this is not json", "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (b'{"flow": 1.0, "pressure": 2.0}', "missing_field"),
    (b'{"flow": "high", "pressure": 2.0, "temp": 1.0}', "non_numeric"),
    (b'{"flow": NaN, "pressure": 2.0, "temp": 1.0}', "non_finite"),
    (b'{"flow": 1' + b"0" * 400 + b', "pressure": 2.0, "temp": 1.0}', "non_finite"),  # an integer no float holds
    (b'{"flow": 1.0, "pressure": null, "temp": 1.0}', "missing_field"),
    (b'{"flow": 1.0, "pressure": 2.0, "temp": 1.0, "pad": "' + b"x" * (2 * MAX_MESSAGE_BYTES) + b'"}', "oversized"),
    (b"\xff\xfe\x00garbage", "undecodable"),
    (None, "empty"),
]


def sensor_values(n: int, seed: int, anomalies: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Three correlated sensors and a text field; planted records get a large spike."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    X = np.hstack([base + 0.3 * rng.normal(size=(n, 1)), 2 * base + 0.3 * rng.normal(size=(n, 1)), 0.5 * rng.normal(size=(n, 1))])
    for i in anomalies:
        X[i] += np.array([0.0, 12.0, 6.0])
    return [{"device": f"pump-{i % 7}", "flow": float(a), "pressure": float(b), "temp": float(c)} for i, (a, b, c) in enumerate(X)]


def messages(n: int, seed: int, partitions: int, anomalies: Iterable[int] = (), malformed_every: int = 0) -> list[tuple[bytes | None, bytes | None, int | None]]:
    """(key, value, partition) triples: valid records round-robin over partitions, and
    every ``malformed_every``-th record replaced by the next malformed example."""
    out: list[tuple[bytes | None, bytes | None, int | None]] = []
    bad = 0
    for i, rec in enumerate(sensor_values(n, seed, anomalies)):
        key = rec["device"].encode()
        if malformed_every and i % malformed_every == malformed_every - 1:
            value, _ = MALFORMED[bad % len(MALFORMED)]
            bad += 1
        else:
            value = orjson.dumps(rec)
        out.append((key, value, i % partitions))
    return out


def expected_code(value: bytes | None) -> str | None:
    for v, code in MALFORMED:
        if v == value:
            return code
    return None


def detections_by_offset(msgs: list[Any]) -> tuple[dict[tuple[int, int], list[dict[str, Any]]], Counter]:
    """Detection messages by the (partition, offset) of their input, and how many per id."""
    by: dict[tuple[int, int], list[dict[str, Any]]] = {}
    ids: Counter = Counter()
    for m in msgs:
        d = orjson.loads(m.value)
        src = d["source"]
        by.setdefault((src["partition"], src["offset"]), []).append(d)
        ids[d["id"]] += 1
    return by, ids


def dead_letters_by_offset(msgs: list[Any]) -> dict[tuple[int, int], list[Any]]:
    by: dict[tuple[int, int], list[Any]] = {}
    for m in msgs:
        h = dict(m.headers)
        by.setdefault((int(h["streamad.source.partition"]), int(h["streamad.source.offset"])), []).append(m)
    return by
