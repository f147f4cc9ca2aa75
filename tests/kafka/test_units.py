"""The Kafka connectors' parts that need no broker: decoding, delivery bookkeeping,
client options. (The integration tests next to this file need one.)"""

from __future__ import annotations

import doctest
from collections.abc import Callable
from types import SimpleNamespace as Msg
from typing import Any

import numpy as np
import orjson
import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, TopicAuthorizationFailedError
from kafka.future import Future

import streamad.app.signals as signals_module
import streamad.connectors.kafka.decoder as decoder_module
import streamad.connectors.kafka.options as options_module
from streamad.config import KafkaRetrySettings, RecordSettings, load_settings
from streamad.connectors.kafka.decoder import JsonDecoder, KafkaReject
from streamad.connectors.kafka.options import RepeatFilter, client_options
from streamad.connectors.kafka.sink import DeliveryError, DeliveryInterrupted, KafkaDeadLetterSink, KafkaDetectionSink
from streamad.detection import DetectionBatch
from streamad.errors import ConfigError
from streamad.records import REJECT_CODES, Lane
from tests.kafka.streams import MALFORMED, MAX_MESSAGE_BYTES

FAST = KafkaRetrySettings(initial_backoff_seconds=0.001, max_backoff_seconds=0.002)


@pytest.mark.parametrize("module", [decoder_module, options_module, signals_module])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# -- decoding -------------------------------------------------------------------------------


def msg(offset: int, value: Any, key: bytes | None = b"k", timestamp: int = 1_700_000_000_000) -> Msg:
    if value is not None and not isinstance(value, bytes):
        value = orjson.dumps(value)
    return Msg(offset=offset, key=key, value=value, timestamp=timestamp)


def test_every_message_is_a_row_or_a_reject_with_its_code():
    dec = JsonDecoder(RecordSettings(), MAX_MESSAGE_BYTES)
    good = {"flow": 1.0, "pressure": 2, "temp": -1.5, "device": "p1"}
    msgs = [msg(0, good)] + [msg(i + 1, v) for i, (v, _) in enumerate(MALFORMED)] + [msg(99, good, key=None)]
    batch = dec.decode(Lane("t", 3), msgs)
    assert batch.offsets.tolist() == [0, 99]
    assert [r.code for r in batch.rejects] == [code for _, code in MALFORMED]
    assert all(r.code in REJECT_CODES for r in batch.rejects)
    for r, m in zip(batch.rejects, msgs[1:]):
        assert isinstance(r, KafkaReject) and r.raw == m.value and r.key == b"k" and r.lane == Lane("t", 3)
    assert batch.keys.tolist() == ["k", None]
    assert batch.timestamps.tolist() == [1_700_000_000.0, 1_700_000_000.0]
    nan = next(r for r in batch.rejects if r.code == "non_finite")
    assert nan.field == "flow"


def test_a_record_that_breaks_parsing_is_dead_lettered_not_fatal(monkeypatch):
    from streamad.schema import Schema

    dec = JsonDecoder(RecordSettings(features=["a"]), 10_000)
    real = Schema.parse_mappings

    def fussy(self, records, offsets, lane, **kw):
        if any(r.get("a") == 13 for r in records):
            raise RuntimeError("unlucky")
        return real(self, records, offsets, lane, **kw)

    monkeypatch.setattr(Schema, "parse_mappings", fussy)
    b = dec.decode(Lane("t"), [msg(0, {"a": 1}), msg(1, {"a": 13}), msg(2, {"a": 2}, key=b"z")])
    assert b.X.tolist() == [[1.0], [2.0]] and b.keys.tolist() == ["k", "z"]
    assert [(r.offset, r.code) for r in b.rejects] == [(1, "non_numeric")] and "unlucky" in b.rejects[0].reason


