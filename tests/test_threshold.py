import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamad import checkpoint
from streamad.histogram import DecayedHistogram
from streamad.threshold import QuantileThreshold, SpotThreshold, fit_gpd_pwm


def draw(rng, dist, n):
    return {"normal": rng.normal, "exponential": rng.exponential, "lognormal": rng.lognormal}[dist](size=n) if dist != "pareto" else rng.pareto(3.0, size=n)


@pytest.mark.parametrize("dist", ["normal", "exponential", "lognormal", "pareto"])
def test_spot_false_alarm_rate_is_near_its_target(dist):
    rng = np.random.default_rng(11)
    thr = SpotThreshold(risk=2e-3)
    alarms = n = 0
    for _ in range(400):
        x = draw(rng, dist, 256)
        if not thr.warming_up:
            alarms += int((x > thr.value).sum())
            n += len(x)
        thr.update(x)
    assert 0.5 * 2e-3 < alarms / n < 2.0 * 2e-3


def test_spot_warms_up_with_a_small_sample_estimate_above_its_scores():
    thr = SpotThreshold(min_records=1000)
    thr.update(np.arange(500.0))
    # Too few scores for the tail proper; the exponential small-sample tail ends past
    # the largest score of a uniform: none of them would have alarmed.
    assert thr.early and not thr.warming_up and thr.value > 499
    # Beyond the scores seen, the small-sample tail's extrapolation: small, never 0; at
    # the threshold, the risk; below the top tenth, the scores' own share.
    p = thr.tail_probability(np.array([1e9, thr.value, 250.0]))
    assert 0.0 < p[0] < 1e-6 and abs(p[1] - 1e-3) < 1e-9 and abs(p[2] - 250 / 501) < 0.01


def test_spot_keeps_alarming_through_an_episode_until_reset():
    rng = np.random.default_rng(0)
    thr = SpotThreshold(risk=1e-3, half_life=5000)
    for _ in range(100):
        thr.update(rng.normal(size=256))
    before = thr.value
    for _ in range(50):
        x = rng.normal(size=256) + 10
        assert np.all(x > thr.value)  # the episode does not become normal
        thr.update(x)
    assert thr.value == before
    thr.reset()  # what a drift action does
    for _ in range(10):
        thr.update(rng.normal(size=256) + 10)
    assert 12 < thr.value < 15


def test_quantile_threshold_follows_a_level_shift():
    rng = np.random.default_rng(0)
    thr = QuantileThreshold(q=0.99, half_life=2000)
    for _ in range(40):
        thr.update(rng.normal(size=256))
    for _ in range(80):
        thr.update(rng.normal(size=256) + 10)
    assert abs(thr.value - 12.33) < 0.3


def test_gpd_pwm_recovers_known_shapes():
    rng = np.random.default_rng(2)
    assert abs(fit_gpd_pwm(rng.exponential(size=50_000))[0]) < 0.03
    shape, scale = fit_gpd_pwm(rng.pareto(3.0, size=50_000))  # Lomax(3): shape 1/3, scale 1/3
    assert abs(shape - 1 / 3) < 0.03 and abs(scale - 1 / 3) < 0.03


def test_quantile_threshold_tracks_its_quantile():
    rng = np.random.default_rng(0)
    thr = QuantileThreshold(q=0.99)
    for _ in range(100):
        thr.update(rng.normal(size=500))
    assert abs(thr.value - 2.326) < 0.1


@pytest.mark.parametrize("cls", [SpotThreshold, QuantileThreshold])
def test_threshold_checkpoint_round_trip(cls):
    rng = np.random.default_rng(4)
    a = cls()
    for _ in range(30):
        a.update(rng.exponential(size=200))
    b = cls()
    b.load_state_dict(checkpoint.loads(checkpoint.dumps(a.state_dict())))
    x = rng.exponential(size=200)
    assert b.value == a.value
    assert np.array_equal(a.tail_probability(x), b.tail_probability(x))
    a.update(x)
    b.update(x)
    assert a.value == b.value


