"""The app in-process, as the metrics code uses it: extra observers, consumer lag, stop()."""

from __future__ import annotations

import logging
import threading

import pytest

from streamad.app.kafka import KafkaApp
from streamad.config import load_settings
from streamad.pipeline import Observer
from streamad.records import Lane
from tests.kafka.conftest import committed, create_topic, produce, unique, wait_for, worker_config
from tests.kafka.streams import expected_code, messages

pytestmark = pytest.mark.kafka


class Watch(Observer):
    def __init__(self) -> None:
        self.app: KafkaApp | None = None
        self.scored = 0
        self.rejected = 0
        self.lags: list[dict[Lane, int]] = []
        self.threads: set[str] = set()

    def on_window(self, result) -> None:
        self.scored += len(result.window)

    def on_rejects(self, rejects) -> None:
        self.rejected += len(rejects)

    def on_checkpoint(self, lanes) -> None:
        assert self.app is not None
        self.lags.append(self.app.lag())


def test_observers_and_lag(bootstrap, tmp_path, caplog):
    parts = 3
    topic, group = create_topic(bootstrap, parts), unique("g")
    sent = produce(bootstrap, topic, messages(20_000, seed=6, partitions=parts, malformed_every=211))
    end = {p: 1 + max(o for q, o, _, _ in sent if q == p) for p in range(parts)}
    cfg = worker_config(tmp_path / "s.yaml", bootstrap, topic, group, tmp_path / "state", state={"checkpoint_interval_seconds": 0.2})
    watch = Watch()
    app = KafkaApp(load_settings(cfg, env={}), observers=[watch])
    watch.app = app
    runner = threading.Thread(target=app.run)
    caplog.set_level(logging.INFO, logger="streamad")
    runner.start()
    try:
        wait_for(lambda: committed(bootstrap, group, topic, parts) == end, 60, "every offset to be committed")
        wait_for(lambda: watch.lags and watch.lags[-1] == {Lane(topic, p): 0 for p in range(parts)}, 10, "zero lag")
    finally:
        app.stop()
        runner.join(30)
    assert not runner.is_alive()
    assert watch.scored == sum(1 for *_, v in sent if not expected_code(v))
    assert watch.rejected == sum(1 for *_, v in sent if expected_code(v))
    assert any(sum(lag.values()) > 0 for lag in watch.lags), "a backlog shows as lag before it is processed"
    assert app.pipeline.counts.pending == 0
    # The start-up line says what a partition runs: the sensor default, in windows
    # counted per key, not the settings' ``detector.name: default`` and window as given.
    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("streamad run: group")]
    assert len(started) == 1 and "detector per-key, window 32 records of a key (256 in all) or 0.2 s" in started[0], started
