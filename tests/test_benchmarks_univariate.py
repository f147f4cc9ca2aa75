"""The univariate benchmark's streams and its scoring (benchmarks/univariate.py)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from benchmarks import univariate as uv


@pytest.mark.parametrize("kind", [k for k in uv.KINDS if k != "none"])
def test_each_kind_plants_its_outliers_after_the_warm_up_apart_from_each_other(kind):
    x, y, ts = uv.make_stream(kind, seed=3)
    starts = np.flatnonzero(np.diff(np.concatenate([[0], y.astype(int)])) == 1)
    ends = np.flatnonzero(np.diff(np.concatenate([y.astype(int), [0]])) == -1)
    assert 3 <= len(starts) <= uv.EVENTS  # fewer when the period is long: they stay five periods apart
    assert starts[0] >= 2000 and ends[-1] < len(x)
    assert np.all(starts[1:] - ends[:-1] >= 200)  # never two outliers in one stretch
    lengths = ends - starts + 1
    if kind in ("global", "contextual"):
        assert np.all(lengths == 1)
    else:
        assert np.all(lengths >= 40)
    assert np.all(np.diff(ts) == 1.0) and np.isfinite(x).all()


def test_the_stream_is_the_same_for_a_seed_and_differs_between_seeds():
    a, b, c = uv.make_stream("trend", 1), uv.make_stream("trend", 1), uv.make_stream("trend", 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_a_global_outlier_stands_out_from_its_neighbours_and_nothing_else_does():
    x, y, _ = uv.make_stream("global", 0)
    i = np.flatnonzero(y)
    off = np.abs(x[i] - (x[i - 1] + x[i + 1]) / 2)  # 3-5 spreads (about 0.7 each) from the sine
    assert off.min() > 1.5
    j = np.flatnonzero(~y[1:-1] & ~y[:-2] & ~y[2:]) + 1
    assert np.abs(x[j] - (x[j - 1] + x[j + 1]) / 2).max() < 1.0


def test_evaluate_counts_hits_false_alarms_and_the_settling_records():
    n = 3000
    y = np.zeros(n, dtype=bool)
    y[1500] = True  # a point outlier
    y[2000:2050] = True  # a pattern outlier
    alarms = np.zeros(n, dtype=bool)
    alarms[1505] = True  # 5 after the point: a hit, not a false alarm
    alarms[2600] = True  # a false alarm
    alarms[500] = True  # before the metrics start: not counted
    scores = alarms.astype(float)
    r = uv.evaluate(y, scores, alarms)
    assert (r["events"], r["hits"], r["false_alarms"]) == (2, 1, 1)
    assert r["normal"] == n - uv.FIRST - 51 - 2 * uv.AFTER
    assert r["auc"] == pytest.approx(0.5, abs=0.01)  # the scores (the alarms) miss the labelled records
    assert uv.evaluate(y, y.astype(float), alarms)["auc"] == 1.0


def test_windowed_gaussian_reads_only_the_values_before():
    x = np.r_[np.zeros(10), 1.0, np.zeros(5)]
    x[:10] = np.arange(10) % 2  # 0, 1, 0, 1, ...: mean 0.5, sd ~0.53
    z = uv.windowed_gaussian(x, window=4)
    assert z[0] == 0.0 and z[1] == 0.0  # fewer than two values before
    prev = x[6:10]
    assert z[10] == pytest.approx(abs(1.0 - prev.mean()) / prev.std(ddof=1))


def test_shingle_rows_hold_the_value_then_the_ones_before():
    S = uv.shingle(np.arange(5.0), width=3)
    assert S.tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_the_docstring_examples_run():
    failed, attempted = doctest.testmod(uv)
    assert attempted > 0 and failed == 0

