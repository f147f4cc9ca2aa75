"""A broker that comes back empty (its storage lost, the topic re-created): checkpoints
and commits point beyond the new end of every partition. The default policy stops
the worker with one clear line; `earliest` reads the new records from the start and
scores every one. A worker running through such a restart notices it even when the
new topic is longer than what was read (the topic's id changed), gets a new producer
(the broker no longer knows the old one's idempotence state) and goes on."""

from __future__ import annotations

import re
import signal

import pytest

from streamad.records import Lane
from streamad.state import StateStore
from tests.kafka.conftest import Worker, committed, create_topic, free_port, produce, read_topic, unique, wait_for, worker_config
from tests.kafka.streams import detections_by_offset, messages

pytestmark = pytest.mark.kafka


def new_detections(broker: str, topic: str, wanted: set[tuple[int, int]]) -> set[tuple[int, int]]:
    out = read_topic(broker, f"{topic}.detections", lambda m: wanted <= set(detections_by_offset(m)[0]), timeout=60)
    return set(detections_by_offset(out)[0])


def test_a_broker_that_comes_back_empty(tmp_path, workers, tansu_factory):
    port = free_port()
    tansu = tansu_factory(port=port)  # skipped against an external broker: it is restarted
    broker = tansu.bootstrap
    parts = 2
    topic, group = create_topic(broker, parts), unique("g")
    state = tmp_path / "state"
    fail_cfg = worker_config(tmp_path / "fail.yaml", broker, topic, group, state)  # the default policy
    earliest_cfg = worker_config(tmp_path / "earliest.yaml", broker, topic, group, state, kafka={"offset_reset_policy": "earliest"})

    # A worker reads 3,000 records per partition and checkpoints them.
    produce(broker, topic, messages(6000, seed=8, partitions=parts))
    first = Worker(fail_cfg, tmp_path / "first.log")
    workers.append(first)
    wait_for(lambda: committed(broker, group, topic, parts) == {0: 3000, 1: 3000}, 90, "the first worker to commit everything")
    assert first.stop() == 0

    # The broker loses everything; the topic is created again and gets 2,000 records.
    tansu.stop()
    tansu = tansu_factory(port=port)
    create_topic(broker, parts, name=topic)
    sent = produce(broker, topic, messages(2000, seed=9, partitions=parts))
    assert {p: max(o for q, o, _, _ in sent if q == p) + 1 for p in range(parts)} == {0: 1000, 1: 1000}

    # The topic ids kept beside the checkpoints would tell at once that the topic is new;
    # without them (as with a broker that has no topic ids) the offsets must tell.
    for f in state.glob("*.topic-id"):
        f.unlink()

    # Default policy: stop loudly, one line, non-zero status, nothing read silently.
    refused = Worker(fail_cfg, tmp_path / "refused.log")
    workers.append(refused)
    rc = refused.proc.wait(90)
    log = refused.text()
    assert rc == 2, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("streamad: error:")]
    assert len(errors) == 1, log[-3000:]
    assert re.search(
        rf"offset reset: {re.escape(topic)}\[[01]\] was to be read from offset 3000 .* beyond the end of what the broker holds, offsets \[0, 1000\)"
        r".*offset_reset_policy is fail",
        errors[0],
    )
    assert re.search(rf"ERROR streamad\.kafka: kafka: offset reset: {re.escape(topic)}\[[01]\] was to be read from offset 3000", log)
    assert "Traceback" not in log

    # `earliest`: every new record is read from offset 0 and scored.
    second = Worker(earliest_cfg, tmp_path / "second.log")
    workers.append(second)
    wait_for(lambda: committed(broker, group, topic, parts) == {0: 1000, 1: 1000}, 90, "the new records to be committed")
    new = {(p, o) for p, o, _, _ in sent}
    assert new_detections(broker, topic, new) == new
    for p in range(parts):
        second.wait_log(rf"ERROR streamad\.kafka: kafka: offset reset: {re.escape(topic)}\[{p}\] .* beyond the end .* Reading it from offset 0 \(kafka\.offset_reset_policy: earliest\)")
    store = StateStore(state)
    assert [store.load(Lane(topic, p))["next_offset"] for p in range(parts)] == [1000, 1000]
    assert [store.load(Lane(topic, p))["learned"] for p in range(parts)] == [4000, 4000]

    # The broker loses everything again, under the running worker, and the new topic
    # gets *more* records than were read (offsets past the checkpoints exist, so only
    # the topic's new id tells): the worker reads it from the start, and its producer
    # (whose idempotence state the new broker does not know) is replaced.
    # Tansu creates any topic a metadata request names, whatever the client asks (the
    # consumer sets allow_auto_create_topics=False; a Kafka broker honours it), so the
    # worker is paused while the topic is made again: its reconnecting consumer could
    # otherwise create it first, and the test's creation would fail.
    second.proc.send_signal(signal.SIGSTOP)
    try:
        tansu.stop()
        tansu = tansu_factory(port=port)
        create_topic(broker, parts, name=topic)
    finally:
        second.proc.send_signal(signal.SIGCONT)
    again = produce(broker, topic, messages(2400, seed=10, partitions=parts))
    wait_for(lambda: committed(broker, group, topic, parts) == {0: 1200, 1: 1200}, 90, "the records after the second restart to be committed")
    latest = {(p, o) for p, o, _, _ in again}
    assert new_detections(broker, topic, latest) == latest
    for p in range(parts):
        second.wait_log(rf"offset reset: {re.escape(topic)}\[{p}\] was to be read from offset \d+ .* the topic was deleted and created again")
    assert second.alive()
    assert second.stop() == 0
    log = second.text()
    assert "Traceback" not in log and "the broker refused" not in log
    assert "the broker does not know this producer any more" in log
