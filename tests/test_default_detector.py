"""``detector.name: default`` per stream: the sensor default (a trimmed online Gaussian
per key, windows of 32, no scaler) where the temporal stage runs, ``loe-ae`` on tables."""

import logging

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import MemorySink
from streamad.drift import DriftLog
from streamad.errors import ConfigError
from streamad.factory import SENSOR_DEFAULT, for_stream
from streamad.metrics import MetricsObserver
from streamad.pipeline import Observer, Pipeline
from streamad.records import Lane
from streamad.state import StateStore
from tests.conftest import restart_halfway, run_cli


def settings(**over):
    return load_settings(overrides=over, env={})


@pytest.mark.parametrize(
    "over, timed, expected",
    [
        ({}, True, ("per-key", 32, 8, "none")),
        ({}, False, ("default", 256, 8, "auto")),
        ({}, None, ("default", 256, 8, "auto")),  # unknown before the first batch: the pipeline decides per lane
        ({"features": {"temporal": "on"}}, False, ("per-key", 32, 8, "none")),
        ({"features": {"temporal": "off"}}, True, ("default", 256, 8, "auto")),
        # What is set stays set.
        ({"window": {"size": 128}}, True, ("per-key", 128, 8, "none")),
        ({"window": {"initial_size": 64}}, True, ("per-key", 32, 32, "none")),
        ({"scaler": {"kind": "standard"}}, True, ("per-key", 32, 8, "standard")),
        ({"detector": {"name": "loe-ae"}}, True, ("loe-ae", 256, 8, "auto")),
    ],
)
def test_for_stream(over, timed, expected):
    s = for_stream(settings(**over), timed)
    assert (s.detector.name, s.window.size, s.window.initial_size, s.scaler.kind) == expected
    if expected[0] == "per-key" and "detector" not in over:
        assert s.detector.params == SENSOR_DEFAULT["params"]
    assert for_stream(s, timed) is s  # made concrete once


def test_parameters_for_the_default_on_a_timed_stream_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"detector.params \(alpha\).*default detector is per-key.*--detector loe-ae"):
        for_stream(settings(detector={"params": {"alpha": 0.2}}), timed=True)
    # On a table they are the default's (loe-ae's), as before.
    assert for_stream(settings(detector={"params": {"alpha": 0.2}}), timed=False).detector.params == {"alpha": 0.2}


def _stream(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), 1.7e9 + np.arange(n, dtype=np.float64)


def test_a_pipeline_runs_the_sensor_default_on_records_with_event_times_and_loe_ae_on_tables():
    X, ts = _stream()
    timed = Pipeline(settings(), MemorySink())  # decided by the lane's first batch
    timed.run(ArraySource(X, timestamps=ts))
    lm = timed.lanes[Lane("array")]
    assert lm.detector.name == "per-key" and lm.buffer.max_size == 32 and lm.model.temporal is not None
    assert timed.model_name == "per-key"
    table = Pipeline(settings(), MemorySink())
    table.run(ArraySource(X))
    lm = table.lanes[Lane("array")]
    assert lm.detector.name == "loe-ae" and lm.buffer.max_size == 256 and lm.model.temporal is None
    assert timed.counts.scored == table.counts.scored == len(X)


def test_a_checkpoint_made_by_loe_ae_under_the_default_goes_on_with_loe_ae(tmp_path):
    """A lane checkpointed when the default on streams with event times was loe-ae keeps
    it after an upgrade, as a checkpoint keeps its temporal stage."""
    X, ts = _stream()
    store = StateStore(tmp_path)
    before = Pipeline(settings(detector={"name": "loe-ae", "params": {"histograms": False}}), MemorySink(), store=store, temporal=True)  # loe-ae as it was then
    before.run(ArraySource(X[:300], timestamps=ts[:300]))
    after = Pipeline(settings(), MemorySink(), store=store, temporal=True)
    after.run(ArraySource(X, timestamps=ts))
    lm = after.lanes[Lane("array")]
    assert lm.detector.name == "loe-ae" and lm.learned == len(X)
    assert after.counts.scored == len(X) - 300  # resumed where the checkpoint left off
    # A new lane in the same pipeline gets the sensor default.
    fresh = Pipeline(settings(), MemorySink(), store=StateStore(tmp_path / "new"), temporal=True)
    fresh.run(ArraySource(X, timestamps=ts))
    assert fresh.lanes[Lane("array")].detector.name == "per-key"


