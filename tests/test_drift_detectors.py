"""Drift detectors: planted mean shifts and variance changes raise alarms, stationary
streams (independent or autocorrelated) raise none, and the state checkpoints and
restores exactly, alone and inside the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

from streamad import checkpoint
from streamad.config import DriftSettings, load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import DriftEventsFile, MemorySink
from streamad.drift import DriftEvent, DriftMonitor, FeatureDrift, ScoreDrift
from streamad.errors import ConfigError
from streamad.pipeline import Observer, Pipeline
from streamad.records import Batch, Lane
from streamad.state import StateStore

N, WINDOW, CHANGE = 16_000, 256, 9_000


def windows(X: np.ndarray, size: int = WINDOW):
    for i in range(0, len(X), size):
        yield i, X[i : i + size]


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Unit-variance AR(1): the autocorrelation of real sensor data."""
    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, np.sqrt(1 - phi**2), n))


def feature_alarms(X: np.ndarray, **kw) -> list[tuple[int, int]]:
    fd = FeatureDrift(X.shape[1], **kw)
    return [(start, int(j)) for start, w in windows(X) for j in fd.update(w)]


def score_alarms(s: np.ndarray, **kw) -> list[int]:
    sd = ScoreDrift(**kw)
    return [start for start, w in windows(s) if sd.update(w)]