def test_histogram_refits_its_range_and_keeps_quantiles():
    rng = np.random.default_rng(1)
    h = DecayedHistogram(bins=128, decay=1.0)
    h.update(rng.normal(size=1000))
    h.update(rng.normal(size=50_000) * 10)  # the range must widen
    assert abs(h.quantile(0.9) - np.quantile(rng.normal(size=200_000) * 10, 0.9)) < 1.0
    med, mad = h.median_mad()
    assert abs(med) < 0.5 and 5.5 < mad < 8.0  # mostly N(0, 10^2): MAD ~ 6.7


def test_histogram_decay_forgets():
    h = DecayedHistogram(bins=64, decay=0.5, min_init=10)
    h.update(np.zeros(100))
    for _ in range(20):
        h.update(np.full(100, 5.0))
    assert h.quantile(0.05) > 4.0


def test_histogram_density_is_smoothed_and_positive_everywhere():
    h = DecayedHistogram(bins=32, decay=1.0)
    h.update(np.random.default_rng(0).normal(size=5000))
    d = h.density(np.array([-100.0, 0.0, 100.0]))
    assert np.all(d > 0) and d[1] > 10 * d[0]


def test_tail_probability_from_the_first_window_counts_the_scores_seen():
    thr = SpotThreshold(min_records=100)
    assert thr.tail_probability(np.array([0.0, 1e9])).tolist() == [1.0, 1.0]  # nothing seen yet
    thr.update(np.arange(9.0), young=True)  # 0..8
    # (scores at least this high, plus one) / (scores seen, plus one)
    assert thr.tail_probability(np.array([-1.0, 4.0, 100.0])).tolist() == [1.0, 0.6, 0.1]


def test_a_few_hundred_scores_can_raise_an_alarm():
    rng = np.random.default_rng(3)
    thr = SpotThreshold(risk=1e-3, min_records=100)
    seen = 0
    for size in (8, 16, 32, 64, 128):  # the pipeline's first windows
        thr.update(rng.normal(size=size), young=True)
        seen += size
    assert seen == 248 and not thr.warming_up and thr.provisional
    # N(0, 1): the 1e-3 tail starts at 3.09; a small sample with a heavier prior says more
    assert 3.0 < thr.value < 6.0
    p = thr.tail_probability(np.array([0.0, thr.value, 8.0]))
    assert p[0] > 0.3 and abs(p[1] - 1e-3) < 1e-9 and p[2] < 1e-3


def test_the_first_windows_of_a_stream_teach_the_threshold_nothing():
    """Windows that begin within the first ``skip_first`` records were scored by a
    model that had learned fewer records than that: their scores are not learned, and
    a checkpoint keeps the count."""
    rng = np.random.default_rng(4)
    thr = SpotThreshold(risk=1e-3, min_records=100, skip_first=128)
    for size in (8, 16, 32, 64, 128):  # begin at 0, 8, 24, 56, 120: all within the first 128
        thr.update(rng.normal(size=size) * 10 + 30, young=True)  # an untrained model's scores
    assert thr.learned == 0 and thr.offered == 248
    # Only the small-sample estimate, from those inflated scores: above them (N(30, 10)'s
    # 1e-3 point is 61), so only what stands far out of a young model's scores alarms.
    assert thr.early and thr.value > 60
    assert thr.tail_probability(np.array([30.0]))[0] > 0.3
    again = SpotThreshold(risk=1e-3, min_records=100, skip_first=128)
    again.load_state_dict(thr.state_dict())
    later = rng.normal(size=256)
    for t in (thr, again):
        t.update(later, young=True)
    assert thr.learned == again.learned == 256 and not thr.warming_up and not thr.early and not again.early
    # The provisional value comes from the later scores alone: N(0, 1)'s 1e-3 tail is at 3.09.
    assert thr.value == again.value and 3.0 < thr.value < 6.0


def test_a_checkpoint_without_the_count_is_of_a_stream_past_its_first_records():
    thr = SpotThreshold(min_records=100, skip_first=128)
    state = thr.state_dict()
    del state["offered"]
    thr.load_state_dict(state)
    thr.update(np.arange(10.0), young=True)
    assert thr.learned == 10