def test_replay_names_the_default_it_ran_and_refuses_its_parameters_in_one_line(tmp_path):
    csv = tmp_path / "pump.csv"
    X, ts = _stream(300)
    rows = [f"2026-01-01T00:{i // 60:02d}:{i % 60:02d},{a:.4f},{b:.4f},{c:.4f}" for i, (a, b, c) in enumerate(X)]
    csv.write_text("timestamp,a,b,c\n" + "\n".join(rows) + "\n")
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "per-key (windows of 8 doubling to 32)" in r.stdout
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "o"), "--no-progress", "--param", "alpha=0.2")
    assert r.returncode == 2
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "default detector is per-key" in err[0] and "Traceback" not in r.stderr, r.stderr
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "o"), "--no-progress", "--detector", "loe-ae", "--param", "alpha=0.2")
    assert r.returncode == 0, r.stderr
    assert "loe-ae (windows of 8 doubling to 256)" in r.stdout


SETTINGS_FILE_GAUSSIAN = {"detector": {"name": "gaussian", "params": {"trim": 0.95, "early": True}}, "scaler": {"kind": "none"}, "window": {"size": 32}}


def test_a_checkpoint_made_by_the_one_gaussian_under_the_default_goes_on_with_it(tmp_path):
    """From 2026-12-02 until per-key took its place, ``default`` on records with event
    times was one trimmed Gaussian for all keys: a lane checkpointed then goes on with it,
    its parameters, scaler and windows, scoring as if it had never stopped."""
    X, ts = _stream()
    keys = np.array(["pump"] * len(X), dtype=object)
    former = settings(**SETTINGS_FILE_GAUSSIAN, features={"temporal": "on"})
    names = [f"x{i}" for i in range(X.shape[1])]
    # The cut at a window boundary (8 + 16 + 9 x 32 records).
    whole, joined, resumed = restart_halfway(former, X, keys, ts, names, tmp_path, cut=312, after=settings(features={"temporal": "on"}))
    lm = resumed.lanes[Lane("array")]
    assert lm.detector.name == "gaussian" and lm.detector.trim == 0.95 and lm.detector.early
    assert lm.buffer.max_size == 32 and lm.model.scaler.name == "none" and lm.learned == len(X)
    assert np.array_equal(joined, whole)


def _scores(overrides, X, ts, keys=None):
    from benchmarks.sensor_streams import replay_arrays

    out = replay_arrays(X, overrides, ts, keys)
    return out["scores"], out["alarms"]


def test_on_one_device_the_sensor_default_is_the_settings_files_gaussian_record_for_record():
    from streamad.app.demo import generate

    demo = generate(n=3000, seed=3)
    keep = np.isfinite(demo.X).all(axis=1)
    X, ts = demo.X[keep], demo.timestamps[keep]
    default, alarms = _scores({}, X, ts)
    gaussian, g_alarms = _scores(SETTINGS_FILE_GAUSSIAN, X, ts)
    assert np.array_equal(default, gaussian) and np.array_equal(alarms, g_alarms) and alarms.sum() > 10


def quiet_and_noisy(n_per_key=1500, seed=0, spike=1.5):
    """Two pumps on one stream: pump-q reads its two sensors to within 0.1, pump-n to
    within 3. Every 50th record from the 600th on, pump-q's pressure reads ``spike`` high
    for one record: fifteen of its spreads, well within pump-n's."""
    rng = np.random.default_rng(seed)
    X, keys, ts, y = [], [], [], []
    for i in range(n_per_key):
        for p, noise in (("pump-q", 0.1), ("pump-n", 3.0)):
            flow = 5.0 + noise * rng.normal()
            fault = p == "pump-q" and i >= 600 and i % 50 == 0
            X.append((flow, flow + noise * rng.normal() + (spike if fault else 0.0)))
            keys.append(p), ts.append(1.7e9 + i), y.append(fault)
    return np.array(X), np.array(keys, dtype=object), np.array(ts, dtype=np.float64), np.array(y)


@pytest.mark.parametrize("seed", [0, 1])
def test_on_a_fleet_the_default_judges_each_device_against_its_own_past(seed):
    """The sensor default keeps a Gaussian per key: a spike that is far out for the quiet
    pump is caught, though it lies within what the fleet's pooled records call normal,
    where one Gaussian for all keys misses it."""
    X, keys, ts, y = quiet_and_noisy(seed=seed)
    _, alarms = _scores({}, X, ts, keys)
    _, pooled = _scores(SETTINGS_FILE_GAUSSIAN, X, ts, keys)
    assert alarms[y].sum() >= 15 and alarms[~y].sum() <= 15  # of 18 spikes and 2,982 normal readings (18 and 5-7 when written)
    assert pooled[y].sum() <= 3  # (0 when written)


