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
