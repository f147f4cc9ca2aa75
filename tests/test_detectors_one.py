"""One record at a time (river style): learn_one buffers records into mini-batches,
score_one scores with the model as of the last learned batch, the buffer is part of
the state, and the batch API stays what the pipeline uses."""

from __future__ import annotations

import numpy as np
import pytest

from streamad import checkpoint
from streamad.detectors import make_detector
from streamad.learning.components import Calibration, Combiner, HeadSpec, ProjectionSpec

NAMES = ["loe-ae", "loe-ntl", "loe-svdd", "gaussian", "river-hst"]
FAST = {"loe-ntl": {"n_transforms": 4}}


def stream(n: int, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[::37] += 5.0
    return X


def as_dicts(X: np.ndarray) -> list[dict[str, float]]:
    return [{"a": r[0], "b": r[1], "c": r[2]} for r in X.tolist()]


@pytest.mark.parametrize("name", ["loe-ae", "gaussian"])
def test_learn_one_learns_mini_batches_of_8_doubling_to_the_batch_size(name: str) -> None:
    det = make_detector(name, batch_size=64) if name == "loe-ae" else make_detector(name)
    assert det.minibatch_size == (64 if name == "loe-ae" else 256)
    X = stream(300)
    learned_at = []
    for i, x in enumerate(X):
        before = len(det.buffered)
        det.learn_one(x)
        if len(det.buffered) < before + 1:
            learned_at.append(i + 1)
    sizes = np.diff([0, *learned_at]).tolist()
    full = det.minibatch_size
    expected = [8, 16, 32, 64, 128, 256][: len(sizes)]
    assert sizes == [min(s, full) for s in expected][: len(sizes)]
    assert sum(sizes) + len(det.buffered) == 300


def test_score_one_sees_the_model_as_of_the_last_learned_batch() -> None:
    det = make_detector("loe-ae")
    X = stream(600)
    for x in X[:504]:  # batches of 8 ... 256: nothing buffered
        det.learn_one(x)
    assert len(det.buffered) == 0
    probe = np.array([0.5, -1.0, 2.0])
    before = det.score_one(probe)
    for x in X[504:600]:  # buffered, not learned: the score does not move
        det.learn_one(x)
        assert det.score_one(probe) == before
    assert len(det.buffered) == 96
    det.flush()
    assert len(det.buffered) == 0 and det.score_one(probe) != before


@pytest.mark.parametrize("name", NAMES)
def test_one_at_a_time_equals_the_batches_it_forms(name: str) -> None:
    """learn_one's mini-batches are learned exactly as the same batches through learn,
    and score_one agrees with score up to float32 rounding."""
    one, batch = make_detector(name, **FAST.get(name, {})), make_detector(name, **FAST.get(name, {}))
    X = stream(700) if name != "river-hst" else np.abs(stream(700)) / 6
    start, size = 0, one.first_minibatch
    while start + size <= 600:
        batch.learn(X[start : start + size])
        start, size = start + size, min(2 * size, batch.minibatch_size)
    for x in X[:600]:
        one.learn_one(x)
    assert len(one.buffered) == 600 - start
    probe = X[600:]
    s_one = np.array([one.score_one(x) for x in probe])
    s_batch = batch.score(probe)
    assert np.allclose(s_one, s_batch, rtol=1e-4, atol=1e-4 * (1 + np.abs(s_batch).max()))
    assert np.array_equal(one.score_many(probe), s_batch)


@pytest.mark.parametrize("early", [False, True])
def test_the_gaussians_one_record_path_scores_what_its_batch_does(early: bool) -> None:
    """``per-key`` over Gaussians (the sensor default) scores one record through each
    key's compiled quadratic form: the batch's scores to rounding, through the warm-up
    (0, then with ``early`` scaled by the estimate's weight) and for a key never seen."""
    det = make_detector("per-key", detector="gaussian", inner={"trim": 0.95, "early": early})
    X = stream(1200, d=4)
    keys = np.array(["a", "b"])[np.arange(len(X)) % 2]
    probe = stream(12, d=4, seed=1) * 2.0
    phases = set()
    for lo in range(0, len(X), 32):
        det.learn(X[lo : lo + 32], keys[lo : lo + 32])
        for k in ("a", "b", "never"):
            batch = det.score(probe, np.array([k] * len(probe)))
            one = np.array([det.score_one(p, k) for p in probe])
            np.testing.assert_allclose(one, batch, rtol=1e-10, atol=0.0)
            inner = det.models.get(k)
            phases.add("none" if inner is None else "zero" if not batch.any() else "young" if inner.seen < inner.warmup else "grown")
    assert phases == ({"none", "zero", "young", "grown"} if early else {"none", "zero", "grown"})


def test_dicts_arrays_and_lists_are_the_same_records() -> None:
    X = stream(400)
    by_dict, by_array = make_detector("loe-ae"), make_detector("loe-ae")
    for d, x in zip(as_dicts(X), X):
        by_dict.learn_one(d)
        by_array.learn_one(list(x))
    probe = {"c": 1.0, "a": -2.0, "b": 0.5}  # any key order: the first record fixed it
    assert by_dict.score_one(probe) == by_array.score_one([-2.0, 0.5, 1.0])
    assert np.array_equal(by_dict.score_many([probe, probe]), by_array.score_many(np.array([[-2.0, 0.5, 1.0]] * 2)))
    with pytest.raises(KeyError, match="feature 'c' missing"):
        by_dict.score_one({"a": 1.0, "b": 2.0})


def test_learn_many_learns_the_buffer_and_the_batch_together() -> None:
    a, b = make_detector("gaussian", warmup=0), make_detector("gaussian", warmup=0)
    X = stream(50)
    for x in X[:5]:
        a.learn_one(x)
    assert len(a.buffered) == 5 and a.seen == 0
    report = a.learn_many(X[5:50])
    assert report.n_learned == 50 and len(a.buffered) == 0
    b.learn(X[:50])
    assert np.array_equal(a.score_many(X), b.score(X))
    assert a.flush() is None


@pytest.mark.parametrize("name", NAMES)
def test_buffered_records_are_part_of_the_state(name: str) -> None:
    det = make_detector(name, **FAST.get(name, {}))
    X = stream(420) if name != "river-hst" else np.abs(stream(420)) / 6
    for d in as_dicts(X[:300]):
        det.learn_one(d)
    state = checkpoint.loads(checkpoint.dumps(det.state_dict()))
    back = make_detector(name, **FAST.get(name, {}))
    back.load_state_dict(state)
    assert np.array_equal(back.buffered, det.buffered)
    for d in as_dicts(X[300:]):
        det.learn_one(d)
        back.learn_one(d)
    probe = as_dicts(X[:20])
    assert [det.score_one(p) for p in probe] == [back.score_one(p) for p in probe]


def test_river_hst_learns_each_record_at_once() -> None:
    det = make_detector("river-hst", window_size=10)
    for x in np.abs(stream(30)) / 6:
        det.learn_one(x)
        assert len(det.buffered) == 0
    assert det.model.counter == 0 and not det.model._first_window  # three windows of 10 passed


KERNEL_VARIANTS = {
    "default": {},
    "no head": {"head": None},
    "gaussian noise, latent term": {"head": HeadSpec(nu=0.0, latent_weight=0.5)},
    "student-t, latent term": {"head": HeadSpec(latent_weight=1.0)},
    "relu, max": {"backbone": {"activation": "relu"}, "combiner": Combiner(mode="max", gauss_weight=2.0)},
    "leaky relu": {"backbone": {"activation": "leaky_relu"}},
    "the gaussian alone": {"combiner": Combiner(mode="gauss")},
    "no gaussian": {"gaussian": None},
    "no gaussian, calibrated network": {"gaussian": None, "head": None, "calibration": Calibration(network_after=64)},
    "small clip": {"input_clip": 2.0},
    "no histograms": {"projections": None, "calibration": Calibration(network_after=None)},
}


@pytest.mark.parametrize("variant", list(KERNEL_VARIANTS))
def test_the_compiled_one_record_score_is_the_batch_score(variant: str) -> None:
    """score_one's compiled path (streamad/record_kernel.py) computes what the float64
    numpy batch path does, for every part it covers: the heads, the activations, the
    combiners, with and without the Gaussian, with the feature histograms (the default)
    and without; wild and missing values cleaned alike."""
    det = make_detector("loe-ae", batch_size=64).with_components(**KERNEL_VARIANTS[variant])
    X = stream(900, d=4)
    det.learn(X[:400])
    probe = np.concatenate([X[400:460], [[30.0, -1e6, 0.0, 1.0], [np.nan, 0.0, 1.0, 2.0]]])
    for start in (0, 30):  # two states of the model: the kernel follows it
        t = det.trainer
        assert t is not None
        one = [t.score_record(x, det.components().input_clip) for x in probe]
        assert None not in one
        batch = t.score_numpy(det._clean(probe))
        assert batch is not None
        np.testing.assert_allclose(np.array(one, dtype=float), batch, rtol=1e-9, atol=1e-9)
        det.learn(X[460 + start : 560 + start])


def test_the_compiled_path_steps_aside_for_what_it_does_not_cover() -> None:
    det = make_detector("loe-ae").with_components(projections=ProjectionSpec(kind="sparse"))  # LODA's random directions
    X = stream(300, d=4)
    det.learn(X)
    assert det.trainer is not None and det.trainer.score_record(X[0], 1e3) is None
    assert det.score_one(X[0]) == pytest.approx(float(det.score(X[:1])[0]), rel=1e-4)


def test_a_reused_array_is_a_new_record_each_time() -> None:
    """A reader that fills the same array with each record: learn_one keeps each one."""
    det, ref = make_detector("loe-ae"), make_detector("loe-ae")
    buf = np.empty(3)
    for x in stream(20):
        buf[:] = x
        det.learn_one(buf)
        ref.learn_one(x.copy())
    assert np.array_equal(det.buffered, ref.buffered)
