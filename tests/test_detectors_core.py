import numpy as np

from streamad import checkpoint
from streamad.detectors import available, make_detector, register
from streamad.detectors.gaussian import Gaussian


def test_registering_first_does_not_hide_the_builtin_detectors():
    register("gaussian-copy", Gaussian)
    names = available()
    assert "gaussian" in names and "river-hst" in names and "gaussian-copy" in names


def test_gaussian_on_drift_keeps_the_covariance_and_forgets_faster():
    rng = np.random.default_rng(0)
    det = Gaussian(warmup=100, half_life=None)
    for _ in range(20):
        det.learn(rng.normal(size=(500, 3)))
    x = rng.normal(size=(200, 3))
    before = det.score(x)
    det.on_drift("feature")
    assert det.g is not None and det.g.n == 100
    assert np.allclose(det.score(x), before)  # same estimate, only less weight
    det.learn(rng.normal(size=(500, 3)) + 5)  # the new regime now dominates
    assert abs(det.g.mean.mean() - 5 * 500 / 600) < 0.2


def test_gaussian_checkpoint_round_trip():
    rng = np.random.default_rng(1)
    det = make_detector("gaussian")
    for _ in range(5):
        det.learn(rng.normal(size=(100, 4)))
    det2 = make_detector("gaussian")
    det2.load_state_dict(checkpoint.loads(checkpoint.dumps(det.state_dict())))
    x = rng.normal(size=(50, 4))
    assert np.array_equal(det.score(x), det2.score(x))


def test_a_trimmed_gaussian_keeps_a_young_bar_out_of_a_fault_learns_what_lasts_and_follows_drift():
    rng = np.random.default_rng(2)
    trimmed = Gaussian(trim=0.95, half_life=None)
    base = rng.normal(size=(416, 3))
    for i in range(0, 416, 32):
        trimmed.learn(base[i : i + 32])
    # A valve left shut, given to learn as the model gives it what it alarms on (one
    # record in ten). The bar is young (160 scores): a bar read from the scores as they
    # are rose into the fault once it held 5% of them, and learned 38 of its 60 records;
    # scores over the bar count as one bin over it, so the bar climbs slowly (10).
    shift = rng.normal(size=(600, 3)) + [0.0, 4.0, 0.0]
    faulty = [trimmed.learn(shift[i : i + 3]).n_learned for i in range(0, 60, 3)]
    assert sum(faulty) < 20, faulty
    copy = Gaussian(trim=0.95, half_life=None)
    copy.load_state_dict(checkpoint.loads(checkpoint.dumps(trimmed.state_dict())))
    assert trimmed.over_run == copy.over_run == 60  # a restart keeps the run
    # The same state, lasting and given to learn whole: after OVER_RUN records in a row
    # over the bar its scores enter as they are, and it is learned as a new normal.
    lasting = [trimmed.learn(shift[i : i + 32]).n_learned for i in range(60, 600, 32)]
    assert lasting[-8:] == [32] * 7 + [28], lasting
    assert trimmed.over_run == 0
    # A drift of 3 standard deviations over 6,000 records: each window is still mostly in
    # the core, so the trimmed estimate follows it, a little behind one that learns all
    # (its leading edge is trimmed: measured 1.86 against 1.96).
    means = []
    for det in (Gaussian(trim=0.95, half_life=2000), Gaussian(half_life=2000)):
        drift = np.random.default_rng(5)
        for _ in range(16):
            det.learn(drift.normal(size=(32, 3)))
        for i in range(0, 6000, 32):
            t = np.arange(i, i + 32)[:, None]
            det.learn(drift.normal(size=(32, 3)) + 3.0 * t / 6000 * np.array([1.0, 0.0, 0.0]))
        assert det.g is not None
        means.append(det.g.mean[0])
    assert means[0] > 1.6 and means[1] - means[0] < 0.3, means


def test_a_trimmed_gaussian_learns_a_new_regime_after_a_drift_and_resumes_from_its_state():
    rng = np.random.default_rng(4)
    det = Gaussian(trim=0.7, warmup=100, half_life=None)
    for _ in range(10):
        det.learn(rng.normal(size=(200, 3)))
    state = checkpoint.loads(checkpoint.dumps(det.state_dict()))
    back = Gaussian(trim=0.7, warmup=100, half_life=None)
    back.load_state_dict(state)
    nxt = rng.normal(size=(200, 3)) + [0.0, 0.0, 3.0]
    assert det.learn(nxt).n_learned == back.learn(nxt).n_learned < 100  # the bar came back with the state
    x = rng.normal(size=(20, 3))
    assert np.array_equal(det.score(x), back.score(x))
    det.on_drift("feature")  # the monitor says the stream changed: the old bar goes too
    assert det.learn(nxt).n_learned == 200


