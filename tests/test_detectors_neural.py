"""The neural detectors behind the Detector contract: purity of score, checkpoints that
continue exactly, finite training on extreme values, registry and settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from streamad import checkpoint
from streamad.detectors import available, make_detector
from streamad.learning.weights import ImportanceWeights

NEURAL = ["loe-ae", "loe-ntl", "loe-svdd"]
SMALL = {"loe-ntl": {"n_transforms": 4}}


def build(name: str, **kw: object):
    """A small, fast configuration: public parameters, plus a shorter warm-up schedule
    and importance weights that start early through the components."""
    params = {"warmup_records": 128, "weights": True, "batch_size": 64, "seed": 7, **SMALL.get(name, {}), **kw}
    det = make_detector(name, **params)
    c = det.components()
    return det.with_components(schedule=replace(c.schedule, warmup_boost=2.0, warmup_epochs=2.0), weights=ImportanceWeights(min_count=64))


def stream(seed: int = 0, n: int = 64, d: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[::10] += 6.0
    return X


@pytest.mark.parametrize("name", NEURAL)
def test_registered_with_its_scaler(name: str) -> None:
    assert name in available()
    # NeuTraL's bias-free networks see only a record's direction: it needs uncentred (min-max) inputs.
    assert build(name).preferred_scaler == ("minmax" if name == "loe-ntl" else "standard")


@pytest.mark.parametrize("name", NEURAL)
def test_score_never_changes_state(name: str) -> None:
    det = build(name)
    X = stream(0)
    before_learn = det.score(X)
    assert det.trainer is None  # scoring before any learning builds nothing
    assert np.array_equal(before_learn, det.score(X))
    for i in range(4):
        det.learn(stream(i))
    state = checkpoint.dumps(det.state_dict())
    a, b = det.score(X), det.score(X)
    assert np.array_equal(a, b)
    assert checkpoint.dumps(det.state_dict()) == state


@pytest.mark.parametrize("name", NEURAL)
def test_checkpoint_reloads_to_identical_scores_and_learning(name: str) -> None:
    det = build(name)
    for i in range(5):  # through warm-up, LOE and weights switching on
        det.learn(stream(i))
    det.learn(stream(99, n=40))  # leaves records pending for the next batch
    back = build(name)
    back.load_state_dict(checkpoint.loads(checkpoint.dumps(det.state_dict())))
    X = stream(50)
    assert np.array_equal(det.score(X), back.score(X))
    for i in range(6, 10):
        ra, rb = det.learn(stream(i)), back.learn(stream(i))
        assert ra == rb
    assert np.array_equal(det.score(X), back.score(X))


@pytest.mark.parametrize("name", NEURAL)
def test_same_seed_same_scores(name: str) -> None:
    a, b = build(name), build(name)
    for i in range(4):
        a.learn(stream(i))
        b.learn(stream(i))
    assert np.array_equal(a.score(stream(9)), b.score(stream(9)))


@pytest.mark.parametrize("name", NEURAL)
def test_extreme_values_keep_training_finite(name: str) -> None:
    det = build(name)
    rng = np.random.default_rng(0)
    for i in range(6):
        X = rng.normal(size=(64, 5))
        X[i % 5, :] = 1e300 * (-1) ** i
        X[10, 2] = -1e12
        X[11] = 0.0
        report = det.learn(X)
        assert report.loss is None or np.isfinite(report.loss)
    s = det.score(np.r_[rng.normal(size=(8, 5)), np.full((1, 5), 1e308)])
    assert np.isfinite(s).all()
    if name == "loe-ae":  # a reconstruction error grows with the distance; NeuTraL's need not
        assert s[-1] >= s[:-1].max()
    for p in det.trainer.backbone.parameters():
        assert np.isfinite(p.detach().numpy()).all()


def test_learn_report_fills_the_learning_state() -> None:
    det = build("loe-ae", score_warmup=256)
    first = det.learn(stream(0))
    assert first.warmup and first.n_learned == 64 and first.loss is not None
    for i in range(1, 6):
        r = det.learn(stream(i))
    assert not r.warmup
    assert r.loe_flag_rate == pytest.approx(0.1, abs=0.02)
    assert 0.0 < r.ess <= 1.0


def test_contributions_point_at_the_odd_feature() -> None:
    det = build("loe-ae")
    assert det.contributions(stream(0)) is None  # nothing learned yet: let the pipeline fall back
    rng = np.random.default_rng(0)
    for _ in range(8):
        det.learn(rng.normal(size=(64, 5)))
    x = np.zeros((1, 5))
    x[0, 3] = 8.0
    c = det.contributions(x)
    assert c.shape == (1, 5) and (c >= 0).all() and int(c.argmax()) == 3


def test_on_drift_reopens_the_warmup() -> None:
    det = build("loe-ae", score_warmup=256)
    for i in range(6):
        det.learn(stream(i))
    assert not det.learn(stream(6)).warmup
    det.on_drift("level_shift")
    assert det.learn(stream(7)).warmup


def test_wrong_width_and_bad_params_are_clear_errors() -> None:
    det = build("loe-ae")
    det.learn(stream(0))
    with pytest.raises(ValueError, match="features"):
        det.score(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_trees: unknown parameter"):
        make_detector("loe-ae", n_trees=3)
    with pytest.raises(ValueError, match="loe: Input should be 'hard', 'soft', 'refine' or 'blind'"):
        make_detector("loe-ae", loe="maybe")
    with pytest.raises(ValueError, match="anomalous loss"):
        make_detector("loe-ae").with_components(backbone={"anomalous_loss": "none"}).check_components()
    with pytest.raises(ValueError, match="before the detector learns"):
        det.with_components(head=None)


def test_a_checkpoint_of_another_version_is_refused_clearly() -> None:
    det = build("loe-ae")
    det.learn(stream(0))
    state = det.state_dict()
    state["version"] = "1"
    with pytest.raises(ValueError, match="version 1, this is version 3"):
        build("loe-ae").load_state_dict(state)