def test_features_are_inferred_once_from_the_first_valid_message():
    seen = []
    dec = JsonDecoder(RecordSettings(), 10_000, on_features=seen.append)
    first = dec.decode(Lane("t"), [msg(0, [1, 2]), msg(1, {"a": "x"}), msg(2, {"b": 1, "a": 2.0, "label": 1, "ts": 5, "s": "x"})])
    assert dec.features == ("b", "a") and seen == [("b", "a")]
    assert [r.code for r in first.rejects] == ["not_object", "non_numeric"]
    assert first.labels.tolist() == [1] and first.timestamps.tolist() == [5.0]  # guessed roles, never features
    later = dec.decode(Lane("t"), [msg(3, {"a": 1, "b": 2, "c": 3, "ts": 6})])
    assert later.X.tolist() == [[2.0, 1.0]] and seen == [("b", "a")]


def test_configured_fields_and_checkpoint_features_win():
    dec = JsonDecoder(RecordSettings(features=["y", "x"], key="dev", timestamp="at"), 10_000)  # "y" is not taken for a label
    b = dec.decode(Lane("t"), [msg(0, {"x": 1, "y": 2, "dev": "d1", "at": 10}), msg(1, {"x": 1, "y": 2, "at": 11})])
    assert b.X.tolist() == [[2.0, 1.0]] * 2 and b.keys.tolist() == ["d1", None] and b.timestamps.tolist() == [10.0, 11.0]
    fixed = JsonDecoder(RecordSettings(), 10_000)
    fixed.fix(["p", "q"])
    assert fixed.decode(Lane("t"), [msg(0, {"q": 1, "p": 2, "r": 3})]).X.tolist() == [[2.0, 1.0]]


def test_a_non_utf8_key_does_not_stop_anything():
    dec = JsonDecoder(RecordSettings(), 10_000)
    b = dec.decode(Lane("t"), [msg(0, {"a": 1}, key=b"\xff\x01")])
    assert b.keys.tolist() == ["\\xff\x01"]


# -- delivery ---------------------------------------------------------------------------------


class FakeProducer:
    """Answers each send as the script says: "ok", an exception to fail the future with
    at flush, or ("raise", exception) to raise from send()."""

    def __init__(self, script: Callable[[int, tuple], Any]) -> None:
        self.script = script
        self.config = {"max_request_size": 1000}
        self.calls: list[tuple] = []
        self.acked: list[tuple] = []
        self._pending: list[tuple[Future, Any, tuple]] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None) -> Future:
        call = (topic, value, key, tuple(headers or ()))
        outcome = self.script(len(self.calls), call)
        self.calls.append(call)
        if isinstance(outcome, tuple) and outcome[0] == "raise":
            raise outcome[1]
        f = Future()
        self._pending.append((f, outcome, call))
        return f

    def flush(self, timeout: float | None = None) -> None:
        pending, self._pending = self._pending, []
        for f, outcome, call in pending:
            if outcome == "ok":
                self.acked.append(call)
                f.success(call)
            else:
                f.failure(outcome)


def detections(n: int) -> DetectionBatch:
    return DetectionBatch(
        lane=Lane("in", 1),
        offsets=np.arange(n),
        keys=np.array([f"k{i}" for i in range(n)], dtype=object),
        timestamps=None,
        scores=np.ones(n),
        threshold=2.0,
        is_anomaly=np.zeros(n, dtype=bool),
        tail_probability=np.ones(n),
        top_features=[[] for _ in range(n)],
        model="m",
        model_version="1",
    )


def test_flush_resends_what_the_broker_did_not_acknowledge_until_it_does():
    # The broker is away for the first 7 sends (some fail at send, some time out later).
    def script(i: int, call: tuple) -> Any:
        if i < 3:
            return ("raise", KafkaTimeoutError("metadata"))
        return KafkaTimeoutError("expired") if i < 7 else "ok"

    p = FakeProducer(script)
    sink = KafkaDetectionSink(p, "out", FAST)
    sink.write(detections(5))
    sink.flush()
    ids = sorted(orjson.loads(v)["id"] for _, v, _, _ in p.acked)
    assert ids == [f"in/1/{i}" for i in range(5)]
    assert [k for _, _, k, _ in p.acked if k == b"k0"] == [b"k0"]
    sink.flush()  # nothing outstanding: returns at once
    assert len(p.acked) == 5