def test_grown_up_scores_replace_the_provisional_threshold():
    rng = np.random.default_rng(5)
    thr = SpotThreshold(risk=1e-3, min_records=100)
    for _ in range(8):
        thr.update(rng.normal(size=64) * 4 + 10, young=True)  # a young model's scores run high
    provisional = thr.value
    assert thr.provisional and provisional > 20
    thr.update(rng.normal(size=50))  # too few grown-up scores: the provisional value stays
    assert thr.grown and thr.value == provisional and thr.learned == 50
    thr.update(rng.normal(size=200))
    assert not thr.provisional and 2.5 < thr.value < 6.0
    thr.update(rng.normal(size=64) * 4 + 10, young=True)  # a warm-up reopened by drift teaches nothing
    assert thr.learned == 250


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=600),
    st.sampled_from(["uniform", "normal", "exponential", "constant"]),
    st.integers(0, 2**31),
)
def test_tail_probability_stays_in_the_unit_interval_and_never_reaches_zero(queries, dist, seed):
    rng = np.random.default_rng(seed)
    draw = {"uniform": rng.uniform, "normal": rng.normal, "exponential": rng.exponential, "constant": lambda size: np.ones(size)}[dist]
    thr = SpotThreshold(min_records=100)
    q = np.array(queries + [0.0, 1.0, 50.0, 1e300, -1e300])
    for size in (8, 16, 32, 64, 128, 256, 256):
        p = thr.tail_probability(q)
        assert np.all(p > 0.0) and np.all(p <= 1.0)
        thr.update(draw(size=size), young=size < 64)
    if dist == "constant":
        assert not 1.0 > thr.value  # the constant score itself never alarms


def test_the_replay_notes_name_the_setting_that_held_alarms_back():
    from streamad.app.replay import warming_notes
    from streamad.config import load_settings
    from streamad.connectors.sinks import NullSink
    from streamad.pipeline import Pipeline
    from streamad.sources import ArraySource

    X = np.random.default_rng(0).normal(size=(600, 3))
    short = Pipeline(load_settings(overrides={"detector": {"name": "gaussian"}}, env={}), NullSink())
    short.run(ArraySource(X[:300]))  # windows of 8 to 128 begin within the first 128 records: not learned; then 52
    (note,) = warming_notes(short)
    assert "52 of the 100 scores" in note and "--warmup (threshold.warmup_records)" in note and "threshold.skip_first_records" in note
    young = Pipeline(load_settings(env={}), NullSink())  # the default detector: 1,024 records of warm-up
    young.run(ArraySource(X))
    (note,) = warming_notes(young)
    assert "provisional" in note and "(1,024 records)" in note and "--detector loe-ae --param score_warmup=N" in note
    # Its scores in, but too few of them above the tail fit's level yet: said so, not "104 of the 100".
    timed = Pipeline(load_settings(env={}), NullSink(), temporal=True)
    timed.run(ArraySource(X[:256], timestamps=np.arange(256.0)))
    (note,) = warming_notes(timed)
    assert "104 scores, too few of them yet above their 90% quantile" in note and "of the 100" not in note
    # The Gaussian's warm-up goes by its own parameter's name.
    gauss = Pipeline(load_settings(overrides={"detector": {"name": "gaussian", "params": {"warmup": 1000, "early": True}}}, env={}), NullSink())
    gauss.run(ArraySource(X[:500]))
    (note,) = warming_notes(gauss)
    assert "provisional" in note and "(1,000 records)" in note and "--detector gaussian --param warmup=N" in note
    # A Gaussian per key (the sensor default) warms up by its keys' detectors' parameter.
    per_key = Pipeline(load_settings(overrides={"detector": {"name": "per-key", "params": {"inner": {"warmup": 1000}}}}, env={}), NullSink())
    per_key.run(ArraySource(X[:500]))
    (note,) = warming_notes(per_key)
    assert "(1,000 records)" in note and "--detector per-key --param 'inner={warmup: N}' (detector.params.inner.warmup)" in note



