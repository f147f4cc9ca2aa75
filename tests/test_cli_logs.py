"""What an operator reads: drift alarms collapsed per feature, numbers printed so that
they make sense, the demo speaking at once, a progress bar on a terminal."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamad.app.outputs import default_drift_path
from streamad.drift import DriftEvent, DriftLog
from streamad.records import Lane
from tests.conftest import ROOT, run_cli


def write_random_walk(path: Path, n: int = 30_000, seed: int = 3) -> Path:
    """A feature that never stops drifting (a random walk) beside one that never drifts."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=n))
    noise = rng.normal(size=n)
    with open(path, "w") as f:
        f.write("walk,noise\n")
        f.writelines(f"{w:.4f},{z:.4f}\n" for w, z in zip(walk, noise))
    return path


def test_repeated_drift_alarms_are_logged_once_per_feature_and_summarised(tmp_path: Path) -> None:
    src = write_random_walk(tmp_path / "walk.csv")
    r = run_cli("replay", str(src), "--out-dir", str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in default_drift_path(src, tmp_path / "out").read_text().splitlines()]
    walk = [e for e in events if e["feature"] == "walk"]
    assert len(walk) >= 3 and not [e for e in events if e["feature"] == "noise"]
    drift_lines = [line for line in r.stderr.splitlines() if "streamad.drift" in line]
    # One line for the first alarm of each feature (and of the score stream), one summary line each at the end.
    subjects = {e["feature"] or "score stream" for e in events}
    assert len(drift_lines) == 2 * len(subjects), r.stderr
    first = [line for line in drift_lines if "drift in feature 'walk'" in line]
    assert len(first) == 1 and f"at offset {walk[0]['source']['offset']:,}" in first[0]
    (summary,) = [line for line in drift_lines if "drift: feature 'walk'" in line]
    lo, hi = walk[0]["source"]["offset"], walk[-1]["source"]["offset"]
    assert f": {len(walk)} alarms between offset {lo:,} and {hi:,}" in summary
    # The file still has every event, and the replay summary counts them all.
    assert re.search(rf"^drift alarms +{len(events)} ", r.stdout, re.M)


def test_a_printed_statistic_always_exceeds_its_printed_threshold(caplog: pytest.LogCaptureFixture) -> None:
    log = DriftLog(report_every=3600.0, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="streamad.drift"):
        for i, stat in enumerate((1.0004, 1.0000004, 5.0000001)):
            log.log(DriftEvent(Lane("s"), "feature", "psi", stat, 1.0 if stat < 2 else 5.0, 100 * (i + 1), f"x{i}"))
    for message in caplog.messages:
        value, threshold = re.search(r"psi (\S+) > (\S+)", message).groups()  # type: ignore[union-attr]
        assert float(value) > float(threshold), message


def test_ongoing_drift_gets_one_line_per_interval_and_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    """A long-running worker: the count of alarms since the last line, at most once per ``report_every``."""
    now = [0.0]
    log = DriftLog(report_every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="streamad.drift"):
        for i in range(100):  # an alarm every 10 s for 1,000 s
            now[0] = 10.0 * i
            log.log(DriftEvent(Lane("pumps", 3), "feature", "psi", 1.5, 1.0, 1000 * (i + 1), "flow"))
        log.close()
    lines = caplog.messages
    assert "drift in feature 'flow' of pumps[3] at offset 1,000: psi 1.5 > 1" in lines[0]
    periodic = [line for line in lines[1:-1]]
    assert 14 <= len(periodic) <= 17 and all("more alarms" in line for line in periodic)
    assert sum(int(re.search(r": (\d+) more alarms", line).group(1)) for line in periodic) <= 99  # type: ignore[union-attr]
    assert lines[-1] == "drift: feature 'flow' of pumps[3]: 100 alarms between offset 1,000 and 100,000; psi up to 1.5"


def test_demo_says_what_it_does_before_the_heavy_imports(tmp_path: Path) -> None:
    r = run_cli("demo", "--records", "2000", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "generating a 2,000-record sensor stream (seed 7) with planted anomalies and drift..."
    assert any(line.startswith("scoring it with") for line in lines) and any(line.startswith("plotting to") for line in lines)


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(tmp_path: Path) -> None:
    src = write_random_walk(tmp_path / "walk.csv", n=20_000)
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamad", "replay", str(src), "--no-drift", "--out-dir", str(tmp_path / "o")],
        stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert b"replaying (B)" in seen and b"%" in seen
    assert re.search(rb"^records read +20,000", out, re.M) and b"\x1b[" not in out  # stdout, a pipe here, stays plain
    r = run_cli("replay", str(src), "--no-drift", "--force", "--out-dir", str(tmp_path / "o"))
    assert r.returncode == 0 and "replaying" not in r.stderr
