"""The online scalers: transform with the statistics from before, learn after."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_feature_that_rarely_departs_from_one_value_scales_to_zero() -> None:
    """A feature holding one value in at least ``constant_share`` of the records learned
    is constant to the scaler: its departures scale to 0, one record at a time too, and
    through a checkpoint; once departures pass the share it scales again."""
    rng = np.random.default_rng(0)
    X = np.c_[np.zeros(2000), rng.normal(size=2000)]
    X[::50, 0] = rng.uniform(1.0, 9.0, size=40)  # 2% departures
    sc, every = StandardScaler(), StandardScaler(constant_share=None)
    for part in np.array_split(X, 10):
        sc.learn(part)
        every.learn(part)
    probe = np.array([[6.0, 1.5], [0.0, -0.5]])
    assert np.array_equal(sc.transform(probe)[:, 0], [0.0, 0.0])
    np.testing.assert_array_equal(sc.transform(probe)[:, 1], every.transform(probe)[:, 1])
    assert every.transform(probe)[0, 0] > 5.0  # without the rule: many deviations out
    assert np.array_equal(np.stack([sc.transform_one(x) for x in probe]), sc.transform(probe))
    back = StandardScaler()
    back.load_state_dict(sc.state_dict())
    assert np.array_equal(back.transform(probe), sc.transform(probe))
    sc.learn(np.c_[rng.uniform(1.0, 9.0, size=200), rng.normal(size=200)])  # now 11% depart
    assert sc.transform(probe)[0, 0] > 1.0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=8),
    departs=st.floats(0.0, 0.2),
    values=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_only_a_value_held_by_the_share_of_records_makes_a_feature_constant(sizes, departs, values, seed) -> None:
    """The scaler counts the records holding its candidate value since it became the
    candidate, never more than hold it: a feature it scales to 0 has a value that at
    least ``constant_share`` of the records learned hold (it may be late to see one)."""
    rng = np.random.default_rng(seed)
    sc = StandardScaler()
    seen = []
    for n in sizes:
        col = np.where(rng.random(n) < departs, rng.integers(1, values + 1, size=n).astype(float), 0.0)
        W = np.c_[col, rng.normal(size=n)]
        sc.learn(W)
        seen.append(col)
        allv = np.concatenate(seen)
        top = np.unique(allv, return_counts=True)[1].max() / len(allv)
        probe = np.array([[sc.mean[0] + 1.0, 0.0]])  # a value off the mean: 0 only if the feature is constant to the scaler
        if len(allv) >= 2 and allv.std() > 0 and sc.transform(probe)[0, 0] == 0.0:
            assert top >= sc.constant_share


def test_the_settings_default_is_the_scalers() -> None:
    from streamad.config import Settings
    from streamad.scaling import CONSTANT_SHARE

    assert Settings().scaler.constant_share == CONSTANT_SHARE == StandardScaler().constant_share