def sensors(seed: int, phi: float = 0.0, d: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if phi == 0.0:
        return rng.normal(size=(N, d))
    return np.column_stack([ar1(rng, N, phi) for _ in range(d)])


# -- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["psi", "ks"])
@pytest.mark.parametrize("seed", range(3))
def test_mean_shift_of_one_feature_is_found_in_that_feature_only(method: str, seed: int) -> None:
    X = sensors(seed, phi=0.5)
    X[CHANGE:, 2] += 1.5
    alarms = feature_alarms(X, method=method)
    assert alarms, "a 1.5 sd shift went unnoticed"
    assert {j for _, j in alarms} == {2}
    first = alarms[0][0]
    assert CHANGE <= first <= CHANGE + 2_000  # within one recent window of the change
    assert len(alarms) == 1  # a step is one drift: after it the feature takes a fresh reference


@pytest.mark.parametrize("factor", [3.0, 0.3])
@pytest.mark.parametrize("seed", range(3))
def test_variance_change_is_found(factor: float, seed: int) -> None:
    """PSI, with its finer tail bins, sees a change of spread (KS, the largest gap
    between two CDFs, hardly moves when only the spread changes: PSI is the default)."""
    X = sensors(5 + seed, phi=0.5)
    X[CHANGE:, 1] *= factor  # same mean, wider or narrower
    alarms = feature_alarms(X, method="psi")
    assert {j for _, j in alarms} == {1}
    assert CHANGE <= alarms[0][0] <= CHANGE + 2_000


@pytest.mark.parametrize("method", ["psi", "ks"])
@pytest.mark.parametrize("phi", [0.0, 0.9, 0.98])
def test_no_drift_no_alarm(method: str, phi: float) -> None:
    """Stationary streams, from independent to as autocorrelated as the demo's
    temperature sensor (phi 0.98), raise no alarm at the default levels."""
    for seed in range(3):
        assert feature_alarms(sensors(100 + seed, phi=phi), method=method) == []


def test_statistic_grows_with_the_shift() -> None:
    rng = np.random.default_rng(3)
    stats = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        fd = FeatureDrift(1, reference=2000, recent=2000)
        fd.update(rng.normal(size=(2000, 1)))
        fd.update(rng.normal(size=(2000, 1)) + shift)
        stats.append(fd.statistic[0] if np.isfinite(fd.statistic[0]) else fd.fired[0])
    assert stats == sorted(stats) and stats[0] < 0.05 and stats[-1] > 1.0


def test_constant_feature_that_starts_moving_is_drift() -> None:
    X = sensors(7)
    X[:, 0] = 1.0
    X[CHANGE:, 0] = np.random.default_rng(0).normal(1.0, 1.0, N - CHANGE)
    assert {j for _, j in feature_alarms(X)} == {0}


# -- scores --------------------------------------------------------------------------------------


def scores(seed: int, phi: float = 0.7) -> np.ndarray:
    """Chi-square-like scores of an autocorrelated stream, as a Mahalanobis detector gives."""
    rng = np.random.default_rng(seed)
    return sum(ar1(rng, N, phi) ** 2 for _ in range(4))


@pytest.mark.parametrize("seed", range(3))
def test_score_mean_shift_up_is_found(seed: int) -> None:
    s = scores(seed)
    s[CHANGE:] += 2.0
    alarms = score_alarms(s)
    assert alarms and CHANGE <= alarms[0] <= CHANGE + 2_000


@pytest.mark.parametrize("seed", range(3))
def test_score_variance_increase_is_found(seed: int) -> None:
    """The data getting noisier spreads scores upwards: the median rank rises."""
    rng = np.random.default_rng(seed)
    z = np.column_stack([ar1(rng, N, 0.7) for _ in range(4)])
    z[CHANGE:] *= 1.5
    alarms = score_alarms((z**2).sum(axis=1))
    assert alarms and CHANGE <= alarms[0] <= CHANGE + 2_000


@pytest.mark.parametrize("seed", range(5))
def test_score_no_drift_no_alarm(seed: int) -> None:
    assert score_alarms(scores(200 + seed)) == []


def test_scores_falling_are_not_drift() -> None:
    """A model that keeps learning scores lower: one-sided on purpose."""
    s = scores(9)
    s[CHANGE:] *= 0.5
    assert score_alarms(s) == []


def test_spikes_and_a_short_burst_are_not_drift() -> None:
    s = scores(11)
    rng = np.random.default_rng(0)
    s[rng.choice(np.arange(6000, N), 40, replace=False)] *= 50  # isolated anomalies
    s[12_000:12_200] += 30  # a burst of 200 anomalous records, like the demo's level shifts
    assert score_alarms(s) == []


# -- checkpoints ---------------------------------------------------------------------------------


def test_feature_and_score_drift_resume_exactly_from_a_checkpoint() -> None:
    X = sensors(1, phi=0.5)
    X[CHANGE:, 3] += 1.5
    s = scores(1)
    s[CHANGE:] += 2.0

    def run(fd: FeatureDrift, sd: ScoreDrift, start: int, stop: int) -> list[tuple[int, list[int], bool]]:
        return [(start + i, fd.update(w).tolist(), sd.update(s[start + i : start + i + WINDOW])) for i, w in windows(X[start:stop])]

    whole_f, whole_s = FeatureDrift(4), ScoreDrift()
    whole = run(whole_f, whole_s, 0, N)
    assert any(f for _, f, _ in whole) and any(a for _, _, a in whole)
    for cut in (3_072, 7_168, 9_984, 12_032):  # collecting references, filling, monitoring, after alarms
        fd, sd = FeatureDrift(4), ScoreDrift()
        got = run(fd, sd, 0, cut)
        state = checkpoint.loads(checkpoint.dumps({"f": fd.state_dict(), "s": sd.state_dict()}))
        fd2, sd2 = FeatureDrift(4), ScoreDrift()  # configured as the checkpointed ones were
        fd2.load_state_dict(state["f"])
        sd2.load_state_dict(state["s"])
        np.testing.assert_array_equal(fd2.counts, fd.counts)
        got += run(fd2, sd2, cut, N)
        assert got == whole, f"resumed at {cut}"
        np.testing.assert_array_equal(fd2.statistic, whole_f.statistic)
        assert sd2.statistic == whole_s.statistic or (np.isnan(sd2.statistic) and np.isnan(whole_s.statistic))


def _pipeline_events(X: np.ndarray, store: StateStore | None, settings, start: int = 0, stop: int | None = None):
    class Collect(Observer):
        def __init__(self) -> None:
            self.events: list[DriftEvent] = []

        def on_window(self, r) -> None:
            self.events += list(r.drift.events)

    c = Collect()
    p = Pipeline(settings, MemorySink(), observers=[c], store=store)
    stop = len(X) if stop is None else stop
    src = ArraySource(X[:stop], chunk_rows=WINDOW)
    p.run(src)
    return c.events, p


def test_drift_state_is_part_of_the_lane_checkpoint(tmp_path) -> None:
    s = load_settings(overrides={"window": {"size": WINDOW, "initial_size": None}, "drift": {"reference_records": 3000, "recent_records": 1500}}, env={})
    X = sensors(4, phi=0.5)
    X[CHANGE:, 0] += 2.0
    whole, _ = _pipeline_events(X, None, s)
    assert [(e.kind, e.feature) for e in whole if e.kind == "feature"] == [("feature", "x0")]
    store = StateStore(tmp_path)
    first, p = _pipeline_events(X, store, s, stop=6_400)
    state = next(iter(p.lanes.values())).state_dict()
    assert state["drift"]["features"]["edges"] is not None
    second, _ = _pipeline_events(X, store, s)  # resumes at 6,401 from the checkpoint
    assert [(e.kind, e.feature, e.offset) for e in first + second] == [(e.kind, e.feature, e.offset) for e in whole]


def test_old_checkpoints_without_drift_state_still_load(tmp_path) -> None:
    s = load_settings(overrides={"window": {"size": WINDOW}}, env={})
    store = StateStore(tmp_path)
    _, p = _pipeline_events(sensors(2), store, s, stop=2_000)
    lane = next(iter(p.lanes))
    state = store.load(lane)
    del state["drift"]
    store.save(lane, state)
    p2 = Pipeline(s, MemorySink(), store=store)
    assert p2.lane(lane, 4).learned == state["learned"]


# -- actions and settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action,act_on,kind,detector_told,threshold_reset",
    [
        ("reopen_warmup", ["score"], "score", True, False),
        ("reopen_warmup", ["score"], "feature", False, False),
        ("reset_threshold", ["score", "feature"], "feature", False, True),
        ("reopen_warmup_and_reset_threshold", ["feature"], "feature", True, True),
        ("none", ["score", "feature"], "score", False, False),
    ],
)
def test_drift_actions(action, act_on, kind, detector_told, threshold_reset) -> None:
    s = load_settings(overrides={"drift": {"action": action, "act_on": act_on}}, env={})
    p = Pipeline(s, MemorySink())
    lm = p.lane(Lane("s"), 2)
    told, resets = [], []
    lm.detector.on_drift = told.append  # type: ignore[method-assign]
    lm.threshold.reset = lambda: resets.append(1)  # type: ignore[method-assign]
    monitor = DriftMonitor(Lane("s"), ["a", "b"], s.drift)
    e = DriftEvent(Lane("s"), kind, "psi", 2.0, 1.0, 10, "a" if kind == "feature" else None)
    # The monitor stamps the configured action on the events it raises.
    from dataclasses import replace

    stamped = replace(e, action=action if kind in act_on else "none")
    lm.on_drift([stamped])
    assert told == ([kind] if detector_told else [])
    assert resets == ([1] if threshold_reset else [])
    assert monitor.settings.action == action


