"""Zero-variance input is not anomalous: a feature that never varied adds nothing to a
score or an attribution, and a stream of constants raises no alarm, whatever the detector."""

import numpy as np
import pytest

from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import MemorySink
from streamad.detectors import available, make_detector
from streamad.pipeline import Pipeline


def run(X, name):
    sink = MemorySink()
    p = Pipeline(load_settings(overrides={"detector": {"name": name}}, env={}), sink)
    counts = p.run(ArraySource(X))
    return counts, sink.records


@pytest.mark.parametrize("name", available())
def test_a_constant_stream_raises_no_alarm(name):
    X = np.tile([1.5, 2.0, -3.0], (3000, 1))
    counts, records = run(X, name)
    assert counts.scored == 3000 and counts.alarms == 0 and records == []


@pytest.mark.parametrize("name", available())
def test_features_that_never_varied_are_never_blamed(name):
    rng = np.random.default_rng(0)
    X = np.column_stack([np.tile([1.5, 2.0, -3.0], (3000, 1)), rng.normal(size=(3000, 2))])
    X[2500, 3] += 12.0  # something to alarm on
    _, records = run(X, name)
    named = {f["name"] for r in records for f in r["features"]}
    assert named <= {"x3", "x4"}


def test_the_autoencoder_masks_features_that_never_varied():
    det = make_detector("loe-ae", seed=0)
    rng = np.random.default_rng(1)
    X = np.column_stack([np.zeros(512), rng.normal(size=(512, 2))])
    for i in range(0, 512, 64):
        det.learn(X[i : i + 64])
    probe = X[:8].copy()
    assert np.all(det.contributions(probe)[:, 0] == 0.0)
    # Once it varies it counts like any other feature.
    det.learn(np.column_stack([rng.normal(size=(64, 1)), rng.normal(size=(64, 2))]))
    probe[:, 0] = 3.0
    assert np.all(det.contributions(probe)[:, 0] > 0.0)


def test_constant_scores_of_the_default_detector_stay_constant():
    """A prior that fades as scores arrive would move a constant record's score over time,
    and a threshold learned on the early scores would then flag the later ones."""
    det = make_detector("loe-ae", seed=0)
    X = np.zeros((64, 3))
    seen = []
    for i in range(48):
        det.learn(X)
        if i >= 16:
            seen.append(det.score(X[:1])[0])
    assert np.ptp(seen) < 1e-3
