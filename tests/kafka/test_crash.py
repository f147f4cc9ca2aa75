"""SIGKILL a worker mid-stream and start it again: nothing lost, duplicates only for the
uncommitted tail (with the same ids), and no record learned twice."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from streamad.records import Lane
from streamad.state import StateStore
from tests.kafka.conftest import TopicReader, Worker, committed, create_topic, produce, read_topic, unique, wait_for, worker_config
from tests.kafka.streams import detections_by_offset, expected_code, messages

pytestmark = pytest.mark.kafka


def test_sigkill_mid_stream_then_restart(bootstrap, tmp_path, workers):
    parts = 2
    topic = create_topic(bootstrap, parts)
    group = unique("g")
    msgs = messages(40_000, seed=2, partitions=parts, malformed_every=113)
    sent: list = produce(bootstrap, topic, msgs[:2000])
    killed = threading.Event()

    def trickle() -> None:
        # More arrives while the worker runs, until it is killed: the kill lands
        # mid-stream however fast or slow the worker is on this machine.
        for i in range(2000, len(msgs), 100):
            if killed.is_set():
                return
            sent.extend(produce(bootstrap, topic, msgs[i : i + 100]))
            time.sleep(0.1)

    state = tmp_path / "state"
    # Commits every 2 s while detections flow continuously: a kill leaves a tail.
    cfg = worker_config(tmp_path / "streamad.yaml", bootstrap, topic, group, state, state={"checkpoint_interval_seconds": 2.0})
    first = Worker(cfg, tmp_path / "first.log")
    workers.append(first)
    producer = threading.Thread(target=trickle)
    producer.start()
    reader = TopicReader(bootstrap, f"{topic}.detections")

    def uncommitted_tail() -> bool:
        if len(sent) < 4000:
            return False
        done = committed(bootstrap, group, topic, parts)
        if not all(done.values()):
            return False
        emitted = detections_by_offset(reader.read(50))[0]
        return any(o >= done[p] for p, o in emitted)

    wait_for(uncommitted_tail, 90, "the first worker to commit, and to send detections after that commit", every=0.05)
    first.kill()
    killed.set()
    at_kill = committed(bootstrap, group, topic, parts)
    time.sleep(0.5)
    before_offsets = set(detections_by_offset(reader.read())[0])
    reader.close()
    tail = {(p, o) for p, o in before_offsets if o >= at_kill[p]}
    assert tail, "the kill should leave detections sent but not committed"

    second = Worker(cfg, tmp_path / "second.log")
    workers.append(second)
    producer.join()
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(parts)}
    wait_for(lambda: committed(bootstrap, group, topic, parts) == end, 90, "every input offset to be committed after the restart")
    assert second.stop() == 0
    assert "resumes at offset" in second.text() and "restored" in second.text()

    good = {(p, o) for p, o, _, v in sent if not expected_code(v)}
    bad = {(p, o) for p, o, _, v in sent if expected_code(v)}
    out = read_topic(bootstrap, f"{topic}.detections", lambda m: len({(orjson.loads(x.value)["id"]) for x in m}) >= len(good))
    by_offset, ids = detections_by_offset(out)
    dlq = read_topic(bootstrap, f"{topic}.dead-letter", lambda m: len(m) >= len(bad), timeout=10)
    dead = {(int(dict(m.headers)["streamad.source.partition"]), int(dict(m.headers)["streamad.source.offset"])) for m in dlq}

    # Nothing lost.
    extra = set(by_offset) - good
    assert not extra, [(po, [v for p, o, _, v in sent if (p, o) == po][0][:80]) for po in sorted(extra)[:5]]
    assert set(by_offset) == good
    assert dead == bad
    # Duplicates only for the uncommitted tail, and with the same ids.
    dupes = {po for po, ds in by_offset.items() if len(ds) > 1}
    assert all(o >= at_kill[p] for p, o in dupes), sorted(po for po in dupes if po[1] < at_kill[po[0]])[:10]
    assert tail <= dupes | {po for po in tail if po not in before_offsets}
    # What a re-emitted detection keeps (docs/kafka.md): the id, the input's coordinates,
    # key and event time, the model. Its score, threshold and verdict come from the
    # model restored from the last checkpoint and may differ from the first copy's.
    for po in dupes:
        copies = by_offset[po]
        for field in ("id", "source", "key", "event_time", "model"):
            assert len({orjson.dumps(d[field]) for d in copies}) == 1, (field, copies)
    # The model learned every valid record exactly once across the crash.
    store = StateStore(state)
    learned = 0
    for p in range(parts):
        s = store.load(Lane(topic, p))
        assert s is not None
        learned += s["learned"]
        assert s["next_offset"] == 1 + max(o for q, o in good if q == p)
    assert learned == len(good)
