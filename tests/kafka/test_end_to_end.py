"""Records in, detections and dead letters out, through a real broker and a real worker process."""

from __future__ import annotations

import orjson
import pytest

from tests.kafka.conftest import Worker, committed, create_topic, produce, read_topic, unique, wait_for, worker_config
from tests.kafka.streams import dead_letters_by_offset, detections_by_offset, expected_code, messages, sensor_values

pytestmark = pytest.mark.kafka


def test_records_come_back_as_detections_and_bad_ones_as_dead_letters(bootstrap, tmp_path, workers):
    parts = 2
    topic = create_topic(bootstrap, parts)
    group = unique("g")
    n = 6000
    # After the warm-ups in each partition (round-robin: offset = index // 2): the
    # detector's scores count from 1024 records, the threshold alarms 500 later.
    planted = [3401, 3800, 4403, 5200, 5821]
    sent = produce(bootstrap, topic, messages(n, seed=1, partitions=parts, anomalies=planted, malformed_every=97))
    bad = {(p, o): (k, v) for p, o, k, v in sent if expected_code(v)}
    good = {(p, o): (k, v) for p, o, k, v in sent if not expected_code(v)}
    assert len(bad) >= 30 and len(good) + len(bad) == n
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(parts)}

    cfg = worker_config(tmp_path / "streamad.yaml", bootstrap, topic, group, tmp_path / "state")
    w = Worker(cfg, tmp_path / "worker.log")
    workers.append(w)
    wait_for(lambda: committed(bootstrap, group, topic, parts) == end, 90, "every input offset to be committed")
    assert w.stop() == 0
    log = w.text()
    assert "features inferred from the first batch of" in log and "flow, pressure, temp; ignored non-numeric fields: device" in log
    # A clean stop says so, and nothing else: no traceback, no ERROR (kafka-python's
    # cancelled requests included).
    assert "stopped after" in log and "Traceback" not in log and " ERROR " not in log, log[-3000:]

    out = read_topic(bootstrap, f"{topic}.detections", lambda m: len(m) >= len(good))
    dlq = read_topic(bootstrap, f"{topic}.dead-letter", lambda m: len(m) >= len(bad))
    by_offset, ids = detections_by_offset(out)
    dead = dead_letters_by_offset(dlq)

    # Every input offset is accounted for: scored or dead-lettered, never both.
    assert set(by_offset) == set(good)
    assert set(dead) == set(bad)
    assert max(ids.values()) == 1, "a graceful run sends each detection once"

    # Detection messages follow the contract and are keyed by the input key.
    det_by_id = {orjson.loads(m.value)["id"]: m for m in out}
    for (p, o), (key, _) in list(good.items())[:200]:
        d = by_offset[(p, o)][0]
        assert d["id"] == f"{topic}/{p}/{o}"
        assert d["key"] == key.decode() and det_by_id[d["id"]].key == key
        assert d["source"] == {"stream": topic, "partition": p, "offset": o}
        assert {"score", "threshold", "is_anomaly", "tail_probability", "features", "model", "event_time"} <= set(d)

    # The planted anomalies are among the alarms, attributed to the spiked sensors.
    planted_offsets = {(p, o) for i, (p, o, _, _) in enumerate(sent) if i in planted}
    for po in planted_offsets:
        d = by_offset[po][0]
        assert d["is_anomaly"], d
        assert d["features"][0]["name"] in ("pressure", "temp")
    alarms = sum(d[0]["is_anomaly"] for d in by_offset.values())
    assert alarms < 0.05 * len(good), "alarms are rare on normal data"

    # Dead letters carry the original bytes, the key, the coordinates and the reason.
    for (p, o), (key, value) in bad.items():
        (m,) = dead[(p, o)]
        h = dict(m.headers)
        assert h["streamad.error.code"].decode() == expected_code(value)
        assert h["streamad.error.reason"]
        assert h["streamad.source.topic"].decode() == topic
        assert m.value == value and m.key == key


def test_event_times_written_as_text_in_the_records_are_the_detections_times(bootstrap, tmp_path, workers):
    """A producer that writes its event times as ISO 8601 text (as most do), in one
    layout or in several: each detection carries its record's time, and a record whose
    time is no time is dead-lettered as such (the rest of its batch is not)."""
    import datetime as dt

    topic = create_topic(bootstrap, 1)
    group = unique("g")
    start = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)
    layouts = [
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        lambda t: t.isoformat(),  # +00:00, and no decimals when they are zero
        lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=-5))).strftime("%Y-%m-%d %H:%M:%S%z"),
        lambda t: t.strftime("%m/%d/%Y %I:%M:%S %p"),
    ]
    recs, want, bad = [], {}, set()
    for i, rec in enumerate(sensor_values(900, seed=3)):
        when = start + dt.timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000 if i % 4 else 0)
        layout = layouts[0] if i < 300 else layouts[i % len(layouts)]  # one layout, then mixed
        rec["timestamp"] = "half past noon" if i % 101 == 100 else layout(when)
        if i % 101 == 100:
            bad.add(i)
        else:
            want[i] = (when if layout in layouts[:2] else when.replace(microsecond=0)).timestamp()  # the last two write whole seconds
        recs.append((rec["device"].encode(), orjson.dumps(rec), 0))
    sent = produce(bootstrap, topic, recs)
    cfg = worker_config(tmp_path / "streamad.yaml", bootstrap, topic, group, tmp_path / "state")
    w = Worker(cfg, tmp_path / "worker.log")
    workers.append(w)
    wait_for(lambda: committed(bootstrap, group, topic, 1) == {0: len(sent)}, 90, "every input offset to be committed")
    assert w.stop() == 0
    assert "event time: field 'timestamp'" in w.text() and "Traceback" not in w.text()
    out = read_topic(bootstrap, f"{topic}.detections", lambda m: len(m) >= len(want))
    dlq = read_topic(bootstrap, f"{topic}.dead-letter", lambda m: len(m) >= len(bad))
    by_offset, _ = detections_by_offset(out)
    dead = dead_letters_by_offset(dlq)
    offset_of = {i: o for i, (_, o, _, _) in enumerate(sent)}
    assert {po[1] for po in dead} == {offset_of[i] for i in bad}
    assert all(dict(m.headers)["streamad.error.code"] == b"bad_timestamp" for (m,) in dead.values())
    assert {po[1] for po in by_offset} == {offset_of[i] for i in want}
    for i, t in want.items():
        d = by_offset[(0, offset_of[i])][0]
        assert abs(d["timestamp"] - t) < 1e-6, (i, recs[i][1], d["timestamp"], t)
        assert dt.datetime.fromisoformat(d["event_time"]) == dt.datetime.fromtimestamp(d["timestamp"], dt.timezone.utc)
