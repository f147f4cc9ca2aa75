"""Ctrl-C (SIGINT) and SIGTERM in the middle of a replay, through the real command line:
the replay stops at a batch boundary, flushes every output and still writes its summary,
whose counts reconcile with what reached the files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streamad.app.outputs import default_output_paths
from tests.conftest import ROOT


def write_paced_csv(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        f.write("ts,a,b\n")
        for i in range(n):
            f.write(f"{1_700_000_000 + i},{(i * 7919) % 101 / 10:.1f},{(i * 104729) % 89 / 10:.1f}\n")
    return path


def consumed(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r"^streamad_records_consumed_total\{[^}]*\} (\S+)$", body, re.M))


def start_and_interrupt(tmp_path: Path, sig: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A paced replay (20 records a second for 100 s) interrupted once records flow: the
    metrics endpoint says when they do, so no guess about how long start-up takes."""
    src = write_paced_csv(tmp_path / "in.csv", 2000)
    cmd = [
        sys.executable, "-m", "streamad", "replay", str(src), "--timestamp", "ts", "--speed", "20", "--emit", "all",
        "--out-dir", str(tmp_path / "out"), "--summary-json", str(tmp_path / "s.json"), "--no-progress",
        "--metrics-host", "127.0.0.1", "--metrics-port", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A child started from a background shell may inherit SIGINT ignored: undo that.
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, preexec_fn=restore)
    assert proc.stderr is not None
    port = None
    err_lines = []
    for line in proc.stderr:  # start-up logs the metrics address before the replay starts
        err_lines.append(line)
        m = re.search(r"serving Prometheus metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
        if m:
            port = int(m.group(1))
            break
    assert port is not None, "".join(err_lines)
    deadline = time.monotonic() + 120
    while consumed(port) < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(err_lines) + err), src


@pytest.mark.parametrize("sig, status, reason", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_mid_replay_flushes_outputs_and_writes_the_summary(tmp_path: Path, sig: int, status: int, reason: str) -> None:
    r, src = start_and_interrupt(tmp_path, sig)
    assert r.returncode == status, r.stderr
    assert "Traceback" not in r.stderr
    assert f"interrupted ({reason}): the summary covers the records read until then" in r.stdout
    assert "reconciled    yes" in r.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["interrupted"] and summary["stop_reason"] == reason
    assert 40 <= summary["read"] < 2000
    # With --emit all every scored record has a detection, and every one reached the file.
    detections = default_output_paths(src, tmp_path / "out")[0].read_text().splitlines()
    assert len(detections) == summary["scored"] == summary["read"]
    assert [json.loads(d)["source"]["offset"] for d in detections] == list(range(2, summary["read"] + 2))
