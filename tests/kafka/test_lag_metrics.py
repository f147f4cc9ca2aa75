"""Consumer lag as Prometheus scrapes it from two workers while partitions move
between them: each exports exactly the partitions it holds (a partition it gave away
disappears from its metrics instead of freezing at its last value), a partition it
holds but has not read anything from shows 0, and a drained backlog shows 0."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.kafka.conftest import Worker, committed, create_topic, free_port, produce, unique, wait_for, worker_config
from tests.kafka.streams import messages

pytestmark = pytest.mark.kafka

LAG = re.compile(r'^streamad_consumer_lag_records\{partition="(\d+)",stream="([^"]+)"\} (\S+)$')


def lag(port: int, topic: str) -> dict[int, float]:
    """The lag gauge of one worker, by partition of ``topic``."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        m = LAG.match(line)
        if m and m.group(2) == topic:
            out[int(m.group(1))] = float(m.group(3))
    return out


def assigned(log: str, topic: str) -> set[int]:
    lines = re.findall(r"kafka: assigned (.*)", log)
    return {int(p) for p in re.findall(rf"{re.escape(topic)}\[(\d+)\]", lines[-1])} if lines else set()


def test_lag_follows_the_partitions_each_worker_holds(bootstrap, tmp_path, workers):
    parts = 4
    topic, group = create_topic(bootstrap, parts), unique("g")
    state = tmp_path / "state"
    port_a, port_b = free_port(), free_port()

    def config(name: str, port: int):
        return worker_config(tmp_path / f"{name}.yaml", bootstrap, topic, group, state, metrics={"enabled": True, "host": "127.0.0.1", "port": port})

    a = Worker(config("a", port_a), tmp_path / "a.log")
    workers.append(a)
    wait_for(lambda: assigned(a.text(), topic) == set(range(parts)), 60, "A to hold every partition")
    # Partition 3 gets nothing: held but never read, it still has a lag (0).
    sent = produce(bootstrap, topic, messages(6000, seed=11, partitions=3))
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(3)} | {3: None}
    wait_for(lambda: committed(bootstrap, group, topic, parts) == end, 60, "A to process the first records")
    wait_for(lambda: lag(port_a, topic) == {0: 0, 1: 0, 2: 0, 3: 0}, 30, "A's lag to be 0 on all four partitions")

    # B joins: each worker exports the partitions it holds now, and only those.
    b = Worker(config("b", port_b), tmp_path / "b.log")
    workers.append(b)

    def split() -> bool:
        mine_a, mine_b = assigned(a.text(), topic), assigned(b.text(), topic)
        return bool(mine_a and mine_b) and mine_a | mine_b == set(range(parts)) and not mine_a & mine_b

    wait_for(split, 60, "A and B to split the partitions")
    mine_a, mine_b = assigned(a.text(), topic), assigned(b.text(), topic)
    wait_for(lambda: set(lag(port_a, topic)) == mine_a and set(lag(port_b, topic)) == mine_b, 30, f"A to export {mine_a} and B {mine_b}")

    # A backlog on every partition drains to 0 on both.
    more = produce(bootstrap, topic, messages(4000, seed=12, partitions=parts))
    end = {p: 1 + max(o for q, o, _, _ in sent + more if q == p) for p in range(parts)}
    wait_for(lambda: committed(bootstrap, group, topic, parts) == end, 60, "both workers to process the backlog")
    wait_for(
        lambda: lag(port_a, topic) == {p: 0 for p in mine_a} and lag(port_b, topic) == {p: 0 for p in mine_b},
        30,
        "both workers' lag to be 0 on exactly their partitions",
    )

    # B leaves: A holds everything again and exports all four.
    assert b.stop() == 0
    wait_for(lambda: assigned(a.text(), topic) == set(range(parts)), 60, "A to take B's partitions")
    wait_for(lambda: lag(port_a, topic) == {p: 0 for p in range(parts)}, 30, "A to export all four partitions again")
    assert a.stop() == 0
