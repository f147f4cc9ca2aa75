"""The feature histograms beside the network (learning/projections.py): rare values,
LOE-normal learning, width checks, checkpoints that continue exactly, drift, the
neutral score of an untrained detector."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad import checkpoint
from streamad.detectors import make_detector
from streamad.learning.components import Calibration, Combiner, ProjectionSpec
from streamad.learning.projections import ProjectionHistograms
from tests.conftest import assert_resumes_exactly


def bimodal(seed: int, n: int, d: int = 4) -> np.ndarray:
    """Feature 0 takes one of two modes (a pump on or off); the others are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 0] = rng.choice([-1.5, 1.5], size=n) + 0.2 * rng.normal(size=n)
    return X


@pytest.mark.parametrize("kind", ["axes", "sparse"])
def test_an_obvious_outlier_scores_above_every_inlier(kind: str) -> None:
    h = ProjectionHistograms(4, kind=kind, seed=1)
    h.update(bimodal(0, 3000))
    inliers = bimodal(1, 300)
    s_in = h.score(inliers)
    s_out = h.score(np.array([[0.0, 6.0, -6.0, 6.0]]))
    assert s_out[0] > s_in.max()
    assert (s_in >= 0).all()


def test_a_value_between_the_modes_is_rare_though_at_the_mean() -> None:
    h = ProjectionHistograms(4, seed=0)
    h.update(bimodal(0, 3000))
    at_mode, between = h.score(np.array([[1.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert between > at_mode + 1.0


def test_scoring_changes_nothing_and_counts_forget() -> None:
    h = ProjectionHistograms(3, half_life=100.0)
    X = bimodal(0, 200, d=3)
    h.update(X)
    counts = h.counts.copy()
    h.score(X)
    assert np.array_equal(h.counts, counts)
    h.update(X)  # 200 new records halve twice the weight of the 200 before them
    assert h.n == pytest.approx(250.0) and h.counts.sum() == pytest.approx(250.0 * h.k)
    h.forget(10.0)
    assert h.n == pytest.approx(10.0) and h.counts.sum() == pytest.approx(10.0 * h.k)


def test_width_checks_are_clear_errors() -> None:
    h = ProjectionHistograms(3)
    with pytest.raises(ValueError, match="built for 3 features"):
        h.score(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="built for 3 features"):
        h.update(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="cannot load"):
        ProjectionHistograms(4).load_state_dict(h.state_dict())
    with pytest.raises(ValueError, match="kind"):
        ProjectionHistograms(3, kind="cubes")
    with pytest.raises(ValueError, match="width"):
        ProjectionSpec(width=0.0)
    with pytest.raises(ValueError, match="kind"):
        ProjectionSpec(kind="cubes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="proj_weight"):
        Combiner(proj_weight=-1.0)


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 12),
    n=st.integers(1, 300),
    kind=st.sampled_from(["axes", "sparse"]),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 1e4),
)
def test_state_round_trips_bit_identically(d: int, n: int, kind: str, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    comp = ProjectionSpec(kind=kind).build(d, Calibration(tail=0.99), seed)
    for _ in range(3):
        X = scale * rng.standard_normal((n, d))
        comp.absorb(X, rng.random(n) > 0.1)
    back = ProjectionSpec(kind=kind).build(d, Calibration(tail=0.99), seed)
    back.load_state_dict(checkpoint.loads(checkpoint.dumps(comp.state_dict())))
    probe = scale * rng.standard_normal((50, d))
    assert np.array_equal(back.score(probe), comp.score(probe))
    assert np.isfinite(comp.score(probe)).all()
    more = rng.standard_normal((n, d))
    comp.absorb(more, np.ones(n, dtype=bool))
    back.absorb(more, np.ones(n, dtype=bool))
    assert np.array_equal(back.score(probe), comp.score(probe))


def test_only_loe_normal_records_are_counted() -> None:
    det = make_detector("loe-ae", seed=0, warmup_records=0, batch_size=100, histograms=True)
    det.learn(bimodal(0, 100))
    t = det.trainer
    assert t is not None and t.projections is not None
    assert t.projections.model.n == pytest.approx(90.0)  # LOE-hard flags the top 10% of the batch


def trained(**params: object):
    det = make_detector("loe-ae", seed=0, **{"histograms": True, **params})
    X = bimodal(0, 2048)
    for i in range(0, len(X), 256):
        det.learn(X[i : i + 256])
    return det


def between_modes() -> tuple[np.ndarray, np.ndarray]:
    """Normal records, and records with feature 0 between its modes: at its mean, where
    the autoencoder and the Gaussian put a typical record."""
    odd = bimodal(3, 50)
    odd[:, 0] = 0.0
    return bimodal(2, 500), odd


def auc(normal: np.ndarray, odd: np.ndarray) -> float:
    """Probability that an odd record outscores a normal one."""
    return float((odd[:, None] > normal[None, :]).mean() + 0.5 * (odd[:, None] == normal[None, :]).mean())


def test_the_histograms_see_a_value_the_others_call_ordinary() -> None:
    normal, odd = between_modes()
    det = trained()
    t = det.trainer
    assert t is not None and t.projections is not None
    s_n, s_o = t.projections.score(normal), t.projections.score(odd)
    assert np.mean(s_o > np.quantile(s_n, 0.9)) >= 0.9
    without = trained(histograms=False)
    assert auc(det.score(normal), det.score(odd)) > auc(without.score(normal), without.score(odd)) + 0.1


def test_detector_checkpoint_continues_exactly() -> None:
    probe = np.r_[bimodal(5, 50), np.full((1, 4), 1e3)]
    assert_resumes_exactly(trained(), make_detector("loe-ae", seed=0, histograms=True), probe, bimodal(6, 256))


def test_states_without_the_histograms_are_refused_clearly() -> None:
    old = trained(histograms=False)
    state = checkpoint.loads(checkpoint.dumps(old.state_dict()))
    with pytest.raises(ValueError, match="histograms=False"):
        make_detector("loe-ae", seed=0, histograms=True).load_state_dict(state)
    # A state from before the histograms existed names no such parameter: it was made
    # without them, and is refused by name by the default (on), taken without them.
    del state["params"]["histograms"]
    with pytest.raises(ValueError, match="histograms=False"):
        make_detector("loe-ae", seed=0).load_state_dict(state)
    make_detector("loe-ae", seed=0, histograms=False).load_state_dict(state)
    state["version"] = "2"
    with pytest.raises(ValueError, match="version 2"):
        make_detector("loe-ae", seed=0, histograms=False).load_state_dict(state)


def test_drift_reopens_the_histograms() -> None:
    det = trained()
    t = det.trainer
    assert t is not None and t.projections is not None
    det.on_drift("level")
    assert t.projections.model.n <= t.schedule.warmup_records + 1e-9
    assert np.isfinite(det.score(bimodal(7, 20))).all()


def test_an_untrained_detector_scores_every_record_neutral() -> None:
    """Behind the pipeline's scaler the first window is all zeros; with nothing learned
    there is no evidence for any record: 0, the level of a typical normal record."""
    det = make_detector("loe-ae", seed=0)
    assert np.array_equal(det.score(bimodal(0, 8)), np.zeros(8))
    assert det.score_one({"a": 1.0, "b": 2.0}) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_record_reads_the_bins_a_batch_reads(seed: int) -> None:
    """``score_record`` (the compiled one-record path of ``loe-ae``'s ``score_one``)
    reads the same bins as ``score``: NaN as 0, values clipped as the detector cleans
    a batch, the outermost bins taking everything beyond."""
    rng = np.random.default_rng(seed)
    h = ProjectionHistograms(5, seed=seed)
    h.update(rng.normal(size=(3000, 5)) * [1.0, 0.1, 3.0, 1.0, 1.0])
    probe = rng.normal(scale=20.0, size=(200, 5))
    probe[::7, 2] = np.nan
    clean = np.clip(np.nan_to_num(probe, nan=0.0), -1e3, 1e3)
    one = np.array([h.score_record(x, 1e3) for x in probe])
    np.testing.assert_allclose(one, h.score(clean), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="one histogram per feature"):
        ProjectionHistograms(5, kind="sparse").score_record(probe[0], 1e3)
