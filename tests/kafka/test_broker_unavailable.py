"""A broker that is not there: at start (wait, retry with backoff, then process
everything) and mid-run (no crash, no loss)."""

from __future__ import annotations

import re
import signal
import time

import pytest

from streamad.records import Lane
from streamad.state import StateStore
from tests.kafka.conftest import (
    EXTERNAL,
    TopicReader,
    Worker,
    committed,
    create_topic,
    free_port,
    produce,
    read_topic,
    unique,
    wait_for,
    worker_config,
)
from tests.kafka.streams import detections_by_offset, expected_code, messages

pytestmark = pytest.mark.kafka


def test_waits_for_an_absent_broker_then_processes_everything(bootstrap, tmp_path, workers, tansu_factory, proxy_factory):
    port = free_port()
    topic, group = unique("in"), unique("g")
    cfg = worker_config(tmp_path / "streamad.yaml", f"127.0.0.1:{port}", topic, group, tmp_path / "state")
    w = Worker(cfg, tmp_path / "worker.log")
    workers.append(w)
    w.wait_log(rf"cannot reach the brokers at 127\.0\.0\.1:{port} for the consumer .*; retrying in [\d.]+ s \(attempt 3,", timeout=60)
    assert w.alive()

    # The broker appears: a Tansu on that port, or (against an external broker) a
    # forwarder from that port to it. The worker is paused until the topic exists:
    # Tansu creates any topic a metadata request names (with 4 partitions), whatever
    # the consumer asks, so a reconnect could otherwise make it first.
    w.proc.send_signal(signal.SIGSTOP)
    try:
        if EXTERNAL:
            proxy_factory(bootstrap, port).start()
            broker = bootstrap
        else:
            broker = tansu_factory(port=port).bootstrap
        create_topic(broker, 2, name=topic)
    finally:
        w.proc.send_signal(signal.SIGCONT)
    sent = produce(broker, topic, messages(2000, seed=4, partitions=2, malformed_every=101))
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(2)}
    wait_for(lambda: committed(broker, group, topic, 2) == end, 60, "every offset to be committed once the broker is up")
    assert w.stop() == 0
    assert "consumer connected to" in w.text()
    good = {(p, o) for p, o, _, v in sent if not expected_code(v)}
    out = read_topic(broker, f"{topic}.detections", lambda m: len(m) >= len(good))
    assert set(detections_by_offset(out)[0]) == good


def test_broker_outage_mid_run_loses_nothing(tmp_path, workers, tansu_factory, proxy_factory):
    if EXTERNAL:
        pytest.skip("cuts the connection to a broker of its own; KAFKA_BOOTSTRAP_SERVERS is set")
    # Every client reaches the broker through a forwarder that the test cuts: Tansu
    # advertises the forwarder's port.
    front = free_port()
    tansu = tansu_factory(advertised_port=front)
    proxy = proxy_factory(f"127.0.0.1:{tansu.port}", front).start()
    broker = f"127.0.0.1:{front}"
    parts = 2
    topic, group = create_topic(broker, parts), unique("g")
    # A backlog keeps the worker busy, so the cut comes with sends and commits in flight.
    msgs = messages(40_000, seed=5, partitions=parts, malformed_every=89)
    sent = produce(broker, topic, msgs[:36_000])
    state = tmp_path / "state"
    cfg = worker_config(tmp_path / "streamad.yaml", broker, topic, group, state)
    w = Worker(cfg, tmp_path / "worker.log")
    workers.append(w)
    reader = TopicReader(broker, f"{topic}.detections")
    wait_for(lambda: len(reader.read()) > 500, 60, "the first detections")
    reader.close()

    # Mid-stream, longer than the session timeout and a commit's timeout: sends,
    # commits and heartbeats fail.
    proxy.cut()
    time.sleep(8)
    w.wait_log(r"WARNING streamad\.kafka: kafka: .*(not acknowledged|waiting for the broker|commit failed|cannot read the committed)", timeout=60)
    assert w.alive()
    proxy.restore()

    sent += produce(broker, topic, msgs[36_000:])
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(parts)}
    wait_for(lambda: committed(broker, group, topic, parts) == end, 90, "every offset to be committed after the outage")
    assert w.stop() == 0

    good = {(p, o) for p, o, _, v in sent if not expected_code(v)}
    # 40,000 detections: on a loaded machine reading them back took over the default minute.
    out = read_topic(broker, f"{topic}.detections", lambda m: len(set(detections_by_offset(m)[0])) >= len(good), timeout=180)
    assert set(detections_by_offset(out)[0]) == good
    store = StateStore(state)
    assert sum(store.load(Lane(topic, p))["learned"] for p in range(parts)) == len(good)


def test_reset_connections_are_retried_and_nothing_is_lost(tmp_path, workers, tansu_factory, forwarder_factory):
    """A broker that dies behind a TCP forwarder or load balancer: connections are
    accepted, then reset. The worker retries as for a refused connection, logs no
    traceback, and reads on when the broker is back."""
    if EXTERNAL:
        pytest.skip("resets the connections to a broker of its own; KAFKA_BOOTSTRAP_SERVERS is set")
    front = free_port()
    tansu = tansu_factory(advertised_port=front)
    forwarder = forwarder_factory(f"127.0.0.1:{tansu.port}", front)
    broker = f"127.0.0.1:{front}"
    parts = 2
    topic, group = create_topic(broker, parts), unique("g")
    msgs = messages(24_000, seed=7, partitions=parts, malformed_every=97)
    sent = produce(broker, topic, msgs[:20_000])
    state = tmp_path / "state"
    w = Worker(worker_config(tmp_path / "streamad.yaml", broker, topic, group, state), tmp_path / "worker.log")
    workers.append(w)
    reader = TopicReader(broker, f"{topic}.detections")
    wait_for(lambda: len(reader.read()) > 500, 60, "the first detections")
    reader.close()

    # Mid-stream, with sends, commits and polls in flight, and for longer than the
    # session timeout: every connection is reset, old and new.
    forwarder.reset()
    time.sleep(10)
    assert w.alive(), w.text()[-3000:]
    forwarder.forward()

    sent += produce(broker, topic, msgs[20_000:])
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(parts)}
    wait_for(lambda: committed(broker, group, topic, parts) == end, 90, "every offset to be committed after the resets")
    assert forwarder.resets > 0
    assert w.stop() == 0
    log = w.text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
    assert re.search(r"WARNING streamad\.kafka: kafka: .*(cannot be reached|waiting for the broker|not acknowledged|commit failed|cannot read the committed|cannot ask the broker)", log)

    # At least once: every valid offset scored (duplicates allowed), every bad one dead-lettered.
    good = {(p, o) for p, o, _, v in sent if not expected_code(v)}
    bad = {(p, o) for p, o, _, v in sent if expected_code(v)}
    out = read_topic(broker, f"{topic}.detections", lambda m: len(set(detections_by_offset(m)[0])) >= len(good))
    assert set(detections_by_offset(out)[0]) == good
    dlq = read_topic(broker, f"{topic}.dead-letter", lambda m: len(m) >= len(bad), timeout=20)
    assert {(int(dict(m.headers)["streamad.source.partition"]), int(dict(m.headers)["streamad.source.offset"])) for m in dlq} == bad
