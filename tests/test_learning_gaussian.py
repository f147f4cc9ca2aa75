"""The online Gaussian beside the network and the calibration that adds their scores:
broken correlations, LOE-normal learning, a young estimate, checkpoints, switches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad import checkpoint
from streamad.detectors import make_detector
from streamad.learning.components import Calibration, Combiner, GaussianSpec
from streamad.learning.gaussian import COMPILED_MAX_COLUMNS as MAX_COLUMNS
from streamad.learning.gaussian import Calibrator, OnlineGaussian, chi2_log_prior, symmetric_inverse
from streamad.learning.gaussian_kernel import shrunk_precision, spd_inverse
from tests.conftest import assert_resumes_exactly

W = np.array([1.0, 0.8, -0.6, 0.5, 1.2, -0.9])


def correlated(seed: int, n: int) -> np.ndarray:
    """Six sensors driven by one factor, as the pump's flow drives pressure and current."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)
    return f[:, None] * W + 0.1 * rng.normal(size=(n, 6))


def broken(n: int = 20) -> np.ndarray:
    """Sensor 0 stuck at an ordinary value while the others follow the factor to +-1.5."""
    f = np.random.default_rng(1).choice([-1.5, 1.5], size=n)
    B = f[:, None] * W
    B[:, 0] = 0.0
    return B


def build(params: dict[str, object], changes: dict[str, object]):
    return make_detector("loe-ae", seed=0, **params).with_components(**changes)


def trained(params: dict[str, object] | None = None, changes: dict[str, object] | None = None):
    det = build(params or {}, changes or {})
    X = correlated(0, 2048)
    for i in range(0, len(X), 256):
        det.learn(X[i : i + 256])
    return det


def test_the_combined_detector_flags_a_broken_correlation_the_autoencoder_alone_misses() -> None:
    normal = correlated(2, 500)
    share_above = {}
    for label, params, changes in (("combined", {}, {}), ("network", {"gauss": False}, {}), ("gaussian", {}, {"combiner": Combiner("gauss")})):
        det = trained(params, changes)
        sn, sb = det.score(normal), det.score(broken())
        share_above[label] = float(np.mean(sb > np.quantile(sn, 0.9)))
    assert share_above["gaussian"] == 1.0
    assert share_above["combined"] == 1.0
    assert share_above["network"] < 0.6


def test_mahalanobis_reads_correlations_and_extrapolates_along_them() -> None:
    g = OnlineGaussian(6, half_life=None, shrink=0.01, prior=8.0)
    g.update(correlated(0, 4000))
    along = 2.5 * W  # a new, larger operating point, sensors agreeing
    s_along, s_broken = g.score(np.stack([along, broken(1)[0]]))
    assert s_broken > 5 * s_along
    c = g.contributions(broken(1))
    assert c.shape == (1, 6) and (c >= 0).all()


def test_a_young_estimate_leans_on_the_identity_prior() -> None:
    g = OnlineGaussian(3, prior=64.0)
    x = np.array([[1.0, 2.0, -1.0]])
    assert g.score(x)[0] == pytest.approx(6.0)  # nothing learned: the squared norm of the scaled record
    g.update(np.zeros((4, 3)) + 0.01)  # four nearly identical records: no collapse to a singular covariance
    assert np.isfinite(g.score(x)).all() and g.score(x)[0] < 100


def test_calibrator_prior_and_tail_scale() -> None:
    med, mad = chi2_log_prior(6)
    c = Calibrator(prior=(med, mad))
    assert c.stats() == pytest.approx((med, mad))  # before any score: the model's own prediction
    rng = np.random.default_rng(0)
    light, heavy = Calibrator(decay=1.0, tail=0.99), Calibrator(decay=1.0, tail=0.99)
    light.update(rng.chisquare(6, 4000))
    heavy.update(rng.standard_cauchy(4000) ** 2)
    # The same excess over its own normal 99th percentile reads about the same on both scales.
    q_light, q_heavy = np.quantile(rng.chisquare(6, 100000), 0.99), np.quantile(rng.standard_cauchy(100000) ** 2, 0.99)
    assert light(np.array([q_light]))[0] == pytest.approx(heavy(np.array([q_heavy]))[0], abs=0.5)
    with pytest.raises(ValueError, match="tail"):
        Calibrator(tail=1.5)


