"""Scale-out: two workers share a topic's partitions; when one stops, the other takes
its partitions with their model state, restored from the shared state directory."""

from __future__ import annotations

import re
import threading
import time

import pytest

from streamad.records import Lane
from streamad.state import StateStore
from tests.kafka.conftest import Worker, committed, create_topic, produce, read_topic, unique, wait_for, worker_config
from tests.kafka.streams import detections_by_offset, expected_code, messages

pytestmark = pytest.mark.kafka


def assigned_partitions(log: str, topic: str) -> set[int]:
    """The partitions of the worker's latest assignment, from its log."""
    lines = re.findall(r"kafka: assigned (.*)", log)
    return {int(p) for p in re.findall(rf"{re.escape(topic)}\[(\d+)\]", lines[-1])} if lines else set()


def test_two_workers_split_partitions_and_one_takes_over(bootstrap, tmp_path, workers):
    parts = 4
    topic = create_topic(bootstrap, parts)
    group = unique("g")
    msgs = messages(12_000, seed=3, partitions=parts, malformed_every=131)
    state = tmp_path / "state"  # shared by both workers
    cfg = worker_config(tmp_path / "streamad.yaml", bootstrap, topic, group, state)
    a = Worker(cfg, tmp_path / "a.log")
    b = Worker(cfg, tmp_path / "b.log")
    workers += [a, b]

    # Both join; the group splits the partitions between them.
    wait_for(
        lambda: assigned_partitions(a.text(), topic) and assigned_partitions(b.text(), topic)
        and assigned_partitions(a.text(), topic) | assigned_partitions(b.text(), topic) == set(range(parts)),
        60,
        "the two workers to split the partitions",
    )
    mine_b = assigned_partitions(b.text(), topic)
    assert mine_b and assigned_partitions(a.text(), topic).isdisjoint(mine_b)

    sent: list = []
    first_half = produce(bootstrap, topic, msgs[:6000])
    sent += first_half
    end_first = {p: 1 + max(o for q, o, _, _ in first_half if q == p) for p in range(parts)}
    wait_for(lambda: committed(bootstrap, group, topic, parts) == end_first, 60, "both workers to process the first half")

    # B leaves gracefully; A gets B's partitions and restores their models.
    assert b.stop() == 0
    log_b = b.text()
    for p in mine_b:
        assert f"{topic}[{p}]" in log_b
    a.wait_log(r"kafka: assigned " + ", ".join(f"{re.escape(topic)}\\[{p}\\]" for p in range(parts)), timeout=60)
    for p in mine_b:
        a.wait_log(rf"restored {re.escape(topic)}\[{p}\] from checkpoint: learned [1-9]\d* records", timeout=30)

    producer = threading.Thread(target=lambda: sent.extend(produce(bootstrap, topic, msgs[6000:])))
    producer.start()
    producer.join()
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(parts)}
    wait_for(lambda: committed(bootstrap, group, topic, parts) == end, 60, "A to process everything")
    assert a.stop() == 0

    good = {(p, o) for p, o, _, v in sent if not expected_code(v)}
    bad = {(p, o) for p, o, _, v in sent if expected_code(v)}
    out = read_topic(bootstrap, f"{topic}.detections", lambda m: len(m) >= len(good))
    by_offset, ids = detections_by_offset(out)
    assert set(by_offset) == good
    assert max(ids.values()) == 1, "graceful hand-overs re-send nothing"
    dlq = read_topic(bootstrap, f"{topic}.dead-letter", lambda m: len(m) >= len(bad), timeout=10)
    assert len(dlq) == len(bad)

    # Each partition's model learned each of its records once, across both owners.
    store = StateStore(state)
    for p in range(parts):
        s = store.load(Lane(topic, p))
        mine = [o for q, o in good if q == p]
        assert s["learned"] == len(mine) and s["next_offset"] == max(mine) + 1
    assert time.monotonic()
