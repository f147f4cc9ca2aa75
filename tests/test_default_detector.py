"""``detector.name: default`` per stream: the sensor default (a trimmed online Gaussian,
windows of 32, no scaler) where the temporal stage runs, ``loe-ae`` on tables."""

import numpy as np
import pytest

from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import MemorySink
from streamad.errors import ConfigError
from streamad.factory import SENSOR_DEFAULT, for_stream
from streamad.pipeline import Pipeline
from streamad.records import Lane
from streamad.state import StateStore
from tests.conftest import run_cli


def settings(**over):
    return load_settings(overrides=over, env={})


@pytest.mark.parametrize(
    "over, timed, expected",
    [
        ({}, True, ("gaussian", 32, 8, "none")),
        ({}, False, ("default", 256, 8, "auto")),
        ({}, None, ("default", 256, 8, "auto")),  # unknown before the first batch: the pipeline decides per lane
        ({"features": {"temporal": "on"}}, False, ("gaussian", 32, 8, "none")),
        ({"features": {"temporal": "off"}}, True, ("default", 256, 8, "auto")),
        # What is set stays set.
        ({"window": {"size": 128}}, True, ("gaussian", 128, 8, "none")),
        ({"window": {"initial_size": 64}}, True, ("gaussian", 32, 32, "none")),
        ({"scaler": {"kind": "standard"}}, True, ("gaussian", 32, 8, "standard")),
        ({"detector": {"name": "loe-ae"}}, True, ("loe-ae", 256, 8, "auto")),
    ],
)
def test_for_stream(over, timed, expected):
    s = for_stream(settings(**over), timed)
    assert (s.detector.name, s.window.size, s.window.initial_size, s.scaler.kind) == expected
    if expected[0] == "gaussian" and "detector" not in over:
        assert s.detector.params == SENSOR_DEFAULT["params"]
    assert for_stream(s, timed) is s  # made concrete once


def test_parameters_for_the_default_on_a_timed_stream_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"detector.params \(alpha\).*default detector is gaussian.*--detector loe-ae"):
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
    assert lm.detector.name == "gaussian" and lm.buffer.max_size == 32 and lm.model.temporal is not None
    assert timed.model_name == "gaussian"
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
    before = Pipeline(settings(detector={"name": "loe-ae"}), MemorySink(), store=store, temporal=True)
    before.run(ArraySource(X[:300], timestamps=ts[:300]))
    after = Pipeline(settings(), MemorySink(), store=store, temporal=True)
    after.run(ArraySource(X, timestamps=ts))
    lm = after.lanes[Lane("array")]
    assert lm.detector.name == "loe-ae" and lm.learned == len(X)
    assert after.counts.scored == len(X) - 300  # resumed where the checkpoint left off
    # A new lane in the same pipeline gets the sensor default.
    fresh = Pipeline(settings(), MemorySink(), store=StateStore(tmp_path / "new"), temporal=True)
    fresh.run(ArraySource(X, timestamps=ts))
    assert fresh.lanes[Lane("array")].detector.name == "gaussian"


def test_replay_names_the_default_it_ran_and_refuses_its_parameters_in_one_line(tmp_path):
    csv = tmp_path / "pump.csv"
    X, ts = _stream(300)
    rows = [f"2026-01-01T00:{i // 60:02d}:{i % 60:02d},{a:.4f},{b:.4f},{c:.4f}" for i, (a, b, c) in enumerate(X)]
    csv.write_text("timestamp,a,b,c\n" + "\n".join(rows) + "\n")
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "gaussian (windows of 8 doubling to 32)" in r.stdout
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "o"), "--no-progress", "--param", "alpha=0.2")
    assert r.returncode == 2
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "default detector is gaussian" in err[0] and "Traceback" not in r.stderr, r.stderr
    r = run_cli("replay", str(csv), "--out-dir", str(tmp_path / "o"), "--no-progress", "--detector", "loe-ae", "--param", "alpha=0.2")
    assert r.returncode == 0, r.stderr
    assert "loe-ae (windows of 8 doubling to 256)" in r.stdout