def test_a_refused_send_stops_the_commit():
    p = FakeProducer(lambda i, c: TopicAuthorizationFailedError("no") if i == 1 else "ok")
    sink = KafkaDetectionSink(p, "out", FAST)
    sink.write(detections(3))
    with pytest.raises(DeliveryError, match="refused 1 detections for topic 'out'"):
        sink.flush()


def test_a_stop_during_retries_interrupts_the_flush():
    stop = {"now": False}

    def script(i: int, call: tuple) -> Any:
        stop["now"] = i >= 4
        return KafkaTimeoutError("away")

    sink = KafkaDetectionSink(FakeProducer(script), "out", FAST, should_stop=lambda: stop["now"])
    sink.write(detections(2))
    with pytest.raises(DeliveryInterrupted):
        sink.flush()


def test_dead_letters_keep_original_bytes_and_say_why():
    p = FakeProducer(lambda i, c: "ok")
    sink = KafkaDeadLetterSink(p, "dlq", FAST)
    r = KafkaReject(Lane("in", 2), 41, "not_json", "not JSON: x", b"\x00abc", None, key=b"k", timestamp_ms=5)
    sink.write([r])
    sink.flush()
    (topic, value, key, headers), = p.acked
    h = dict(headers)
    assert (topic, value, key) == ("dlq", b"\x00abc", b"k")
    assert h["streamad.error.code"] == b"not_json" and h["streamad.source.topic"] == b"in"
    assert h["streamad.source.partition"] == b"2" and h["streamad.source.offset"] == b"41" and h["streamad.source.timestamp"] == b"5"


def test_a_dead_letter_too_large_for_the_broker_is_cut_not_fatal():
    def script(i: int, call: tuple) -> Any:
        return MessageSizeTooLargeError("too big") if len(call[1]) > 100 else "ok"

    p = FakeProducer(script)
    sink = KafkaDeadLetterSink(p, "dlq", FAST)
    assert sink.max_bytes == 500  # half the fake producer's max_request_size is left for headers
    sink = KafkaDeadLetterSink(p, "dlq", FAST, max_bytes=900)
    sink.write([KafkaReject(Lane("in"), 1, "oversized", "big", b"x" * 5000)])
    sink.flush()
    (_, value, _, headers), = p.acked
    assert len(value) <= 100 and dict(headers)["streamad.raw.truncated"] == b"5000"


# -- settings and client options --------------------------------------------------------------


def kafka_settings(**kafka: Any) -> Any:
    base = {"bootstrap_servers": "h:9092", "topics": "in", "group_id": "g", "output_topic": "out", "dead_letter_topic": "dlq"}
    return load_settings(overrides={"kafka": {**base, **kafka}}, env={}).kafka


def test_client_options_pass_through_to_the_right_client():
    k = kafka_settings(
        client={"security.protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_password": 1234},
        consumer={"fetch_max_wait_ms": 50},
        producer={"linger_ms": 20, "compression_type": "gzip"},
    )
    consumer, producer = client_options(k)
    for opts in (consumer, producer):
        assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_plain_password"] == "1234"
    assert consumer["fetch_max_wait_ms"] == 50 and "fetch_max_wait_ms" not in producer
    assert producer["linger_ms"] == 20 and producer["acks"] == "all"
    assert consumer["enable_auto_commit"] is False and consumer["group_id"] == "g"


