"""The commands freeze the heap once, after the first window (streamad/app/heap.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamad.app.heap import SettleHeap
from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import NullSink
from streamad.pipeline import Observer, Pipeline, WindowResult


class FreezeCounts(Observer):
    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_window(self, result: WindowResult) -> None:
        self.counts.append(gc.get_freeze_count())


def test_the_heap_is_frozen_after_the_first_window_only() -> None:
    settings = load_settings(None, {"detector": {"name": "gaussian"}}, env={})
    seen = FreezeCounts()
    X = np.random.default_rng(0).normal(size=(600, 3))
    gc.unfreeze()
    try:
        # The observer after SettleHeap sees each window once SettleHeap has.
        Pipeline(settings, NullSink(), observers=[SettleHeap(), seen]).run(ArraySource(X, stream="t"))
        first = seen.counts[0]
        assert first > 0 and len(seen.counts) > 3
        # Nothing is frozen after that (frozen objects freed by their last reference leave it).
        assert max(seen.counts[1:]) <= first
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("command", ["replay", "demo"])
def test_the_commands_run_with_a_frozen_heap(tmp_path: Path, command: str) -> None:
    csv = tmp_path / "s.csv"
    rows = np.random.default_rng(1).normal(size=(300, 2))
    csv.write_text("a,b\n" + "\n".join(f"{a:.4f},{b:.4f}" for a, b in rows) + "\n")
    args = [command, str(csv)] if command == "replay" else [command, "--records", "2000"]
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count(), file=sys.stderr))\n"
        "from streamad.app.cli import main\n"
        f"main({args!r} + ['--out-dir', {str(tmp_path)!r}, '--no-progress', '--detector', 'gaussian'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    frozen = [int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("frozen ")]
    assert frozen and frozen[0] > 0