def test_a_new_operating_point_that_lasts_stops_alarming():
    """A pressure that steps up by ten deviations at record 600 and stays there: alarmed
    at once, then learned as the new normal (the Gaussian's bar follows a state that has
    been over it for 64 records in a row; measured: the last alarm 662-927 records after
    the step; with the bar held one bin over its place whatever lasted, never)."""
    n, at = 4000, 600
    t = np.arange(n)
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        X = np.sin(2 * np.pi * t / 500)[:, None] * [1.0, 0.5, 0.2] + rng.normal(scale=0.3, size=(n, 3))
        X[at:, 1] += 3.0
        sink = MemorySink()
        Pipeline(settings(), sink).run(ArraySource(X, timestamps=1_767_225_600.0 + t))
        alarmed = np.array(sorted(r["source"]["offset"] for r in sink.records if r["is_anomaly"])) - 1  # offsets count from 1
        assert len(alarmed) and alarmed.min() >= at, alarmed[:5]
        assert np.sum((alarmed >= at) & (alarmed < at + 100)) >= 50
        assert alarmed.max() < 2000, alarmed[-5:]


def _two_devices(n: int, at: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devices a and b interleaved on one stream, three sensors each; a's second sensor
    steps up by ten noise deviations at a's record ``at`` and stays there."""
    t = np.arange(n)
    rng = np.random.default_rng(1)
    X = np.empty((2 * n, 3))
    for i in (0, 1):
        X[i::2] = np.sin(2 * np.pi * t / 500)[:, None] * [1.0, 0.5, 0.2] + rng.normal(scale=0.3, size=(n, 3))
    X[2 * at :: 2, 1] += 3.0
    return X, np.array(["a", "b"] * n, dtype=object), 1_767_225_600.0 + np.repeat(t, 2)


def test_a_new_set_point_on_a_mature_stream_is_adopted_however_long_the_history():
    """The same lasting step, on a device with 8,000 records behind it: the Gaussian,
    holding all of them (half-life 20,000), took it in one flagged record in ten and
    alarmed on every one of the 4,000 records after it. Flagged for ``adopt_after``
    records in a row, the device's state is adopted: its Gaussian forgets, it learns
    every record, and the alarms stop (measured: 1,070 of a's 4,000 after the step,
    6 of them 2,000 or more after; 4,000 without adoption). Device b, on the same
    stream, is judged as before (19 alarms against 20)."""
    n, at = 12_000, 8_000
    X, keys, ts = _two_devices(n, at)
    counts, states = {}, {}
    for adopt in (1024, None):
        sink = MemorySink()
        seen = StateEvents()
        pipeline = Pipeline(settings(threshold={"adopt_after": adopt}), sink, temporal=True, observers=[seen])
        source = ArraySource(X, timestamps=ts, keys=keys)
        pipeline.run(source)
        states[adopt] = seen.events
        offsets = np.array(sorted(r["source"]["offset"] for r in sink.records if r["is_anomaly"])) - 1
        a, b = offsets[offsets % 2 == 0] // 2, offsets[offsets % 2 == 1] // 2
        counts[adopt] = (int(np.sum((a >= at) & (a < at + 100))), int(np.sum(a >= at + 2000)), len(b))
        judges = pipeline.lanes[source.lane].model.judging.judges
        assert judges["b"].run == 0
    (first_on, late_on, b_on), (first_off, late_off, b_off) = counts[1024], counts[None]
    assert first_on == first_off == 100  # the step is alarmed at once either way
    assert late_off == 2000 and late_on <= 20, counts
    assert abs(b_on - b_off) <= 5, counts
    # Each adoption is a drift event of kind "state", naming the device.
    assert not states[None] and [e.key for e in states[1024]] == ["a"]
    event = states[1024][0].as_dict()
    assert event["key"] == "a" and event["method"] == "adopted" and event["statistic"] >= 1024
    assert 2 * (at + 1024) < event["source"]["offset"] < 2 * (at + 1400)


def test_a_sensor_stuck_for_long_is_a_fault_that_lasts_not_a_new_operating_point():
    """Device a's second sensor freezes at its record 8,000 and stays frozen: flagged for
    1,024 records in a row like a step, but a frozen value is never adopted (the temporal
    stage reads it stuck), so it alarms until the end; device b is untouched."""
    n, at = 12_000, 8_000
    X, keys, ts = _two_devices(n, at)
    X[2 * at :: 2, 1] = X[2 * at, 1] - 3.0  # back below the step _two_devices put there, and frozen
    seen = StateEvents()
    sink = MemorySink()
    pipeline = Pipeline(settings(), sink, temporal=True, observers=[seen])
    pipeline.run(ArraySource(X, timestamps=ts, keys=keys))
    offsets = np.array(sorted(r["source"]["offset"] for r in sink.records if r["is_anomaly"])) - 1
    a = offsets[offsets % 2 == 0] // 2
    assert not seen.events
    assert np.sum(a >= at + 2000) >= 1900, np.sum(a >= at)  # of 2,000 (all of them when written)
    assert pipeline.lanes[Lane("array")].model.judging.judges["a"].run < 1024


@pytest.mark.parametrize("drift", [True, False])
def test_an_adopted_state_is_reported_with_or_without_drift_detection(drift, caplog):
    """Drift detection on or off, the model adopts a lasting state, and the operator is
    told: one event naming the device, counted in ``streamad_drift_events_total``
    {kind="state"} and logged; with the monitor, it is also among the lane's drift
    alarms (what a replay's summary adds up)."""
    X, keys, ts = _two_devices(6_000, 4_000)
    reg = CollectorRegistry()
    seen = StateEvents()
    over = {"threshold": {"adopt_after": 256}, "drift": {"enabled": drift}}
    pipeline = Pipeline(settings(**over), MemorySink(), temporal=True, observers=[seen, MetricsObserver(registry=reg), DriftLog(None)])
    with caplog.at_level(logging.WARNING, logger="streamad.drift"):
        pipeline.run(ArraySource(X, timestamps=ts, keys=keys, stream="s"))
    assert [e.key for e in seen.events] == ["a"]
    assert reg.get_sample_value("streamad_drift_events_total", {"stream": "s", "partition": "0", "kind": "state"}) == 1
    assert sum("state" in r.getMessage() and "'a'" in r.getMessage() for r in caplog.records) == 1, caplog.text
    monitor = pipeline.lanes[Lane("s")].drift
    assert (monitor is not None) == drift
    if monitor is not None:
        assert monitor.counts["state"] == 1


class StateEvents(Observer):
    def __init__(self) -> None:
        self.events: list = []

    def on_window(self, result) -> None:
        if result.drift is not None:
            self.events += [e for e in result.drift.events if e.kind == "state"]


def test_a_checkpoint_carries_a_devices_run_of_flagged_records(tmp_path):
    """Stopped 610 records into device a's step and resumed, the pipeline goes on
    counting a's flagged run where it was, and adopts its new state when it would have
    without the stop: the same scores. (Counted from 0 again, the run ended 610 records
    later, and so did the alarms.)"""
    X, keys, ts = _two_devices(4_000, 2_500)
    s = settings(features={"temporal": "on"})
    # The cut at a window boundary: windows of 63 records (one device has 32 in them).
    whole, joined, resumed = restart_halfway(s, X, keys, ts, ["flow", "pressure", "current"], tmp_path, cut=6_220)
    assert np.array_equal(joined, whole)
    judges = resumed.lanes[Lane("array")].model.judging.judges
    assert judges["b"].run == 0 and whole[2 * 3_000 :: 2].max() > 100 > whole[2 * 3_800 :: 2].max()


def test_in_python_many_devices_one_record_at_a_time_are_one_model_each():
    """The README's way to run many devices one record at a time: a Model per device.
    Device b's readings sit where device a's normal ones do; each model judges its
    device against its own past, so b's model alarms on them and a's does not."""
    from collections import defaultdict

    from streamad import Model

    rng = np.random.default_rng(3)
    models: defaultdict[str, Model] = defaultdict(lambda: Model(temporal=True))
    alarms = {"a": 0, "b": 0}
    for i in range(3000):
        for device, level in (("a", 5.0), ("b", 0.0)):
            x = rng.normal(size=3) * 0.2 + level
            if device == "b" and i >= 2900:
                x = x + 5.0  # device a's level, never seen on b
            m = models[device]
            alarms[device] += i >= 2900 and m.predict_one(x)
            m.learn_one(x)
    assert alarms["a"] <= 2 and alarms["b"] >= 90, alarms


def test_in_python_the_temporal_model_is_the_sensor_default_a_replay_runs():
    """``Model(temporal=True)``, and ``detect`` given event times and no model, run what a
    replay of the same timestamped records runs: the same scores, record for record."""
    from streamad import Model, detect
    from streamad.app.demo import generate
    from streamad.detectors.per_key import PerKey

    demo = generate(n=3000, seed=3)
    keep = np.isfinite(demo.X).all(axis=1)
    X, ts = demo.X[keep], demo.timestamps[keep]
    replayed, _ = _scores({}, X, ts)
    df = pd.DataFrame(X, columns=list(demo.feature_names)).assign(ts=ts)
    model = Model(temporal=True)
    assert isinstance(model.detector, PerKey) and model.window_size == 32
    for out in (detect(df, timestamp="ts"), detect(df, model, timestamp="ts")):
        assert np.array_equal(out["score"].to_numpy(), replayed)
    assert isinstance(Model().detector, type(Model("loe-ae").detector))  # tables: loe-ae
