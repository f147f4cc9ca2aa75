"""Peer detectors, driven the way their own documentation drives them.

Every runner takes the records (n × d, already in stream order) and a seed, never the
labels, and returns the score of every record and the wall-seconds of its
score-and-learn loop. Inputs are put in the peer's own format (dicts for river, one
NumPy row per record for pysad) before the clock starts, as a loader would.

Streaming peers are test-then-train, one record at a time: the record is scored by
the state from before it, then learned (river: ``score_one`` then ``learn_one``;
pysad: ``fit_score_partial``, which its docs define as exactly that).

pysad's ``HalfSpaceTrees`` and ``RSHash`` need the range of every feature when they
are built. pysad's examples take it from the whole array, but the protocol forbids
fitting anything on the whole data (rule 5), and a stream has no whole array. So
they get what river recommends for its own HalfSpaceTrees when the range is
unknown: an online min-max scaler in front (statistics from the records before,
updated after) and the range [0, 1]. ``bounds="file"`` reproduces pysad's examples
for comparison; it is not protocol v1 and is never the default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

Result = tuple[np.ndarray, float, dict[str, Any]]


class Clock:
    """Wall and CPU seconds of a block: wall is the throughput's clock; CPU beside it
    shows whether the job had its core to itself on a shared machine."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = -time.perf_counter(), -time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter()
        self.cpu += time.process_time()


def river_hst(X: np.ndarray, seed: int) -> Result:
    """river's ``HalfSpaceTrees`` at its defaults behind ``MinMaxScaler``, as river's
    documentation recommends when feature ranges are unknown."""
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=seed))
    rows = [dict(enumerate(r)) for r in X.tolist()]
    scores = np.empty(len(rows))
    score_one, learn_one = model.score_one, model.learn_one
    with Clock() as clock:
        for i, x in enumerate(rows):
            scores[i] = score_one(x)
            learn_one(x)
    return scores, clock.wall, {"driven": "score_one then learn_one, one record at a time", "scaler": "river MinMaxScaler (online)", "cpu_seconds": clock.cpu}


class OnlineMinMax:
    """river's ``MinMaxScaler`` on NumPy rows: scale by the range of the records seen
    before, learn after; 0 where a feature has not varied yet.

    >>> sc = OnlineMinMax(2)
    >>> sc.transform(np.array([5.0, 1.0])).tolist()
    [0.0, 0.0]
    >>> sc.learn(np.array([0.0, 1.0])); sc.learn(np.array([10.0, 1.0]))
    >>> sc.transform(np.array([5.0, 3.0])).tolist()
    [0.5, 0.0]
    """

    def __init__(self, d: int) -> None:
        self.lo = np.full(d, np.inf)
        self.hi = np.full(d, -np.inf)

    def transform(self, x: np.ndarray) -> np.ndarray:
        span = self.hi - self.lo
        ok = span > 0
        out = np.zeros_like(x)
        np.divide(x - self.lo, span, out=out, where=ok)
        return out

    def learn(self, x: np.ndarray) -> None:
        np.minimum(self.lo, x, out=self.lo)
        np.maximum(self.hi, x, out=self.hi)


def _pysad_loop(model: Any, X: np.ndarray, scaled: bool) -> tuple[np.ndarray, Clock]:
    rows = list(np.ascontiguousarray(X, dtype=np.float64))
    scores = np.empty(len(rows))
    fit_score = model.fit_score_partial
    with Clock() as clock:
        if scaled:
            sc = OnlineMinMax(X.shape[1])
            for i, x in enumerate(rows):
                scores[i] = fit_score(sc.transform(x))
                sc.learn(x)
        else:
            for i, x in enumerate(rows):
                scores[i] = fit_score(x)
    return scores, clock


def _bounded(cls_name: str, X: np.ndarray, seed: int, bounds: str) -> Result:
    import pysad.models

    cls = getattr(pysad.models, cls_name)
    d = X.shape[1]
    if bounds == "online-minmax":
        model = cls(feature_mins=np.zeros(d), feature_maxes=np.ones(d), random_state=seed)
        info = {"bounds": "[0, 1] behind an online min-max scaler"}
    elif bounds == "file":
        model = cls(feature_mins=X.min(axis=0), feature_maxes=X.max(axis=0), random_state=seed)
        info = {"bounds": "min/max of the whole file (pysad's examples; not protocol v1)"}
    else:
        raise ValueError(f"unknown bounds {bounds!r}: online-minmax or file")
    scores, clock = _pysad_loop(model, X, scaled=bounds == "online-minmax")
    return scores, clock.wall, {"driven": "fit_score_partial, one record at a time", **info, "cpu_seconds": clock.cpu}


def pysad_hst(X: np.ndarray, seed: int, bounds: str = "online-minmax") -> Result:
    return _bounded("HalfSpaceTrees", X, seed, bounds)


def pysad_rshash(X: np.ndarray, seed: int, bounds: str = "online-minmax") -> Result:
    return _bounded("RSHash", X, seed, bounds)


def _unbounded(factory: Callable[[int], Any], X: np.ndarray, seed: int) -> Result:
    scores, clock = _pysad_loop(factory(seed), X, scaled=False)
    return scores, clock.wall, {"driven": "fit_score_partial, one record at a time", "cpu_seconds": clock.cpu}


def pysad_loda(X: np.ndarray, seed: int) -> Result:
    from pysad.models import LODA

    return _unbounded(lambda s: LODA(random_state=s), X, seed)


def pysad_xstream(X: np.ndarray, seed: int) -> Result:
    from pysad.models import xStream

    return _unbounded(lambda s: xStream(random_state=s), X, seed)


def pysad_iforestasd(X: np.ndarray, seed: int) -> Result:
    from pysad.models import IForestASD

    # random_state goes through to scikit-learn's IsolationForest.
    return _unbounded(lambda s: IForestASD(random_state=s), X, seed)


def offline_iforest(X: np.ndarray, seed: int) -> Result:
    """scikit-learn's ``IsolationForest`` at its defaults, fit on all the records and
    then scoring them: an offline reference that sees the future, not a streaming peer."""
    from sklearn.ensemble import IsolationForest

    with Clock() as clock:
        model = IsolationForest(random_state=seed).fit(X)
        scores = -model.score_samples(X)
    return scores, clock.wall, {"driven": "offline: fit on all records, then score them", "cpu_seconds": clock.cpu}

