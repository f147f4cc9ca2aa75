"""What turns a lane's scores into alarms, and into the records the model learns less of:
its threshold (with, while the detector warms up, a twin that sets the suspect level),
one for the whole lane or one per key.

A lane whose detector keeps a model per key (``per-key``: a device judged against its
own past) has scores that mean something only beside the same key's: a steady pump's 30
is far out, a rough pump's is Tuesday. One threshold for all of them is fitted to their
mixture, so the steady pump's faults stay under the rough pump's tail, and a fault of one
key that enters the tail fit while it is young lifts the threshold of every key (on
SKAB's 35 runs as one stream, F1 swung from 0.18 to 0.54 with the window size).
``PerKeyJudging`` gives each key the threshold it would have alone: its own warm-up,
small-sample estimate, calibration and tail, so the configured risk is each device's
false-alarm rate (benchmarks/results/ANALYSIS.md, tenth round). The price: a key's
threshold grows up on its key's records alone (a small-sample estimate until its
detector's warm-up and ``min_records`` grown scores; a tail of few peaks after), not on
the lane's.

>>> import numpy as np
>>> from streamad.threshold import QuantileThreshold
>>> judging = PerKeyJudging(QuantileThreshold(q=0.99, min_records=200))
>>> rng = np.random.default_rng(0)
>>> keys = np.array(["quiet", "noisy"] * 500, dtype=object)
>>> scores = rng.exponential(size=1000) * np.where(keys == "quiet", 1.0, 10.0)
>>> _ = judging.update(scores, keys, young=False)
>>> judging.alarms(np.array([8.0, 8.0]), np.array(["quiet", "noisy"], dtype=object)).tolist()
[True, False]
"""

from __future__ import annotations

import copy
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from streamad.key_table import KeyTable
from streamad.minibatch import key_groups, listed_keys
from streamad.threshold import EARLY_WINDOW, SpotThreshold, Threshold

#: a record scoring above this top share of the scores the threshold has learned is
#: suspect: flagged like an alarm while the model learns (robust to long anomalies that
#: never reach the threshold; benchmarks/results/skab.md)
SUSPECT_SHARE = 0.01

#: whether a key's scores are a young detector's (a key, or None for the lane)
Young = bool | Callable[[Any], bool]

#: records of one key (the lane, without keys) flagged, more than half of each batch its
#: threshold learns, after which their state is taken as the key's new normal
#: (``Judging.adopting``)
ADOPT_AFTER = 1024