def test_beyond_a_bounded_tail_the_probability_keeps_falling_instead_of_hitting_the_floor():
    # Uniform scores: the fitted tail is bounded (shape < 0) and ends near 1. Alarms far
    # past it used to report the smallest positive float, all alike.
    rng = np.random.default_rng(3)
    thr = SpotThreshold(risk=1e-3, min_records=100)
    for _ in range(40):
        thr.update(rng.uniform(size=256))
    assert thr.shape < 0 and math.isfinite(thr.fitted_max)
    s = np.array([thr.value - 1e-6, thr.value + 1e-6, 1.2, 1.5, 3.0, 10.0])
    p = thr.tail_probability(s)
    assert p[0] >= 1e-3 > p[1]  # below the risk exactly where the threshold alarms
    assert np.all(np.diff(p) < 0) and p[-1] > np.finfo(np.float64).tiny
    state = checkpoint.loads(checkpoint.dumps(thr.state_dict()))
    back = SpotThreshold(risk=1e-3, min_records=100)
    back.load_state_dict(state)
    assert np.array_equal(back.tail_probability(s), p)
    del state["fitted_max"]  # a state from before: the bounded tail as fitted
    older = SpotThreshold(risk=1e-3, min_records=100)
    older.load_state_dict(state)
    assert older.tail_probability(np.array([10.0]))[0] == np.finfo(np.float64).tiny


def test_the_small_sample_estimate_needs_scores_that_vary_and_survives_a_checkpoint():
    thr = SpotThreshold(risk=1e-3, min_records=100, skip_first=128)
    thr.update(np.zeros(64), young=True)  # a detector in a warm-up that scores nothing
    assert thr.warming_up and not thr.early
    rng = np.random.default_rng(7)
    thr.update(rng.exponential(size=48), young=True)
    assert thr.early and math.isfinite(thr.value)
    again = SpotThreshold(risk=1e-3, min_records=100, skip_first=128)
    again.load_state_dict(thr.state_dict())
    more = rng.exponential(size=40)
    for t in (thr, again):
        t.update(more, young=True)
    assert again.early and again.value == thr.value
    # Exp(1)'s 1e-3 point is 6.9; from 88 scores the estimate is rough, not wild.
    assert 3.0 < thr.value < 15.0
    thr.reset()
    assert thr.warming_up and not thr.early


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=32, max_size=400),
    st.sampled_from([1e-4, 1e-3, 1e-2]),
)
@example([0.0] * 31 + [5e-324], 1e-4)  # a subnormal excess: no spread, no estimate
@example([1e6] * 31 + [1e6 + 1e-9], 1e-3)  # an excess below the scores' float resolution
def test_the_small_sample_estimate_lies_above_the_bulk_and_its_probability_there_is_the_risk(scores, risk):
    thr = SpotThreshold(risk=risk, min_records=1000)
    s = np.array(scores)
    thr.update(s)
    if thr.early:
        assert thr.value >= np.quantile(s, 0.9)
        p = thr.tail_probability(np.array([thr.value, thr.value + abs(thr.value) + 1.0]))
        assert abs(p[0] - risk) <= 1e-6 * risk and 0.0 < p[1] <= p[0]
    else:  # only when the top tenth does not stand above the rest: nothing to extrapolate from
        assert thr.warming_up and np.quantile(s, 0.9) >= s.max() - 1e-9 * max(1.0, abs(s.max()))


# -- the compiled histogram work against the numpy expressions it replaced ----------------------


def _numpy_quantile(h: DecayedHistogram, q: np.ndarray) -> np.ndarray:
    cum = np.concatenate([[0.0], np.cumsum(h.counts)])
    full = np.diff(cum) > 0
    keep = np.concatenate([[False], full]) | np.concatenate([full, [False]])
    return np.interp(q * cum[-1], cum[keep], h._edges()[keep])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), weighted=st.booleans(), heavy=st.booleans())
