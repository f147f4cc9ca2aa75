"""Stopping `streamad run` with SIGTERM: always logged, status 0 (a requested stop),
no traceback, no ERROR line, and bounded by `kafka.stop_grace_seconds` even while the
broker is away."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from tests.kafka.conftest import EXTERNAL, TopicReader, Worker, create_topic, free_port, produce, unique, wait_for, worker_config
from tests.kafka.streams import messages

pytestmark = pytest.mark.kafka


def after(log: str, marker: str) -> str:
    return log[log.index(marker) :] if marker in log else ""


def catches_sigterm(pid: int) -> bool:
    """The process has its own SIGTERM handler (Linux: SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def test_sigterm_while_waiting_for_the_broker(tmp_path, workers):
    port = free_port()  # nothing listens there
    cfg = worker_config(tmp_path / "streamad.yaml", f"127.0.0.1:{port}", unique("in"), unique("g"), tmp_path / "state")
    w = Worker(cfg, tmp_path / "worker.log")
    workers.append(w)
    w.wait_log(r"cannot reach the brokers at .*; retrying in", timeout=60)
    assert w.stop(timeout=20) == 0
    log = w.text()
    assert "SIGTERM: stopping before anything is read" in log
    assert "stopped before connecting to the brokers: nothing was read" in log
    assert "Traceback" not in log and " ERROR " not in after(log, "SIGTERM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches the signal mask in /proc")
def test_sigterm_as_soon_as_the_worker_can_take_it(bootstrap, tmp_path, workers):
    """The first moment the worker handles SIGTERM (before it has connected or read
    anything), a signal is a logged, clean stop. (Before that moment, while Python
    starts and the settings load, the default action applies: see docs/kafka.md.)"""
    topic = create_topic(bootstrap, 1)
    w = Worker(worker_config(tmp_path / "streamad.yaml", bootstrap, topic, unique("g"), tmp_path / "state"), tmp_path / "worker.log")
    workers.append(w)
    wait_for(lambda: catches_sigterm(w.proc.pid) or not w.alive(), 60, "the worker to handle SIGTERM", every=0.01)
    w.signal(signal.SIGTERM)
    rc = w.proc.wait(30)
    log = w.text()
    assert rc == 0, log[-3000:]
    assert "SIGTERM" in log and ("stopping before anything is read" in log or "finishing the current windows" in log)
    assert "stopped" in after(log, "SIGTERM")
    assert "Traceback" not in log and " ERROR " not in log


def test_sigterm_during_a_broker_outage_is_quiet_and_bounded(tmp_path, workers, tansu_factory, proxy_factory):
    if EXTERNAL:
        pytest.skip("cuts the connection to a broker of its own; KAFKA_BOOTSTRAP_SERVERS is set")
    front = free_port()
    tansu = tansu_factory(advertised_port=front)
    proxy = proxy_factory(f"127.0.0.1:{tansu.port}", front).start()
    broker = f"127.0.0.1:{front}"
    topic = create_topic(broker, 2)
    produce(broker, topic, messages(30_000, seed=13, partitions=2))
    cfg = worker_config(tmp_path / "streamad.yaml", broker, topic, unique("g"), tmp_path / "state", kafka={"stop_grace_seconds": 1})
    w = Worker(cfg, tmp_path / "worker.log")
    workers.append(w)
    reader = TopicReader(broker, f"{topic}.detections")
    wait_for(lambda: len(reader.read()) > 500, 60, "the first detections")
    reader.close()

    proxy.cut()
    w.wait_log(r"WARNING streamad\.kafka: kafka: .*(waiting for the broker|not acknowledged|cannot be reached|commit failed|cannot read the committed)", timeout=60)
    # A grace of 1 s and two client closes of at most 2 s each: well within 15 s.
    assert w.stop(timeout=15) == 0
    log = w.text()
    tail = after(log, "SIGTERM")
    assert "Traceback" not in log
    assert " ERROR " not in tail, tail[:3000]
    assert re.search(r"INFO streamad\.kafka: stopped (early )?after", tail)
