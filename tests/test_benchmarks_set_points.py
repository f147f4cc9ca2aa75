"""The lasting-step benchmark's streams and its scoring (benchmarks/set_points.py)."""

from __future__ import annotations

import numpy as np

from benchmarks import set_points as sp


def test_the_step_comes_at_its_record_on_one_sensor_and_stays():
    X, ts = sp.stream(at=2_000, size=10.0, seed=1)
    assert len(X) == 2_000 + sp.AFTER and np.all(np.diff(ts) == 1.0)
    before, after = X[1_000:2_000], X[2_000:3_000]
    moved = after.mean(axis=0) - before.mean(axis=0)
    assert abs(moved[1] - 3.0) < 0.3 and np.all(np.abs(moved[[0, 2]]) < 0.3)
    assert abs(X[-1_000:, 1].mean() - after[:, 1].mean()) < 0.3


def test_settling_is_where_the_first_quiet_stretch_begins():
    span, most = sp.SETTLED
    alarms = np.zeros(10_000, dtype=bool)
    alarms[500:1_300] = True  # a burst just after the step at 500
    alarms[2_400::400] = True  # then sparse ones, a stretch apart from it
    assert sp.settle(alarms, 500) == 800 - most  # the burst's last few fit in the allowance
    loud = np.ones(5_000, dtype=bool)
    assert sp.settle(loud, 1_000) == 4_000  # never: the records after the step
    sparse = np.zeros(5_000, dtype=bool)
    sparse[1_000 : 1_000 + most] = True
    assert sp.settle(sparse, 1_000) == 0  # at most ``most`` in the first stretch: settled at once