def test_only_loe_normal_records_enter_the_gaussian() -> None:
    det = make_detector("loe-ae", seed=0, warmup_records=0, batch_size=100)
    det.learn(correlated(0, 100))
    t = det.trainer
    assert t is not None and t.gaussian is not None
    assert t.gaussian.model.n == pytest.approx(90.0)  # LOE-hard flags the top 10% of the batch
    every = make_detector("loe-ae", seed=0, warmup_records=0, batch_size=100).with_components(gaussian=GaussianSpec(learn="all"))
    every.learn(correlated(0, 100))
    assert every.trainer is not None and every.trainer.gaussian is not None and every.trainer.gaussian.model.n == pytest.approx(100.0)


def test_combined_checkpoint_continues_exactly_and_score_is_pure() -> None:
    probe = np.r_[correlated(5, 50), broken(5), np.full((1, 6), 1e3)]
    assert_resumes_exactly(trained(), make_detector("loe-ae", seed=0), probe, correlated(6, 256))


SWITCHES = [
    ({"gauss": False}, {}),
    ({}, {"combiner": Combiner("max", gauss_weight=2.0)}),
    ({}, {"combiner": Combiner("gauss", gauss_weight=2.0)}),
    ({}, {"calibration": Calibration(network_after=None, tail=0.99)}),
]


@pytest.mark.parametrize("params, changes", SWITCHES)
def test_every_switch_builds_scores_and_round_trips(params: dict[str, object], changes: dict[str, object]) -> None:
    det = trained(params, changes)
    probe = np.r_[correlated(7, 20), broken(3)]
    s = det.score(probe)
    assert np.isfinite(s).all() and s[20:].mean() > np.median(s[:20])
    back = build(params, changes)
    back.load_state_dict(checkpoint.loads(checkpoint.dumps(det.state_dict())))
    assert np.array_equal(back.score(probe), s)


def test_bad_switch_values_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="combiner mode"):
        Combiner("product")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="learn"):
        GaussianSpec(learn="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shrink"):
        GaussianSpec(shrink=0.0)


# -- the compiled inverse (learning/gaussian_kernel.py) -----------------------------------------


@given(d=st.integers(1, MAX_COLUMNS), seed=st.integers(0, 2**32 - 1), ridge=st.sampled_from([1e-6, 1e-3, 0.05, 1.0]))
@settings(max_examples=60, deadline=None)
def test_the_compiled_inverse_is_numpys_to_rounding(d: int, seed: int, ridge: float) -> None:
    # Covariances as the Gaussians make them: a scatter of a few records (rank below d
    # when they are fewer than the columns) on scales far apart, kept positive definite
    # by a ridge relative to its trace (``shrink``). Two ways of inverting agree to the
    # rounding the matrix's condition allows.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(int(rng.integers(1, 3 * d + 2)), d)) * rng.uniform(0.01, 100.0, size=d)
    a = np.cov(X.T, bias=True).reshape(d, d)
    a = a + ridge * max(np.trace(a) / d, 1e-6) * np.eye(d)
    out = np.empty((d, d))
    assert spd_inverse(a, out)
    assert np.array_equal(out, out.T)
    ref = np.linalg.inv(a)
    tol = 1e-13 * np.linalg.cond(a) * np.abs(ref).max()
    assert np.abs(out - ref).max() <= tol
    assert np.abs(symmetric_inverse(a) - ref).max() <= tol


def test_a_matrix_that_is_not_positive_definite_is_left_to_numpy() -> None:
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert not spd_inverse(indefinite, np.empty((2, 2)))
    assert np.allclose(symmetric_inverse(indefinite), np.linalg.inv(indefinite))
    # Above COMPILED_MAX_COLUMNS the LU inverse does the work (LAPACK's blocked code is faster there).
    big = np.eye(MAX_COLUMNS + 1) * 4.0
    assert np.allclose(symmetric_inverse(big), np.eye(MAX_COLUMNS + 1) / 4.0)


