"""The temporal stage through the real command line: a one-sensor ``timestamp,value`` file
gets its spike, level shift and frozen stretch caught and named; ``auto`` is on for a
timestamped CSV and off for ODDS ``.mat`` files and tables without a timestamp."""

from __future__ import annotations

import json

import numpy as np

from streamad.connectors.odds import MatSource
from streamad.connectors.sinks import NullSink
from streamad.pipeline import Pipeline
from tests.conftest import run_cli

SPIKE, SHIFT, FROZEN = 3000, (4000, 4060), (5000, 5080)


def one_sensor(path, n=6000, seed=5):
    """A smooth sensor (a daily-like cycle and AR(1) noise), once a second, with a planted
    spike, a level shift and a stretch where it repeats its last value."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, np.sqrt(1 - 0.81), n)
    noise = np.empty(n)
    prev = 0.0
    for i in range(n):
        prev = 0.9 * prev + e[i]
        noise[i] = prev
    v = 20 + 2 * np.sin(2 * np.pi * np.arange(n) / 600) + noise
    v[SPIKE] += 8
    v[SHIFT[0] : SHIFT[1]] += 4
    v[FROZEN[0] : FROZEN[1]] = v[FROZEN[0]]
    lines = ["timestamp,value"] + [f"{1_767_225_600 + i},{x:.4f}" for i, x in enumerate(v)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_one_sensor_stream_gets_its_spike_shift_and_frozen_stretch_named(tmp_path):
    data = one_sensor(tmp_path / "sensor.csv")
    out = tmp_path / "detections.jsonl"
    r = run_cli("replay", str(data), "--out", str(out), "--no-progress", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "temporal features on" in r.stdout
    alarms = {}
    for line in out.read_text().splitlines():
        d = json.loads(line)
        alarms[d["source"]["offset"] - 2] = d["features"][0]  # line numbers: the header is line 1
    assert all(f["name"] == "value" and f["behaviour"] and f["description"].startswith("value: ") for f in alarms.values())
    assert alarms[SPIKE]["behaviour"] in ("jump", "level")
    shift = [alarms[i] for i in range(*SHIFT) if i in alarms]
    assert shift and shift[0]["behaviour"] in ("jump", "level", "drift")
    frozen = [alarms[i] for i in range(FROZEN[0] + 10, FROZEN[1]) if i in alarms]
    assert len(frozen) >= 0.9 * (FROZEN[1] - FROZEN[0] - 10)
    assert all(f["behaviour"] == "stuck" for f in frozen)
    assert frozen[-1]["description"].startswith("value: stuck at ")
    assert frozen[-1]["description"].endswith(f"for {FROZEN[1] - FROZEN[0] - 1} records")


def test_auto_is_off_without_a_timestamp_and_on_asks_for_it(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "table.csv"
    data.write_text("a,b\n" + "\n".join(f"{x:.3f},{y:.3f}" for x, y in rng.normal(size=(300, 2))) + "\n")
    r = run_cli("replay", str(data), "--no-progress", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "temporal features off (features.temporal: auto, and the records carry no event times)" in r.stdout
    r = run_cli("replay", str(data), "--no-progress", "--out-dir", str(tmp_path), "--force", env={"STREAMAD_FEATURES__TEMPORAL": "on"})
    assert r.returncode == 0, r.stderr
    assert "temporal features" not in r.stdout  # asked for: no note needed


def test_an_odds_file_never_builds_the_stage(odds_dir, tmp_path):
    """ODDS figures stay as they were: a .mat file's records carry no event times, so
    auto leaves the stage off (the lane's model has none)."""
    r = run_cli("replay", str(odds_dir / "cardio.mat"), "--no-progress", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "temporal features off" in r.stdout
    from streamad.config import load_settings

    p = Pipeline(load_settings(env={}), NullSink())
    p.run(MatSource(odds_dir / "cardio.mat", limit=600))
    assert all(lm.model.temporal is None for lm in p.lanes.values())
