"""The online scalers: transform with the statistics from before, learn after."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.scaling import MinMaxScaler, StandardScaler


def reference(X: np.ndarray, seen: np.ndarray, clip: float) -> np.ndarray:
    mean, std = seen.mean(axis=0), seen.std(axis=0)
    safe = np.where(std > 1e-12 * (1.0 + np.abs(mean)), std, np.inf)
    return np.clip((X - mean) / safe, -clip, clip)


def test_standard_scaler_follows_every_learned_window() -> None:
    """Its divisor is kept between transforms: each learn (and each load) must replace it."""
    rng = np.random.default_rng(0)
    sc = StandardScaler(clip=3.0)
    seen = np.empty((0, 3))
    for i in range(6):
        W = rng.normal(loc=i, scale=1 + i, size=(40, 3))
        W[:, 2] = 5.0  # a constant feature scales to 0
        if len(seen) >= 2:
            np.testing.assert_allclose(sc.transform(W), reference(W, seen, 3.0), atol=1e-12)
        sc.learn(W)
        seen = np.vstack([seen, W])
    fresh = StandardScaler(clip=3.0)
    W = rng.normal(size=(5, 3))
    before = fresh.transform(W)
    fresh.load_state_dict(sc.state_dict())
    assert not before.any()
    np.testing.assert_allclose(fresh.transform(W), sc.transform(W), atol=0)
    np.testing.assert_allclose(sc.transform(W), reference(W, seen, 3.0), atol=1e-12)


@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler()])
def test_nothing_learned_scales_to_zero_and_a_nan_stays_visible(scaler: StandardScaler | MinMaxScaler) -> None:
    assert not scaler.transform(np.ones((2, 2))).any()
    scaler.learn(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 9.0]]))
    out = scaler.transform(np.array([[np.nan, 1.0]]))
    assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])


def test_floors_bound_the_deviation_from_below() -> None:
    sc = StandardScaler(floors=np.array([1.0, 1e-6]))
    sc.learn(np.array([[0.0, 0.0], [0.001, 0.001], [-0.001, -0.001]]))
    z = sc.transform(np.array([[0.01, 0.01]]))[0]
    assert z[0] == pytest.approx(0.01)  # the floor (1.0), not the tiny deviation, scales it
    assert z[1] == 10.0  # no floor to speak of: clipped at 10 deviations
    loaded = StandardScaler(floors=np.array([1.0, 1e-6]))
    loaded.load_state_dict({"n": sc.n, "mean": sc.mean, "m2": sc.m2})  # a state written before the stage shared this class
    np.testing.assert_array_equal(loaded.transform(np.array([[0.01, 0.01]])), sc.transform(np.array([[0.01, 0.01]])))


@pytest.mark.parametrize("scaler", [StandardScaler(clip=3.0, floors=np.array([0.0, 0.5, 0.0])), MinMaxScaler()])
def test_one_record_is_scaled_exactly_as_in_a_batch(scaler: StandardScaler | MinMaxScaler) -> None:
    """transform_one (StandardScaler's compiled for score_one) gives the batch's values,
    bit for bit, before the scaler has learned anything and after."""
    rng = np.random.default_rng(3)
    W = rng.normal(scale=[1.0, 0.01, 100.0], size=(200, 3))
    W[:, 2] = np.where(np.arange(200) < 100, 7.0, W[:, 2])  # constant, then not
    for part in (W[:0], W[:100], W[100:]):
        scaler.learn(part)
        probe = rng.normal(scale=[5.0, 1.0, 500.0], size=(20, 3))
        assert np.array_equal(np.stack([scaler.transform_one(x) for x in probe]), scaler.transform(probe))
