"""A replay reconciles against the source's own count of its records, and a pipe or
/dev/stdin replays like a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import numpy as np

from streamad.app.replay import Summary
from streamad.pipeline import Counts
from tests.conftest import ROOT


def test_a_reader_that_drops_rows_cannot_reconcile():
    counts = Counts(read=1001, scored=1001)
    ok = Summary(source="f.csv", counts=counts, seconds=1.0, detector="d", window_size="8", records_in_source=1001)
    assert ok.reconciled and "= records in source" in ok.render()
    short = Summary(source="f.csv", counts=counts, seconds=1.0, detector="d", window_size="8", records_in_source=3000)
    assert not short.reconciled
    assert "NO: the source holds 3,000 records, 1,001 were read" in short.render()
    assert short.as_dict()["reconciled"] is False


def _csv(n: int) -> bytes:
    rng = np.random.default_rng(0)
    return ("a,b\n" + "".join(f"{x:.5f},{y:.5f}\n" for x, y in rng.normal(size=(n, 2)))).encode()


def _replay(arg: str, tmp_path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streamad", "replay", arg, "--out-dir", str(tmp_path / "out"), "--no-progress"],
        input=stdin, capture_output=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_stdin_replays_and_reconciles(tmp_path):
    r = _replay("/dev/stdin", tmp_path, stdin=_csv(700))
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert re.search(r"^records read +700$", out, re.M)
    assert re.search(r"^records in source +700 ", out, re.M)
    assert "reconciled         yes" in out


def test_a_fifo_replays_and_reconciles(tmp_path):
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    data = _csv(500)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed)
    t.start()
    r = _replay(str(fifo), tmp_path)
    t.join()
    assert r.returncode == 0, r.stderr
    assert re.search(r"^records read +500$", r.stdout.decode(), re.M)


def test_the_replay_recorder_keeps_six_bytes_a_labelled_record_and_nothing_otherwise():
    from streamad.app.replay import Recorder
    from streamad.pipeline import WindowResult
    from streamad.records import Batch, Lane

    def window(labels):
        b = Batch(Lane("s"), np.zeros((256, 2)), np.arange(256), labels=labels)
        return WindowResult(Lane("s"), b, b.X, np.linspace(0, 1, 256), 0.5, np.linspace(0, 1, 256) > 0.5, None, 0.0)  # type: ignore[arg-type]

    rec = Recorder(Recorder.QUALITY)
    labels = (np.arange(256) % 50 == 0).astype(np.int8)
    for _ in range(10):
        rec.on_window(window(labels))
    kept = sum(a.nbytes for parts in rec._parts.values() for a in parts)
    assert kept == 10 * 256 * 6 and rec.quality() is not None
    bare = Recorder(Recorder.QUALITY)
    for _ in range(10):
        bare.on_window(window(None))
    assert sum(len(parts) for parts in bare._parts.values()) == 0 and bare.quality() is None