class Judging:
    """A threshold, and while its detector warms up a twin of it that learns every
    score (the first windows' too, which the threshold skips: ``skip_first``) and
    sets the suspect level (``flagged``). Keys are accepted and ignored: one threshold
    for the lane.

    A state that lasts is adopted (``adopt_after``): once the records have been flagged,
    more than half of each batch the threshold learns, for that many records in a row,
    nothing is flagged until a batch is mostly under the flag level again, and
    ``update`` says so, so that the model learns every record and its detector forgets
    the old state. Without it a lasting change (a new set point) is learned one record
    in ``FLAGGED_EVERY``, by an estimate holding the stream's whole history: a step
    after 10,000 records alarmed on 6,900-8,300 of the next, one after 30,000 on
    14,000-15,700 (benchmarks/results/set_points.md).

    >>> judging = Judging(SpotThreshold(min_records=200), adopt_after=300)
    >>> rng = np.random.default_rng(0)
    >>> judging.update(rng.exponential(size=5000))
    []
    >>> stepped = rng.exponential(size=100) + 20.0
    >>> [judging.update(stepped) for _ in range(4)]
    [[], [], [None], []]
    >>> judging.adopting, bool(judging.flagged(stepped).any())
    (True, False)
    """

    def __init__(self, threshold: Threshold, adopt_after: int | None = ADOPT_AFTER) -> None:
        self.threshold = threshold
        self.twin: Threshold | None = _learning_all(threshold)
        self.adopt_after = adopt_after
        self.run = 0  # records flagged in a row (batch by batch): see ``adopting``
        self._level, self._level_seen = math.inf, (-1, math.nan, -1)  # flag_level's, and when

    def values(self, keys: np.ndarray | None, n: int) -> float:
        """The threshold in force for each of ``n`` records (here one for all)."""
        return float(self.threshold.value)

    def alarms(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        return self.threshold.alarms(scores)

    def verdict(self, scores: np.ndarray, keys: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The threshold in force and which records alarm."""
        return float(self.threshold.value), self.threshold.alarms(scores)

    def tail_probability(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        return self.threshold.tail_probability(np.asarray(scores, dtype=np.float64))

    def flagged(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        """Records the model learns only one in ``FLAGGED_EVERY`` of: those above the
        threshold, and, once it can alarm, those in the top ``SUSPECT_SHARE`` of the
        scores it learned. A long anomaly that scores high but under the threshold (a
        pump running in a wrong state for minutes) would otherwise be learned as normal
        within a few hundred records; the top share of normal records is learned less,
        which costs the threshold nothing (it learns every score).

        While the detector warms up, the suspect level comes from the twin, which
        learns every score, the first windows' too: those high first scores keep the
        young model's suspect level high, so it learns most of what it sees while it
        knows little. A suspect level from the alarm threshold's scores kept normal
        records from the model (on the demo, spikes missed later; ODDS AP fell:
        benchmarks/results/ANALYSIS.md). Alarms are flagged whichever level is lower.
        While a lasting state is adopted (``adopting``), none."""
        return np.asarray(scores, dtype=np.float64) > self.flag_level()

    @property
    def adopting(self) -> bool:
        """The records have been flagged for ``adopt_after`` records in a row: their state
        is learned as the new normal (nothing flagged) until they are mostly under the
        flag level again."""
        return self.adopt_after is not None and self.run >= self.adopt_after

    def flag_level(self) -> float:
        """The score above which ``flagged`` flags: infinite while ``adopting``."""
        return math.inf if self.adopting else self._flag_level()

    def _flag_level(self) -> float:
        # Kept until the thresholds learn: a lane of many keys asks every key's at every window.
        ref = self.threshold if self.twin is None else self.twin
        seen = (self.threshold.offered, self.threshold.value, ref.offered)
        if seen != self._level_seen:
            level = float(ref.value)
            if math.isfinite(level) and ref.hist.ready:
                suspect = float(ref.hist.quantile(1.0 - SUSPECT_SHARE))
                if suspect == suspect:
                    level = min(level, suspect)
            self._level, self._level_seen = min(level, float(self.threshold.value)), seen
        return self._level

    def update(self, scores: np.ndarray, keys: np.ndarray | None = None, young: Young = False) -> list[Any]:
        """Learn a window's scores; ``young``: they are a detector's in its warm-up
        (which give a provisional threshold: streamad/threshold.py). ``[None]`` (the
        lane) when a lasting state has just begun to be adopted (``adopting``), else
        ``[]``: as ``PerKeyJudging.update`` lists keys."""
        return [None] if self._update(scores, young if isinstance(young, bool) else young(None)) else []

    def _update(self, scores: np.ndarray, young: bool) -> bool:
        began = False
        if self.adopt_after is not None and len(scores):
            # Counted against the level the batch was flagged by (before the threshold
            # learns it), and only on a grown detector's scores: a young one learns
            # every record anyway.
            was = self.adopting
            lasting = not young and 2 * int(np.count_nonzero(scores > self._flag_level())) > len(scores)
            self.run = self.run + len(scores) if lasting else 0
            began = self.adopting and not was
        self.threshold.update(scores, young=young)
        if self.twin is not None:
            if self.threshold.grown:
                self.twin = None  # grown-up scores: the alarm threshold flags
            else:
                self.twin.update(scores, young=young)
        return began

    def flagged_run(self, key: Any = None) -> int:
        """Records flagged in a row (``adopting``); keys are ignored."""
        return self.run

    def restart(self, key: Any = None) -> None:
        """Count the records flagged in a row from 0 again: the state is not adopted."""
        self.run = 0

    def reset(self) -> None:
        self.threshold.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold.state_dict(), "warmup_twin": None if self.twin is None else self.twin.state_dict(), "flagged_run": self.run}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.threshold.load_state_dict(state["threshold"])
        self.run = int(state.get("flagged_run", 0))  # states before adoption: none in a row
        self.twin = None  # absent from checkpoints of before the skip, and once grown
        twin_state = state.get("warmup_twin")
        if twin_state is not None:
            self.twin = _learning_all(self.threshold)
            if self.twin is not None:
                self.twin.load_state_dict(twin_state)


class PerKeyJudging:
    """A ``Judging`` per key (each a fresh copy of ``threshold`` when its key first
    comes), at most ``max_keys`` of them, the least recently seen forgotten first.

    A key's scores are learned as its own threshold would learn them alone: when it is
    the only key of a window, at once; on a window of many keys, eight or more at a time
    (``BATCH``, as the ``per-key`` detector learns a grown key's records), so that a
    stream of many devices does not refit a histogram per record. Without keys it is
    one ``Judging``, record for record."""

    BATCH = 8
    #: A key's threshold keeps at most this many peaks (its tail fit: the last ~20,000
    #: of its records, at SPOT's level 0.9): 34 KB a key in memory and in checkpoints
    #: instead of 83 KB, for up to ``max_keys`` keys a lane (the demo's one-device
    #: streams of 20,000 records are judged as with 5,000).
    MAX_PEAKS = 2000

    def __init__(self, threshold: Threshold, max_keys: int = 1024, adopt_after: int | None = ADOPT_AFTER) -> None:
        self.template = copy.deepcopy(threshold)
        self.adopt_after = adopt_after
        if isinstance(self.template, SpotThreshold):
            self.template.max_peaks = min(self.template.max_peaks, self.MAX_PEAKS)
        self.max_keys = max_keys
        # Each key's judge, least recently seen first, and its scores not learned yet.
        self.table: KeyTable[Judging] = KeyTable(max_keys, self.BATCH)
        # A lane checkpointed with one threshold for its keys: a new key starts from it.
        self._seed: Mapping[str, Any] | None = None
        self._blank = self._new()  # what a key not seen yet is judged by

    def _new(self) -> Judging:
        judging = Judging(copy.deepcopy(self.template), self.adopt_after)
        if self._seed is not None:
            judging.load_state_dict(self._seed)
        return judging

    @property
    def judges(self) -> OrderedDict[Any, Judging]:
        return self.table.items

    @property
    def evictions(self) -> int:
        return self.table.evictions

    @property
    def threshold(self) -> Threshold:
        """The threshold of the key that has learned the most scores (a fresh one
        before any key): what the replay's notes about a lane's warm-up read."""
        if not self.judges:
            return self._blank.threshold
        return max((j.threshold for j in self.judges.values()), key=lambda t: t.offered)

    def _judge(self, key: Any) -> Judging:
        """``key``'s, or for a key not seen yet what it will start from."""
        return self.judges.get(key, self._blank)

    def _per_record(self, keys: np.ndarray | list[Any] | None, n: int, of: Callable[[Judging], float]) -> np.ndarray:
        """``of`` each record's judge, asked once a key (a window of one device asks
        its judge once, not once a record)."""
        if keys is None:
            return np.full(n, of(self._judge(None)), dtype=np.float64)
        listed = listed_keys(keys)
        asked = {k: of(self._judge(k)) for k in dict.fromkeys(listed)}
        return np.fromiter(map(asked.__getitem__, listed), dtype=np.float64, count=len(listed))

    def values(self, keys: np.ndarray | None, n: int) -> np.ndarray:
        return self._per_record(keys, n, _value)

    def alarms(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        return self.verdict(scores, keys)[1]

    def verdict(self, scores: np.ndarray, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each record's threshold and whether it alarms, in one pass over the window."""
        scores = np.asarray(scores, dtype=np.float64)
        if keys is None:
            judge = self._judge(None)
            return np.full(len(scores), judge.threshold.value), judge.alarms(scores)
        listed = listed_keys(keys)
        thr = self._per_record(listed, len(listed), _value)
        out = scores > thr
        if len(scores) >= EARLY_WINDOW:
            # A key with enough records in the window for Threshold.alarms' rule about
            # a young estimate (a window that moved as a whole raises no alarm).
            for k, c in Counter(listed).items():
                if c >= EARLY_WINDOW and self._judge(k).threshold.early:
                    rows = np.array([i for i, key in enumerate(listed) if key == k])
                    out[rows] = self._judge(k).alarms(scores[rows])
        return thr, out

    def tail_probability(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        out = np.ones(len(scores))
        for k, rows in key_groups(keys, len(scores)):
            out[rows] = self._judge(k).tail_probability(scores[rows])
        return out

    def flagged(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        return scores > self._per_record(keys, len(scores), Judging.flag_level)

    def update(self, scores: np.ndarray, keys: np.ndarray | None = None, young: Young = False) -> list[Any]:
        """Learn a window's scores, each key's by its own judge; the keys whose lasting
        state has just begun to be adopted (``Judging.adopting``)."""
        scores = np.asarray(scores, dtype=np.float64)
        groups = key_groups(keys, len(scores))
        began = []
        for k, j, rows in self.table.take(groups, self._new):
            s = self.table.batch(k, scores[rows], hold=len(groups) > 1)
            if s is not None and j._update(s, young if isinstance(young, bool) else young(k)):
                began.append(k)
        return began

    def flagged_run(self, key: Any) -> int:
        """``key``'s records flagged in a row (``Judging.adopting``)."""
        return self._judge(key).run

    def restart(self, key: Any) -> None:
        """Count ``key``'s records flagged in a row from 0 again."""
        judge = self.judges.get(key)
        if judge is not None:
            judge.restart()

    def reset(self) -> None:
        for j in self.judges.values():
            j.reset()

    def state_dict(self) -> dict[str, Any]:
        # In a model's checkpoint where a lane's one threshold is (``threshold``).
        keys = {
            "keys": list(self.judges),
            "judges": [j.state_dict() for j in self.judges.values()],
            "pending": [self.table.pending.get(k) for k in self.judges],
            "evictions": self.evictions,
            "seed": self._seed,
        }
        return {"threshold": {"per_key": keys}, "warmup_twin": None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.table = KeyTable(self.max_keys, self.BATCH)
        keys = state["threshold"].get("per_key")
        if keys is None:
            # One threshold for all the keys (a checkpoint from before thresholds per
            # key): every key starts from it, so alarms go on through the upgrade.
            self._seed = {"threshold": state["threshold"], "warmup_twin": state.get("warmup_twin")}
        else:
            self._seed = keys["seed"]
            for k, s, p in zip(keys["keys"], keys["judges"], keys["pending"]):
                key = tuple(k) if isinstance(k, list) else k
                j = Judging(copy.deepcopy(self.template), self.adopt_after)
                j.load_state_dict(s)
                self.judges[key] = j
                if p is not None:
                    self.table.pending[key] = np.asarray(p, dtype=np.float64)
            self.table.evictions = int(keys["evictions"])
        self._blank = self._new()


def _value(judge: Judging) -> float:
    return float(judge.threshold.value)


def _learning_all(threshold: Threshold) -> Threshold | None:
    """A fresh copy of ``threshold`` that skips no window (None: it skips none itself)."""
    if not getattr(threshold, "skip_first", 0):
        return None
    twin = copy.deepcopy(threshold)
    twin.skip_first = 0
    return twin