@pytest.mark.parametrize(
    "kafka, message",
    [
        ({"client": {"sasl_mechansm": "PLAIN"}}, "kafka.client.sasl_mechansm: not a kafka-python client option (did you mean 'sasl_mechanism'?)"),
        ({"consumer": {"linger_ms": 5}}, "kafka.consumer.linger_ms: not a kafka-python consumer option"),
    ],
)
def test_unknown_client_options_are_named(kafka, message):
    with pytest.raises(ConfigError) as e:
        client_options(kafka_settings(**kafka))
    assert message in str(e.value)


def test_repeated_client_log_lines_are_thinned():
    import logging

    f = RepeatFilter(every=60)
    rec = lambda name, msg: logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)  # noqa: E731
    assert f.filter(rec("kafka.net", "Connection failed: %s"))
    assert not f.filter(rec("kafka.net", "Connection failed: %s"))
    assert f.filter(rec("kafka.net", "other"))
    assert f.filter(rec("streamad.kafka", "Connection failed: %s")) and f.filter(rec("streamad.kafka", "Connection failed: %s"))
    # kafka-python 3 formats some messages itself: those differing only in numbers repeat.
    slow = "Task <kafka.net.selector.Task object at 0x{:x}> ran for {:.3f}s (>0.100s threshold)."
    assert f.filter(rec("kafka.net.selector", slow.format(0x7F898DC64DD0, 0.122)))
    assert not f.filter(rec("kafka.net.selector", slow.format(0x7F898CB03810, 0.162)))
    assert f.filter(rec("kafka.net.selector", "Task left RUNNING after step"))


# -- lag and offset-reset metrics ----------------------------------------------------------------


def test_lag_gauge_holds_only_the_partitions_last_reported():
    import shutil
    import subprocess

    from prometheus_client import CollectorRegistry, generate_latest

    from streamad.metrics import MetricsObserver

    reported = [{Lane("t", 0): 5, Lane("t", 1): 3}]
    reg = CollectorRegistry()
    m = MetricsObserver(registry=reg, lag=lambda: reported[0], lag_interval=0)

    def lag() -> dict[str, float]:
        return {s.labels["partition"]: s.value for fam in reg.collect() for s in fam.samples if s.name == "streamad_consumer_lag_records"}

    m.poll_lag(force=True)
    assert lag() == {"0": 5.0, "1": 3.0}
    reported[0] = {Lane("t", 1): 0, Lane("t", 2): 7}  # partition 0 moved away, 2 arrived
    m.poll_lag(force=True)
    assert lag() == {"1": 0.0, "2": 7.0}
    m.on_offset_reset(Lane("t", 2), "beyond_end")
    assert reg.get_sample_value("streamad_offset_resets_total", {"stream": "t", "partition": "2", "reason": "beyond_end"}) == 1.0
    text = generate_latest(reg).decode()
    assert "HELP streamad_consumer_lag_records Records not yet done" in text and "high-water mark" in text
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_a_producer_the_broker_forgot_is_replaced_for_every_sink():
    """After a broker restart without its data: detections fail with UnknownProducerId,
    dead letters with whatever the aborted producer says; a new producer takes both."""
    from kafka.errors import KafkaError, UnknownProducerIdError

    from streamad.connectors.kafka.sink import Producer

    old = FakeProducer(lambda i, c: UnknownProducerIdError() if c[0] == "out" else KafkaError("aborted"))
    new = FakeProducer(lambda i, c: "ok")
    made = []
    producer = Producer(old, lambda: made.append(new) or new)
    detections_sink = KafkaDetectionSink(producer, "out", FAST)
    dead = KafkaDeadLetterSink(producer, "dlq", FAST)
    detections_sink.write(detections(3))
    dead.write([KafkaReject(Lane("in", 1), 7, "not_json", "not JSON", b"x")])
    detections_sink.flush()
    dead.flush()
    assert len(made) == 1
    assert sorted(orjson.loads(v)["id"] for t, v, _, _ in new.acked if t == "out") == [f"in/1/{i}" for i in range(3)]
    assert [v for t, v, _, _ in new.acked if t == "dlq"] == [b"x"]