@pytest.mark.parametrize("seed", range(40))
def test_the_compiled_precision_is_numpys_to_the_bit(seed):
    # The compiled covariance against the numpy code (used above 48 columns): the same
    # matrix, bit for bit, so detections are what they were before it was compiled.
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 49))
    g = OnlineGaussian(d, half_life=float(rng.choice([1000.0, 20000.0])), shrink=float(rng.choice([1e-3, 0.05])), prior=float(rng.choice([0.0, 64.0])), min_weight=1.0 + 1e-9)
    for _ in range(int(rng.integers(1, 5))):
        g.update(rng.normal(size=(int(rng.integers(2, 40)), d)) * rng.uniform(0.1, 10.0, size=d))
    cov, prec = np.empty((d, d)), np.empty((d, d))
    assert shrunk_precision(g.scatter, g.n, g.prior, g.shrink, cov, prec)
    assert np.array_equal(cov, g.shrunk_covariance())
    assert np.array_equal(g.precision, prec) and np.array_equal(prec, symmetric_inverse(g.shrunk_covariance()))


@pytest.mark.parametrize("seed", range(30))
def test_the_compiled_update_is_numpys_to_the_bit(seed, monkeypatch):
    # The same records folded in by the compiled call and by the numpy code (used above
    # 48 columns): the same weight, mean and scatter, bit for bit, one record at a time
    # (a device of a fleet) or many, forgetting or not.
    import streamad.learning.gaussian as gaussian

    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 49))
    half_life = [None, 1000.0, 20000.0][seed % 3]
    batches = [rng.normal(size=(int(rng.choice([1, 1, 2, 8, 33])), d)) * rng.uniform(0.1, 10.0, size=d) + 5 * rng.normal(size=d) for _ in range(5)]
    compiled, plain = (OnlineGaussian(d, half_life=half_life, shrink=1e-3, prior=0.0) for _ in range(2))
    for X in batches:
        compiled.update(X)
        with monkeypatch.context() as m:
            m.setattr(gaussian, "COMPILED_MAX_COLUMNS", 0)
            plain.update(X)
    assert compiled.n == plain.n
    assert np.array_equal(compiled.mean, plain.mean) and np.array_equal(compiled.scatter, plain.scatter)


@settings(max_examples=25, deadline=None)
@given(st.integers(MAX_COLUMNS + 1, 140), st.integers(1, 40), st.integers(0, 10_000), st.sampled_from([0.001, 0.05, 0.5]))
def test_above_the_compiled_size_scores_go_through_the_cholesky_factor(d: int, n: int, seed: int, shrink: float) -> None:
    """Wide Gaussians (the temporal stage gives five columns a sensor) score through the
    factor of their shrunk covariance, not its inverse: the same distances and
    contributions as the precision gives, to rounding; each record's distance the
    same to the bit whatever records are scored with it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3 * d, 3)) @ rng.normal(size=(3, d)) + 0.2 * rng.normal(size=(3 * d, d))
    g = OnlineGaussian(d, half_life=500.0, shrink=shrink, prior=0.0)
    g.update(X[: 2 * d])
    Y = X[2 * d : 2 * d + n] + rng.normal(size=(n, d))
    diff = Y - g.mean
    by_precision = np.einsum("ij,ij->i", diff @ g.precision, diff)
    np.testing.assert_allclose(g.score(Y), by_precision, rtol=1e-8)
    np.testing.assert_allclose(g.contributions(Y), np.maximum(diff * (diff @ g.precision), 0.0), rtol=1e-7, atol=1e-9 * by_precision.max())
    assert np.array_equal(g.score(Y), np.concatenate([g.score(Y[i : i + 1]) for i in range(n)]))
    g.update(Y)  # a change refits the factor
    np.testing.assert_allclose(g.score(Y), np.einsum("ij,ij->i", (Y - g.mean) @ g.precision, Y - g.mean), rtol=1e-8)


def test_a_wide_estimate_without_a_factor_scores_through_its_precision() -> None:
    d = MAX_COLUMNS + 3
    g = OnlineGaussian(d, half_life=None, shrink=0.05, prior=0.0)
    x = np.ones((1, d))
    assert g.score(x).tolist() == [float(d)]  # not ready: the unit covariance
    g.update(np.random.default_rng(0).normal(size=(200, d)))
    g.scatter[0, 0] = np.inf  # no Cholesky factor: the precision path (its pseudo-inverse) answers
    g._prec = g._chol = None
    assert g._factor() is None and g.score(x).shape == (1,)