def test_the_sensor_streams_settings_file_is_the_sensor_default_the_benchmarks_measure():
    from pathlib import Path

    from benchmarks.sensor_streams import DEFAULT_DETECTORS, PINNED, PINNED_SETTINGS
    from benchmarks.skab import SENSOR_PRESET
    from streamad.config import Settings, load_settings
    from streamad.factory import detector_name, for_stream

    path = Path(__file__).resolve().parents[1] / "examples" / "sensor-streams.yaml"
    s = load_settings(str(path), env={})
    assert detector_name(s) == "per-key" and s.detector.params == {"detector": "gaussian", "inner": {"trim": 0.95, "early": True}}
    assert s.window.size == 32 and s.scaler.kind == "none"
    assert load_settings(None, SENSOR_PRESET, env={}).model_dump() == s.model_dump()
    # The default on a stream with event times is that file's settings; on a table, loe-ae.
    sensor = for_stream(Settings(), timed=True)
    assert sensor.model_dump() == s.model_dump()
    assert detector_name(for_stream(Settings(), timed=False)) == "loe-ae"
    # The benchmark's "default + temporal" row runs the default, unpinned.
    assert "default + temporal=default" in DEFAULT_DETECTORS and "default + temporal" not in PINNED
    assert PINNED_SETTINGS["default + temporal"] == {"features": {"temporal": "on"}}
    assert not any("," in row for row in DEFAULT_DETECTORS)  # --detectors is a comma-separated list


def test_the_sensor_streams_settings_follow_the_demos_unlabelled_drift():
    # Seed 17 of the demo with its temperature drift: trimmed at 0.7 behind the online
    # scaler, the Gaussian stopped following the drift and raised 1,368 false alarms (7%
    # of the normal records); the settings file's raise 51 (benchmarks/results/ANALYSIS.md).
    from benchmarks.sensor_streams import replay_arrays
    from benchmarks.skab import SENSOR_PRESET
    from streamad.app.demo import generate

    stream = generate(n=20000, seed=17, drift=True)
    out = replay_arrays(stream.X, SENSOR_PRESET, stream.timestamps)
    normal = stream.y[out["index"]] == 0
    false_alarms = int((out["alarms"] & normal).sum())
    assert false_alarms < 0.005 * normal.sum(), false_alarms
    assert (out["alarms"] & ~normal).sum() > 100  # and it still alarms on the anomalies


def test_early_scores_during_the_warm_up_scaled_for_the_young_estimate():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    late, early = Gaussian(warmup=256), Gaussian(warmup=256, early=True)
    probe = np.array([[0.0, 0.0, 0.0], [4.0, -4.0, 0.0]])
    for det in (late, early):
        det.learn(X[:10])  # under five records per column: nothing to score with yet
        assert (det.score(probe) == 0).all()
        det.learn(X[10:])
    assert (late.score(probe) == 0).all() and late.learn(X[:0]).warmup
    assert early.g is not None
    n, d = early.g.n, 3
    np.testing.assert_allclose(early.score(probe), early.g.score(probe) * (n - d - 2) / (n + 1))
    assert early.score(probe)[1] > 10 * early.score(probe)[0]
    # Its warm-up learns the records it alarmed on too, as when it scores 0.
    assert early.learns_alarmed and not late.learns_alarmed
    for det in (late, early):
        det.learn(rng.normal(size=(256, 3)))  # grown: the distances as they are
        np.testing.assert_array_equal(det.score(probe), det.g.score(probe))
        assert not det.learns_alarmed
    # A state from before ``early`` (no such parameter) loads into a detector with it.
    state = late.state_dict()
    del state["params"]["early"]
    back = Gaussian(warmup=256, early=True)
    back.load_state_dict(state)
    np.testing.assert_array_equal(back.score(probe), late.score(probe))


def test_a_trimmed_gaussian_reports_the_share_it_left_unlearned():
    # The LOE flag-rate metric: the share of a window the trimming kept out.
    rng = np.random.default_rng(3)
    det = Gaussian(trim=0.9, warmup=256)
    reports = [det.learn(rng.normal(size=(256, 3))) for _ in range(8)]
    assert reports[0].loe_flag_rate is None  # its warm-up learns every record
    assert 0.03 < reports[-1].loe_flag_rate < 0.2 and reports[-1].n_learned == round(256 * (1 - reports[-1].loe_flag_rate))
    assert Gaussian().learn(rng.normal(size=(300, 3))).loe_flag_rate is None  # trim 1.0: nothing left out