def test_drift_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="drift.action"):
        load_settings(overrides={"drift": {"action": "panic"}}, env={})
    with pytest.raises(ConfigError, match="KS statistic"):
        load_settings(overrides={"drift": {"method": "ks", "threshold": 1.5}}, env={})
    s = load_settings(env={"STREAMAD_DRIFT__METHOD": "ks", "STREAMAD_DRIFT__ACT_ON": "[score, feature]"})
    assert s.drift.feature_threshold == 0.35 and s.drift.act_on == ["score", "feature"]


def test_events_file_holds_one_json_line_per_event(tmp_path) -> None:
    import orjson

    sink = DriftEventsFile(tmp_path / "d" / "drift.jsonl", append=True)
    e = DriftEvent(Lane("pumps", 2), "feature", "psi", 1.7, 1.0, 99, "temperature", event_time=1.7e9, action="none")
    sink.write([e, DriftEvent(Lane("pumps", 2), "score", "page_hinkley", 5.5, 5.0, 120)])
    sink.close()
    lines = [orjson.loads(x) for x in (tmp_path / "d" / "drift.jsonl").read_bytes().splitlines()]
    assert [x["kind"] for x in lines] == ["feature", "score"]
    assert lines[0]["source"] == {"stream": "pumps", "partition": 2, "offset": 99}
    assert lines[0]["timestamp"].startswith("2023-11-14T22:13:20")
    assert lines[1]["feature"] is None and lines[1]["id"] == "pumps/2/120/score"
    # A worker appends: a restart keeps the events before it.
    again = DriftEventsFile(tmp_path / "d" / "drift.jsonl", append=True)
    again.write([e])
    again.close()
    assert len((tmp_path / "d" / "drift.jsonl").read_bytes().splitlines()) == 3


def test_drift_state_made_with_other_settings_starts_afresh() -> None:
    rng = np.random.default_rng(0)
    fd = FeatureDrift(2, reference=300, recent=200)
    fd.update(rng.normal(size=(600, 2)))
    state = fd.state_dict()
    same = FeatureDrift(2, reference=300, recent=200)
    same.load_state_dict(state)
    assert same.ready and np.array_equal(same.edges, fd.edges)
    other = FeatureDrift(2, reference=300, recent=100)
    other.load_state_dict(state)
    assert not other.ready and other.recent == 100


