"""The metrics observer in process: its counts reconcile with the pipeline's, its numpy
histograms agree with prometheus-client's own, lag and learning state are exported as
documented, and the endpoint serves and stops."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamad.app.demo import generate
from streamad.app.replay import default_drift_path
from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import MemorySink
from streamad.detectors.base import LearnReport
from streamad.errors import ConfigError
from streamad.metrics import LATENCY_BUCKETS, MetricsObserver, VectorHistogram, start_metrics
from streamad.pipeline import Pipeline, WindowResult
from streamad.records import Batch, Lane
from tests.conftest import run_cli


def samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return samples(reg).get((name, tuple(sorted(labels.items()))))


def test_vector_histogram_agrees_with_prometheus_client() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.exponential(30.0, 5000), LATENCY_BUCKETS, [np.inf, 0.0]])  # bounds are inclusive
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    ours = VectorHistogram("x_seconds", "x", ["stream"], LATENCY_BUCKETS, reg_a)
    theirs = Histogram("x_seconds", "x", ["stream"], buckets=LATENCY_BUCKETS, registry=reg_b)
    for part in np.array_split(values, 7):
        ours.observe(("s",), np.concatenate([part, [np.nan]]))  # NaN is skipped
        for v in part:
            theirs.labels("s").observe(float(v))
    a = {k: v for k, v in samples(reg_a).items() if not k[0].endswith("_created")}
    b = {k: v for k, v in samples(reg_b).items() if not k[0].endswith("_created")}
    assert a.keys() == b.keys()
    for k in a:
        if k[0].endswith("_sum"):
            assert a[k] == pytest.approx(b[k] - np.inf if np.isinf(b[k]) else b[k], rel=1e-9) or np.isinf(b[k])
        else:
            assert a[k] == b[k], k


def test_weights_count_records() -> None:
    reg = CollectorRegistry()
    h = VectorHistogram("y_seconds", "y", ["stream"], (1.0,), reg)
    h.observe(("s",), np.array([0.5, 2.0]), np.array([10.0, 3.0]))
    assert value(reg, "y_seconds_bucket", stream="s", le="1.0") == 10.0
    assert value(reg, "y_seconds_count", stream="s") == 13.0
    assert value(reg, "y_seconds_sum", stream="s") == 11.0


def test_counts_reconcile_with_the_pipeline() -> None:
    d = generate(n=6000, seed=3)
    reg = CollectorRegistry()
    m = MetricsObserver(registry=reg, model="gaussian")
    s = load_settings(overrides={"detector": {"name": "gaussian"}, "threshold": {"warmup_records": 500}, "drift": {"reference_records": 1000, "recent_records": 1000}}, env={})
    p = Pipeline(s, MemorySink(), feature_names=d.feature_names, observers=[m])
    src = ArraySource(d.X, d.y, stream="pumps", timestamps=d.timestamps, feature_names=d.feature_names, chunk_rows=700)
    m.set_end_offsets({src.lane: len(d.X) + 1})
    p.run(src)
    c = p.counts
    lv = {"stream": "pumps", "partition": "0"}
    assert value(reg, "streamad_records_consumed_total", **lv) == c.read == 6000
    assert value(reg, "streamad_records_scored_total", **lv) == c.scored
    assert value(reg, "streamad_records_rejected_total", **lv, reason="non_finite") == c.rejected_by_code["non_finite"] > 0
    assert value(reg, "streamad_alarms_total", **lv) == c.alarms
    assert value(reg, "streamad_window_processing_seconds_count", stream="pumps") == c.windows
    assert value(reg, "streamad_score_count", stream="pumps") == c.scored
    assert value(reg, "streamad_detection_latency_seconds_count", stream="pumps") == c.scored
    assert value(reg, "streamad_event_latency_seconds_count", stream="pumps") == c.scored
    assert value(reg, "streamad_consumer_lag_records", **lv) == 0.0
    assert value(reg, "streamad_last_checkpoint_timestamp_seconds", **lv) > 1.7e9
    thr = value(reg, "streamad_threshold", **lv)
    assert thr is not None and np.isfinite(thr)
    # Drift counters exist from the start, at 0 for a kind that never fired.
    kinds = {k[1] for k in samples(reg) if k[0] == "streamad_drift_events_total"}
    assert {dict(k)["kind"] for k in kinds} == {"feature", "score", "state"}
    assert value(reg, "streamad_feature_drift_statistic", **lv, feature="temperature") is not None
    # An untrimmed Gaussian reports no learning state: those gauges are simply not set.
    names = {k[0] for k in samples(reg)}
    assert not names & {"streamad_loe_flag_ratio", "streamad_importance_weight_ess_ratio", "streamad_training_loss"}
    assert value(reg, "streamad_detector_warmup", **lv) == 0.0
    assert value(reg, "streamad_build_info", version=__import__("streamad").__version__, detector="gaussian", python=__import__("platform").python_version()) == 1.0


def _result(report: LearnReport, threshold: float = float("inf")) -> WindowResult:
    w = Batch(Lane("t", 1), np.zeros((4, 2)), np.arange(4), arrival=1.0)
    return WindowResult(w.lane, w, w.X, np.array([0.1, 1.0, 10.0, 100.0]), threshold, np.zeros(4, bool), report, 0.002)


def test_learning_state_and_threshold_are_set_only_when_known() -> None:
    reg = CollectorRegistry()
    m = MetricsObserver(registry=reg, clock=lambda: 3.0)
    m.on_window(_result(LearnReport(4, warmup=True)))
    lv = {"stream": "t", "partition": "1"}
    assert value(reg, "streamad_threshold", **lv) is None  # still inf: not exported
    assert value(reg, "streamad_detector_warmup", **lv) == 1.0
    assert value(reg, "streamad_score_threshold_ratio_count", stream="t") is None
    assert value(reg, "streamad_detection_latency_seconds_bucket", stream="t", le="2.5") == 4.0  # 3.0 - 1.0 s, per record
    m.on_window(_result(LearnReport(4, loss=0.25, loe_flag_rate=0.05, ess=0.8, extra={"x": 1.0}), threshold=10.0))
    assert value(reg, "streamad_training_loss", **lv) == 0.25
    assert value(reg, "streamad_loe_flag_ratio", **lv) == 0.05
    assert value(reg, "streamad_importance_weight_ess_ratio", **lv) == 0.8
    assert value(reg, "streamad_threshold", **lv) == 10.0
    # 0.01, 0.1, 1 and 10 times the threshold: three at or below 1, where no alarm is raised.
    assert value(reg, "streamad_score_threshold_ratio_bucket", stream="t", le="1.0") == 3.0
    # A loss of NaN (a detector that diverged) is not exported as a number.
    m.on_window(_result(LearnReport(4, loss=float("nan")), threshold=10.0))
    assert value(reg, "streamad_training_loss", **lv) == 0.25


def test_lag_is_polled_from_the_pipeline_thread_throttled_and_fault_tolerant() -> None:
    now = [0.0]
    calls = []

    def lag():
        calls.append(now[0])
        if now[0] > 5:
            raise RuntimeError("consumer closed")
        return {Lane("topic", 0): 7, Lane("topic", 1): 0}

    reg = CollectorRegistry()
    m = MetricsObserver(registry=reg, lag=lag, lag_interval=1.0, clock=lambda: now[0])
    b = Batch(Lane("topic", 0), np.zeros((2, 1)), np.arange(2))
    for t in (0.0, 0.2, 0.4, 1.5, 6.0):
        now[0] = t
        m.on_batch(b)
    assert calls == [0.0, 1.5, 6.0]
    assert value(reg, "streamad_consumer_lag_records", stream="topic", partition="0") == 7.0
    m.observe_lag(Lane("topic", 1), -3)  # never negative
    assert value(reg, "streamad_consumer_lag_records", stream="topic", partition="1") == 0.0


def test_start_metrics_serves_and_stops() -> None:
    s = load_settings(overrides={"metrics": {"enabled": True, "host": "127.0.0.1", "port": 0}}, env={})
    m = start_metrics(s)
    assert m is not None and m.port
    body = urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=5).read().decode()
    assert "process_cpu_seconds_total" in body and "streamad_build_info" in body
    port = m.port
    with pytest.raises(ConfigError, match="cannot serve metrics"):
        start_metrics(load_settings(overrides={"metrics": {"enabled": True, "host": "127.0.0.1", "port": port}}, env={}))
    m.close()
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_replay_cli_serves_metrics_and_writes_drift_events(tmp_path) -> None:
    d = generate(n=3000, seed=2)
    csv = tmp_path / "pumps.csv"
    with open(csv, "w") as f:
        f.write("timestamp," + ",".join(d.feature_names) + "\n")
        for t, row in zip(d.timestamps, d.X):
            f.write(f"{t:.0f}," + ",".join("" if np.isnan(v) else f"{v:.5f}" for v in row) + "\n")
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "out"), "--metrics-port", "0", "--metrics-host", "127.0.0.1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^metrics +http://127\.0\.0\.1:\d+/metrics$", r.stdout, re.M)
    assert re.search(r"^drift alarms +0$", r.stdout, re.M)
    assert default_drift_path(csv, tmp_path / "out").exists()
    assert "serving Prometheus metrics on http://127.0.0.1:" in r.stderr
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "out2"), "--no-drift", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "drift" not in r.stdout and not default_drift_path(csv, tmp_path / "out2").exists()


@pytest.mark.parametrize(
    ("overrides", "table"),
    [
        ({"features": {"temporal": "on", "max_keys": 50}}, "streamad_temporal_keys"),  # the temporal stage's key table
        ({"features": {"temporal": "off"}, "detector": {"name": "per-key", "params": {"max_keys": 50}}}, "streamad_detector_keys"),  # per-key's models
    ],
)
def test_key_tables_per_lane_are_bounded_and_count_their_evictions(overrides, table):
    reg = CollectorRegistry()
    metrics = MetricsObserver(registry=reg, model="m")
    rng = np.random.default_rng(0)
    n = 2000
    keys = np.array([f"dev-{i}" for i in rng.integers(0, 80, n)], dtype=object)
    Pipeline(load_settings(overrides=overrides, env={}), MemorySink(), observers=[metrics]).run(
        ArraySource(rng.normal(size=(n, 2)), keys=keys, timestamps=np.arange(n, dtype=float), stream="s")
    )
    lane = {"stream": "s", "partition": "0"}
    assert reg.get_sample_value(table, lane) == 50
    evictions = table.replace("_keys", "_evictions_total") if table.startswith("streamad_temporal") else "streamad_detector_key_evictions_total"
    assert reg.get_sample_value(evictions, lane) > 0
