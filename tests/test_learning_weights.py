"""Importance weights toward a Gaussian score distribution."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.learning.weights import ImportanceWeights, ess_share, temper


def skewed(rng: np.random.Generator, n: int) -> np.ndarray:
    """A dense majority mode and a long right tail of minority normal patterns."""
    return np.r_[rng.gamma(2.0, 0.05, size=int(n * 0.9)), rng.uniform(0.5, 4.0, size=n - int(n * 0.9))]


def test_weights_are_one_during_warmup() -> None:
    iw = ImportanceWeights(min_count=500)
    rng = np.random.default_rng(0)
    iw.update(skewed(rng, 400))
    w, ess = iw.weights(skewed(rng, 64))
    assert (w == 1.0).all() and ess == 1.0


def test_weights_are_clipped_mean_one_and_down_weight_the_dense_mode() -> None:
    rng = np.random.default_rng(0)
    iw = ImportanceWeights(min_count=256, decay=1.0, ess_min=0.0, clip=(0.1, 10.0))
    for _ in range(10):
        iw.update(skewed(rng, 256))
    s = skewed(rng, 512)
    w, ess = iw.weights(s)
    assert w.mean() == pytest.approx(1.0)
    # clipping to [0.1, 10] before the mean-1 normalisation bounds the spread by 100
    assert w.max() / w.min() <= 100.0 + 1e-9
    dense = s < np.quantile(s, 0.3)
    tail_ = (s > np.quantile(s, 0.6)) & (s < np.quantile(s, 0.9))
    assert w[dense].mean() < 1.0 < w[tail_].mean()
    assert 0.0 < ess <= 1.0


def test_tempering_restores_the_effective_sample_size() -> None:
    rng = np.random.default_rng(0)
    iw = ImportanceWeights(min_count=256, decay=1.0, ess_min=0.9)
    for _ in range(10):
        iw.update(skewed(rng, 256))
    w, ess = iw.weights(skewed(rng, 512))
    assert ess >= 0.9 - 1e-6 and ess_share(w) == pytest.approx(ess)
    assert w.mean() == pytest.approx(1.0)


def test_temper_and_ess() -> None:
    w = np.array([20.0, 0.1, 0.1, 0.1, 0.1])
    assert ess_share(w) < 0.3
    t, ess = temper(w, 0.8)
    assert ess >= 0.8 and t.mean() == pytest.approx(1.0)
    assert np.argmax(t) == 0  # tempering keeps the order


def test_weights_do_not_change_state() -> None:
    rng = np.random.default_rng(0)
    iw = ImportanceWeights(min_count=64)
    iw.update(skewed(rng, 256))
    before = iw.state_dict()["hist"]["counts"].copy()
    s = skewed(rng, 32)
    a, _ = iw.weights(s)
    b, _ = iw.weights(s)
    assert np.array_equal(a, b) and np.array_equal(before, iw.state_dict()["hist"]["counts"])


def test_bad_clip_is_rejected() -> None:
    with pytest.raises(ValueError):
        ImportanceWeights(clip=(2.0, 10.0))
