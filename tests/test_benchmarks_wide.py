"""The many-sensor benchmark's streams and report (benchmarks/wide_streams.py)."""

from __future__ import annotations

import numpy as np

from benchmarks import wide_streams as ws


def test_each_stream_plants_its_events_and_labels_exactly_them():
    X, y, events = ws.make_stream(12, 8000, seed=4)
    assert X.shape == (8000, 12) and np.isfinite(X).all()
    kinds = [k for k, _, _ in events]
    assert kinds[:2] == ["stuck", "shift"] and kinds.count("spike") == len([k for k in kinds if k == "spike"]) >= 5
    planted = np.zeros(8000, dtype=bool)
    for _, a, b in events:
        planted[a : b + 1] = True
    assert np.array_equal(planted, y == 1)
    (_, a, b) = events[0]
    assert np.ptp(X[a : b + 1], axis=0).tolist().count(0.0) == 1  # one sensor holds its value
    spikes = sorted(a for k, a, _ in events if k == "spike")
    assert np.all(np.diff(spikes) >= 500) and spikes[0] >= 2000
    assert np.array_equal(ws.make_stream(12, 8000, seed=4)[0], X)


def test_the_report_has_a_row_for_the_width(capsys):
    assert ws.main(["--sensors", "4", "--records", "4000", "--seeds", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| 4 | 21 |" in out and "streamad ÷ river" in out
    assert ws.main(["--sensors", "x", "--no-write"]) == 2