def test_monitor_waits_for_the_detector_warmup_before_watching_scores() -> None:
    m = DriftMonitor(Lane("s"), ["a"], DriftSettings(reference_records=500, recent_records=500))
    X = np.random.default_rng(0).normal(size=(256, 1))
    for i in range(10):
        m.update(Batch(Lane("s"), X, np.arange(256) + 256 * i), np.full(256, 1e9), warmup=True)
    assert m.score is not None and not m.score.ready and m.score._collect == []


# -- the compiled work against the numpy expressions it replaced ---------------------------------


def _numpy_statistic(fd: FeatureDrift) -> np.ndarray:
    n = fd.counts.sum(axis=1, keepdims=True)
    if fd.method == "ks":
        return np.abs(np.cumsum(fd.counts / n - fd.ref_counts / fd.ref_n[:, None], axis=1)).max(axis=1)
    p = (fd.counts + 0.5) / (n + 0.5 * fd.nb)
    p0 = (fd.ref_counts + 0.5) / (fd.ref_n[:, None] + 0.5 * fd.nb)
    return ((p - p0) * np.log(p / p0)).sum(axis=1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), method=st.sampled_from(["psi", "ks"]))
def test_counts_and_statistics_are_those_of_the_numpy_expressions(seed: int, d: int, method: str) -> None:
    """The counts are the histogram of the ring's values binned at the edges (ties, NaN
    and repeated values included), the statistic the numpy formula, window by window of
    random sizes through re-referencing after alarms."""
    rng = np.random.default_rng(seed)
    n = 9_000
    X = rng.normal(size=(n, d))
    X[rng.random((n, d)) < 0.02] = np.nan
    X[:, 0] = np.round(X[:, 0])  # values on the edges
    X[4_000:, -1] += 3.0  # an alarm, then a new reference
    fd = FeatureDrift(d, method=method, reference=1_000, recent=500)
    i = 0
    while i < n:
        w = int(rng.integers(1, 700))
        fd.update(X[i : i + w])
        i += w
        if fd.ready:
            held = fd.ring[: fd.filled]
            bins = (held[:, :, None] >= fd.edges[None, :, :]).sum(axis=2)
            assert np.array_equal(fd.ring_bins[: fd.filled], bins)
            assert np.array_equal(fd.counts, np.stack([np.bincount(bins[:, j], minlength=fd.nb) for j in range(d)]))
        if fd.filled == fd.recent:
            expected = _numpy_statistic(fd)
            got = fd._statistic()
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 40))
def test_score_ranks_and_medians_are_those_of_the_numpy_expressions(seed: int, chunk: int) -> None:
    from streamad.drift import kernel

    rng = np.random.default_rng(seed)
    grid = np.quantile(np.round(rng.exponential(size=300), 1), np.linspace(0, 1, 201))  # ties in the grid
    scores = np.round(rng.exponential(size=int(rng.integers(0, 300))), 1)
    scores[rng.random(len(scores)) < 0.05] = np.nan
    pending = rng.random(int(rng.integers(0, chunk)))
    medians, left = kernel.chunk_medians(scores, grid, pending, chunk)
    s = scores[np.isfinite(scores)]
    lo, hi = np.searchsorted(grid, s, side="left"), np.searchsorted(grid, s, side="right")
    ranks = np.clip((lo + hi) / (2.0 * (len(grid) - 1)) - 0.5 / (len(grid) - 1), 0.0, 1.0)  # mid-ranks among the grid
    u = np.concatenate([pending, ranks])
    m = len(u) // chunk
    assert np.array_equal(medians, np.median(u[: m * chunk].reshape(m, chunk), axis=1))
    assert np.array_equal(left, u[m * chunk :])


def test_page_hinkley_on_many_values_is_one_at_a_time() -> None:
    from streamad.drift import PageHinkley

    values = np.random.default_rng(3).random(400) * np.r_[np.ones(200), np.full(200, 1.6)]
    one, many = PageHinkley(delta=0.05, threshold=5.0), PageHinkley(delta=0.05, threshold=5.0)
    hits = [i for i, v in enumerate(values) if one.update(float(v))]
    assert hits, "the step went unnoticed"
    first = many.update_many(values)
    assert first == hits[0]
    fresh = PageHinkley(delta=0.05, threshold=5.0)
    for v in values[: first + 1]:
        fresh.update(float(v))
    assert many.state_dict() == fresh.state_dict()