def test_histogram_counts_and_quantiles_are_those_of_the_numpy_expressions(seed: int, weighted: bool, heavy: bool) -> None:
    """Bin counts (weighted or not, values far outside the range, on bin edges, runs of
    empty bins from a gap in the data) and quantiles, exactly as numpy's bincount and
    interp give them, window after window through refits."""
    rng = np.random.default_rng(seed)
    h = DecayedHistogram(bins=32, half_life=500.0)
    for _ in range(40):
        n = int(rng.integers(1, 200))
        v = rng.standard_t(2, size=n) if heavy else rng.normal(size=n)
        v[rng.random(n) < 0.2] = np.round(v[0], 1)  # repeated values
        v[rng.random(n) < 0.05] += 1e6  # far beyond the range
        v[v > 0.5] += 3.0  # a gap: empty bins between two masses
        w = rng.random(n) if weighted else None
        v[rng.random(n) < 0.05] = np.nan  # ignored, as their weights
        before = h.counts.copy()
        ready, lo, hi = h.ready, h.lo, h.hi
        h.update(v, w)
        if ready and (h.lo, h.hi) == (lo, hi):  # no refit: the counts moved by the window's bincount
            ok = np.isfinite(v)
            idx = np.clip(np.floor((v[ok] - lo) / (hi - lo) * h.bins) + 1.0, 0, h.bins + 1).astype(np.int64)
            decayed = before * 0.5 ** (ok.sum() / 500.0)
            assert np.array_equal(h.counts, decayed + np.bincount(idx, weights=None if w is None else w[ok], minlength=h.bins + 2))
        if h.ready:
            qs = np.concatenate([[0.0, 1.0], rng.random(7), [0.5]])
            assert np.array_equal(h.quantile(qs), _numpy_quantile(h, qs))
            assert h.quantile(0.5) == float(_numpy_quantile(h, np.array(0.5)))


def test_a_window_that_moved_as_a_whole_alarms_once_the_detector_is_grown():
    """The young estimate keeps quiet on a window a quarter or more of which it would
    alarm on while the detector warms up (a young model on new ground); scores of a
    grown detector that all rise are a change it has not seen, and they alarm. The
    detector's state travels in the checkpoint."""
    from streamad.threshold import QuantileThreshold

    scores = np.random.default_rng(1).exponential(size=64)
    moved = np.full(8, 40.0)
    for young, alarms in ((True, False), (False, True)):
        thr = QuantileThreshold(q=0.999, min_records=1000)
        thr.update(scores, young=young)
        assert thr.early and bool(thr.alarms(moved).all()) is alarms
        again = QuantileThreshold(q=0.999, min_records=1000)
        again.load_state_dict(thr.state_dict())
        assert np.array_equal(again.alarms(moved), thr.alarms(moved))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.floats(-1e12, 1e12, allow_nan=False, allow_subnormal=True) | st.sampled_from([0.0, -0.0, 1.0, 1.0 + 2**-52]), min_size=1, max_size=80),
    st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0]),
)
def test_linear_quantile_is_numpys_to_the_bit(values, q):
    # The thresholds' young estimates read it where they read np.quantile: the same
    # thresholds, so the same alarms.
    from streamad.histogram import linear_quantile

    a = np.array(values)
    want = np.quantile(a, q)
    got = linear_quantile(a.copy(), q)
    assert got == want or (np.isnan(got) and np.isnan(want)), (got, float(want))
    assert np.signbit(got) == np.signbit(want)


def test_an_episode_of_alarms_stays_out_of_a_young_tail():
    """A long episode (a stuck sensor's rising scores) while the tail is young, before
    its exclusion level is known: after its first alarm the episode's scores stay out of
    the peaks, and the threshold stays near the normal scores' tail instead of rising
    to the episode's scale. A lone alarm still enters."""
    rng = np.random.default_rng(3)

    def run(exclude: bool) -> tuple[float, SpotThreshold]:
        thr = SpotThreshold(risk=1e-3, min_peaks=1000)  # young: its exclusion level waits for 1,000 excesses
        thr.exclude_episodes = exclude
        for _ in range(8):
            thr.update(rng.exponential(size=256))
        assert thr.exclude_above == np.inf  # a young tail: no exclusion level yet
        before = thr.value
        for w in range(8):  # 256 records of a rising episode, then normal records again
            thr.update(np.linspace(1.0, 400.0, 256)[w * 32 : (w + 1) * 32] * 50)
        highest = 0.0
        for _ in range(8):
            thr.update(rng.exponential(size=256))
            highest = max(highest, thr.value)
        return highest / before, thr

    kept_out, thr = run(True)
    taken_in, _ = run(False)
    assert kept_out < 2.0 < 10 * 2.0 < taken_in
    # A lone alarm enters the peaks.
    spike = thr.value * 1.5
    thr.update(np.r_[rng.exponential(size=31), [spike]])
    assert thr.peaks[-1] == spike
    thr.update(np.r_[[spike, spike], rng.exponential(size=30)])  # after an alarm: the first of the two stays out too
    assert np.count_nonzero(thr.peaks == spike) == 1
