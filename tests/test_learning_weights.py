"""Importance weights toward a Gaussian score distribution."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.histogram import DecayedHistogram
from streamad.learning.weights import ImportanceWeights, ess_share, temper


def skewed(rng: np.random.Generator, n: int) -> np.ndarray:
    """Log-scores with a dense majority mode and a long right tail of minority patterns."""
    s = np.r_[rng.gamma(2.0, 0.05, size=int(n * 0.9)), rng.uniform(0.5, 4.0, size=n - int(n * 0.9))]
    return np.log1p(s)


def filled(rng: np.random.Generator, n_batches: int = 10) -> DecayedHistogram:
    hist = DecayedHistogram(bins=48, decay=1.0)
    for _ in range(n_batches):
        hist.update(skewed(rng, 256))
    return hist


def test_weights_are_one_during_warmup() -> None:
    rng = np.random.default_rng(0)
    hist = DecayedHistogram(bins=48)
    hist.update(skewed(rng, 400))
    w, ess = ImportanceWeights(min_count=500).weights(skewed(rng, 64), hist)
    assert (w == 1.0).all() and ess == 1.0


@pytest.mark.parametrize("target", ["moments", "robust"])
def test_weights_are_clipped_and_mean_one(target: str) -> None:
    rng = np.random.default_rng(0)
    hist = filled(rng)
    w, ess = ImportanceWeights(min_count=256, ess_min=0.0, clip=(0.1, 10.0), target=target).weights(skewed(rng, 512), hist)
    assert w.mean() == pytest.approx(1.0)
    # clipped to [0.1, 10] before the mean-1 normalisation: the spread is at most 100
    assert w.max() / w.min() <= 100.0 + 1e-9
    assert 0.0 < ess <= 1.0


def test_the_dense_mode_is_down_weighted_and_the_minority_lifted() -> None:
    rng = np.random.default_rng(0)
    hist = filled(rng)
    s = skewed(rng, 2048)
    w, _ = ImportanceWeights(min_count=256, ess_min=0.0).weights(s, hist)
    mode = np.abs(s - np.log1p(0.05)) < 0.03  # the peak of the dense majority
    minority = (s > np.log1p(0.3)) & (s < np.log1p(1.0))
    assert w[mode].mean() < 0.5 and w[minority].mean() > 2.0


def test_tempering_restores_the_effective_sample_size() -> None:
    rng = np.random.default_rng(0)
    hist = filled(rng)
    w, ess = ImportanceWeights(min_count=256, ess_min=0.9).weights(skewed(rng, 512), hist)
    assert ess >= 0.9 - 1e-6 and ess_share(w) == pytest.approx(ess)
    assert w.mean() == pytest.approx(1.0)


def test_temper_and_ess() -> None:
    w = np.array([20.0, 0.1, 0.1, 0.1, 0.1])
    assert ess_share(w) < 0.3
    t, ess = temper(w, 0.8)
    assert ess >= 0.8 and t.mean() == pytest.approx(1.0)
    assert np.argmax(t) == 0  # tempering keeps the order


def test_weights_do_not_change_the_histogram() -> None:
    rng = np.random.default_rng(0)
    hist = filled(rng, 2)
    before = hist.state_dict()["counts"].copy()
    s = skewed(rng, 32)
    iw = ImportanceWeights(min_count=64)
    a, _ = iw.weights(s, hist)
    b, _ = iw.weights(s, hist)
    assert np.array_equal(a, b) and np.array_equal(before, hist.state_dict()["counts"])


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        ImportanceWeights(clip=(2.0, 10.0))
    with pytest.raises(ValueError):
        ImportanceWeights(target="uniform")
