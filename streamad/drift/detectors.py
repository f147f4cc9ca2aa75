"""The drift tests: of each feature against a reference window (PSI or binned KS), and
of the score stream (Page-Hinkley on score ranks); see the package docstring."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamad.drift import kernel

log = logging.getLogger("streamad.drift")


class FeatureDrift:
    """PSI or binned KS of each feature between a reference window and the recent records.

    ``update(X)`` takes the raw records of a window and returns the indices of the
    features whose statistic crossed ``threshold``. Such a feature then waits for
    ``recent`` new records and takes them as its new reference, so one shift raises
    one alarm, and a drift that goes on raises another once it has moved on further.
    ``statistic`` holds the latest value per feature (NaN until a recent window is full);
    ``fired`` the value that raised the last alarm.
    """

    TAILS = (0.01, 0.05, 0.95, 0.99)

    def __init__(self, n_features: int, method: str = "psi", threshold: float | None = None, reference: int = 5000, recent: int = 2000, bins: int = 10) -> None:
        if method not in ("psi", "ks"):
            raise ValueError(f"unknown feature drift method {method!r}: psi or ks")
        if bins < 2:
            raise ValueError("bins must be at least 2")
        self.d = int(n_features)
        self.method = method
        self.threshold = float(threshold if threshold is not None else (1.0 if method == "psi" else 0.35))
        self.reference = int(reference)
        self.recent = int(recent)
        self.bins = int(bins)
        # Equal-mass bins, plus finer ones in both tails: a change of spread shows first
        # in the tails, where equal-mass bins of 10% would hide it.
        self.levels = np.unique(np.concatenate([np.linspace(0.0, 1.0, self.bins + 1)[1:-1], self.TAILS]).round(6))
        self.nb = len(self.levels) + 1
        self.edges: np.ndarray | None = None  # d × (nb - 1) inner edges
        self.ref_counts = np.zeros((self.d, self.nb))
        self.ref_n = np.zeros(self.d)
        self._collect: list[np.ndarray] = []  # raw records until the first reference is full
        self.ring = np.zeros((self.recent, self.d))
        # The bin of each ring value under the current edges: a record leaving the recent
        # window is taken out of the counts without binning it again.
        self.ring_bins = np.zeros((self.recent, self.d), dtype=np.int64)
        self.pos = 0  # next ring row to write
        self.filled = 0
        self.counts = np.zeros((self.d, self.nb))
        self.statistic = np.full(self.d, np.nan)
        self.fired = np.full(self.d, np.nan)
        # After an alarm a feature waits for a recent window of new records, then takes
        # them as its reference: a reference straddling the change would alarm again.
        self.rebase = np.zeros(self.d, dtype=bool)
        self.wait = np.zeros(self.d, dtype=np.int64)

    @property
    def ready(self) -> bool:
        return self.edges is not None

    def _bin(self, X: np.ndarray, features: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Bin index of each value (n × len(features)), as a window's values are binned."""
        assert self.edges is not None
        return kernel.bins(np.ascontiguousarray(X), np.ascontiguousarray(self.edges[features]))

    def _histogram(self, idx: np.ndarray) -> np.ndarray:
        d = idx.shape[1]
        flat = (idx + np.arange(d) * self.nb).ravel()
        return np.bincount(flat, minlength=d * self.nb).reshape(d, self.nb).astype(np.float64)

    def _set_reference(self, R: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Quantile edges and counts of ``R`` (n × len(features)) for ``features``; the
        bins of ``R`` under the new edges."""
        assert self.edges is not None
        self.edges[features] = np.quantile(R, self.levels, axis=0).T
        bins = self._bin(R, features)
        self.ref_counts[features] = self._histogram(bins)
        self.ref_n[features] = len(R)
        return bins

    def update(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"expected records with {self.d} features, got shape {X.shape}")
        if len(X) == 0:
            return np.empty(0, dtype=np.int64)
        if self.edges is None:
            self._collect.append(X)
            pooled = np.concatenate(self._collect)
            if len(pooled) < self.reference:
                return np.empty(0, dtype=np.int64)
            self._collect = []
            self.edges = np.zeros((self.d, self.nb - 1))
            self._set_reference(pooled[: self.reference], np.arange(self.d))
            X = pooled[self.reference :]
            if len(X) == 0:
                return np.empty(0, dtype=np.int64)
        X = np.ascontiguousarray(X[-self.recent :])
        n = len(X)
        assert self.edges is not None
        kernel.feed(X, self.edges, self.ring, self.ring_bins, self.counts, self.pos, self.filled)
        self.pos = int((self.pos + n) % self.recent)
        self.filled = min(self.recent, self.filled + n)
        waiting = bool(self.rebase.any())  # wait is 0 where rebase is not set
        if waiting:
            self.wait = np.maximum(self.wait - n, 0)
            rebased = np.flatnonzero(self.rebase & (self.wait == 0))
            if len(rebased):
                # The ring now holds only records from after the alarm: the new reference.
                self.ring_bins[:, rebased] = self._set_reference(self.ring[:, rebased], rebased)
                self.counts[rebased] = self.ref_counts[rebased]
                self.rebase[rebased] = False
        if self.filled < self.recent:
            return np.empty(0, dtype=np.int64)
        stat = self._statistic()
        if waiting:
            stat[self.rebase] = np.nan
        self.statistic = stat
        drifted = np.flatnonzero(stat > self.threshold)
        if len(drifted):
            self.fired[drifted] = stat[drifted]
            self.rebase[drifted] = True
            self.wait[drifted] = self.recent
        return drifted

    def _statistic(self) -> np.ndarray:
        # PSI: half a count in every bin keeps empty bins finite without hiding real shifts.
        return kernel.statistic(self.counts, self.ref_counts, self.ref_n, self.method == "ks")

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self._params(),
            "edges": self.edges,
            "ref_counts": self.ref_counts,
            "ref_n": self.ref_n,
            "collect": np.concatenate(self._collect) if self._collect else np.empty((0, self.d)),
            "ring": self.ring,
            "pos": self.pos,
            "filled": self.filled,
            "statistic": self.statistic,
            "fired": self.fired,
            "rebase": self.rebase,
            "wait": self.wait,
        }

    def _params(self) -> dict[str, Any]:
        return {"n_features": self.d, "method": self.method, "threshold": self.threshold, "reference": self.reference, "recent": self.recent, "bins": self.bins}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state of a test made with the same parameters; one made with others
        (drift settings changed since the checkpoint) is left out: the test starts afresh."""
        if not _same(state["params"], self._params()):
            log.info("feature drift settings changed since the checkpoint: the feature drift tests start afresh")
            return
        self.rebase = np.array(state["rebase"], dtype=bool)
        self.wait = np.array(state["wait"], dtype=np.int64)
        self.edges = None if state["edges"] is None else np.array(state["edges"], dtype=np.float64)
        self.ref_counts = np.array(state["ref_counts"], dtype=np.float64)
        self.ref_n = np.array(state["ref_n"], dtype=np.float64)
        collect = np.asarray(state["collect"], dtype=np.float64)
        self._collect = [collect] if len(collect) else []
        self.ring = np.array(state["ring"], dtype=np.float64)
        self.pos, self.filled = int(state["pos"]), int(state["filled"])
        self.statistic = np.array(state["statistic"], dtype=np.float64)
        self.fired = np.array(state["fired"], dtype=np.float64)
        if self.edges is not None and self.filled:
            # The counts follow from the ring; recomputing them keeps the checkpoint small.
            self.ring_bins[: self.filled] = self._bin(self.ring[: self.filled])
            self.counts = self._histogram(self.ring_bins[: self.filled])


# -- score drift ------------------------------------------------------------------------------


class PageHinkley:
    """The one-sided (upward) Page-Hinkley test (Page, Biometrika 1954), computed as
    river's ``drift.PageHinkley(mode="up", alpha=1)`` computes it, without importing
    river.drift (which pulls in river's datasets and scikit-learn: most of a second, in
    the first window of every run).

    >>> ph = PageHinkley(min_instances=5, delta=0.05, threshold=1.0)
    >>> [ph.update(v) for v in [0.5] * 10 + [0.9] * 10].index(True)  # the 4th value after the step
    13
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.n = 0
        self.mean = 0.0
        self.sum_increase = 0.0
        self.min_increase = math.inf

    @property
    def statistic(self) -> float:
        return self.sum_increase - self.min_increase if self.n >= self.min_instances else math.nan

    def update(self, x: float) -> bool:
        """Add a value; True when it completes an upward change."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.sum_increase += x - self.mean - self.delta
        self.min_increase = min(self.min_increase, self.sum_increase)
        return self.n >= self.min_instances and self.sum_increase - self.min_increase > self.threshold

    def update_many(self, values: np.ndarray) -> int:
        """``update`` each value in turn, up to the first that completes an upward change:
        its index (the values after it are left out), or -1.

        >>> PageHinkley(min_instances=5, delta=0.05, threshold=1.0).update_many(np.array([0.5] * 10 + [0.9] * 10))
        13
        """
        state = np.array([self.n, self.mean, self.sum_increase, self.min_increase], dtype=np.float64)
        hit = kernel.page_hinkley(np.asarray(values, dtype=np.float64), state, int(self.min_instances), float(self.delta), float(self.threshold))
        self.n = int(state[0])
        self.mean, self.sum_increase, self.min_increase = float(state[1]), float(state[2]), float(state[3])
        return int(hit)

    def state_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": self.mean, "sum_increase": self.sum_increase, "min_increase": self.min_increase}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n = int(state["n"])
        self.mean = float(state["mean"])
        self.sum_increase = float(state["sum_increase"])
        self.min_increase = float(state["min_increase"])


class ScoreDrift:
    """A Page-Hinkley test on the ranks of scores among reference scores.

    ``update(scores)`` returns True when the scores have moved up. After an alarm the
    reference is re-taken from the next ``reference`` scores and the test starts afresh.
    ``statistic`` is Page-Hinkley's upward statistic, alarming above ``threshold``.
    """

    LEVELS = 200

    def __init__(self, reference: int = 5000, chunk: int = 32, delta: float = 0.05, threshold: float = 5.0, min_chunks: int = 30) -> None:
        self.reference = int(reference)
        self.chunk = int(chunk)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_chunks = int(min_chunks)
        self.grid: np.ndarray | None = None  # reference quantiles at LEVELS + 1 levels
        self._collect: list[np.ndarray] = []
        self._pending = np.empty(0)  # ranks not yet filling a chunk
        self.statistic = math.nan
        self.fired = math.nan
        self._ph = self._new_test()

    def _new_test(self) -> PageHinkley:
        return PageHinkley(min_instances=self.min_chunks, delta=self.delta, threshold=self.threshold)

    @property
    def ready(self) -> bool:
        return self.grid is not None

    def update(self, scores: np.ndarray) -> bool:
        s = np.asarray(scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if self.grid is None:
            if len(s):
                self._collect.append(s)
            pooled = np.concatenate(self._collect) if self._collect else np.empty(0)
            if len(pooled) < self.reference:
                return False
            self._collect = []
            self.grid = np.quantile(pooled[: self.reference], np.linspace(0.0, 1.0, self.LEVELS + 1))
            s = pooled[self.reference :]
        medians, self._pending = kernel.chunk_medians(s, self.grid, self._pending, self.chunk)
        if not len(medians):
            return False
        ph = self._ph
        hit = ph.update_many(medians)
        self.statistic = ph.statistic
        if hit < 0:
            return False
        self.fired = self.statistic
        self.grid = None
        self._pending = np.empty(0)
        self._ph = self._new_test()
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self._params(),
            "grid": self.grid,
            "collect": np.concatenate(self._collect) if self._collect else np.empty(0),
            "pending": self._pending,
            "statistic": self.statistic,
            "fired": self.fired,
            "ph": self._ph.state_dict(),
        }

    def _params(self) -> dict[str, Any]:
        return {"reference": self.reference, "chunk": self.chunk, "delta": self.delta, "threshold": self.threshold, "min_chunks": self.min_chunks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """As ``FeatureDrift.load_state_dict``: a state made with other parameters is left out."""
        if not _same(state["params"], self._params()):
            log.info("score drift settings changed since the checkpoint: the score drift test starts afresh")
            return
        self.grid = None if state["grid"] is None else np.array(state["grid"], dtype=np.float64)
        collect = np.asarray(state["collect"], dtype=np.float64)
        self._collect = [collect] if len(collect) else []
        self._pending = np.array(state["pending"], dtype=np.float64)
        self.statistic, self.fired = float(state["statistic"]), float(state["fired"])
        self._ph.load_state_dict(state["ph"])


def _same(saved: Mapping[str, Any], mine: Mapping[str, Any]) -> bool:
    return {k: saved.get(k) for k in mine} == dict(mine) and set(saved) == set(mine)
