"""Record keys as classes, and each class's running score statistics (numpy only).

``ClassTable`` maps the keys of a stream (a device, sensor or tenant: a string, or None
for records without one) to at most ``max_classes`` classes. The first keys get a
class each, in the order they arrive; records without a key share the class of the key
None. Once every class is taken, a new key joins the class its first records resemble
most (the caller says which: ``hgad`` picks the class of highest posterior for the
mean latent of those records) and keeps it. A key's class never changes, so its
records always meet the same part of the model. The table remembers at most
``max_keys`` keys; past that, new keys are classed afresh in every window (bounded
memory for streams with unbounded key cardinality).

``ClassScores`` keeps a decayed histogram of the scores of each class's records
(streamad/histogram.py) and one of all records, and reads a score against them:
``(s - median) / spread``, with ``spread = (q90 - median) / 1.2816`` (the standard
deviation of a Gaussian with that upper tail), floored. A class with few scores of its
own borrows from the whole stream's: its median and spread are the weighted mean of its
own (weight ``n``, the values it has seen) and the global ones (weight ``prior``), so a
young key starts on the global statistics and moves to its own as they fill. Only
statistics of scores already learned are read: never those of the window being scored.

>>> t = ClassTable(max_classes=2)
>>> t.lookup(["a", None, "a", "b"]).tolist()
[-1, -1, -1, -1]
>>> t.assign("a"), t.assign(None), t.full
(0, 1, True)
>>> t.lookup(["a", None, "b"]).tolist()
[0, 1, -1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamad.histogram import DecayedHistogram

Z90 = 1.2815515655446004  # the 0.9 quantile of the standard normal


class ClassTable:
    """Keys to class indices ``0 .. n_classes - 1`` (see the module docstring)."""

    def __init__(self, max_classes: int, max_keys: int = 100_000) -> None:
        if max_classes < 1:
            raise ValueError("max_classes must be at least 1")
        self.max_classes = max_classes
        self.max_keys = max_keys
        self.classes: dict[str | None, int] = {}
        self.n_classes = 0

    @property
    def full(self) -> bool:
        return self.n_classes >= self.max_classes

    def lookup(self, keys: Sequence[str | None]) -> np.ndarray:
        """The class of each key, -1 for keys not in the table."""
        get = self.classes.get
        return np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def assign(self, key: str | None, joins: int | None = None) -> int:
        """Give ``key`` a class: a new one while there is room, else ``joins`` (the
        class it resembles most). Returns the class."""
        if key in self.classes:
            return self.classes[key]
        if self.full:
            if joins is None or not 0 <= joins < self.n_classes:
                raise ValueError("every class is taken: say which class the key joins")
            c = joins
        else:
            c = self.n_classes
            self.n_classes += 1
        if len(self.classes) < self.max_keys:
            self.classes[key] = c
        return c

    def state_dict(self) -> dict[str, Any]:
        return {
            "keys": list(self.classes),
            "classes": np.fromiter(self.classes.values(), dtype=np.int64, count=len(self.classes)),
            "n_classes": self.n_classes,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = list(state["keys"])
        classes = np.asarray(state["classes"], dtype=np.int64).tolist()
        self.classes = {(None if k is None else str(k)): int(c) for k, c in zip(keys, classes)}
        self.n_classes = int(state["n_classes"])


class ClassScores:
    """Running median and spread of the scores of each class and of all of them."""

    def __init__(self, max_classes: int, *, half_life: float = 1000.0, global_half_life: float = 10_000.0, prior: float = 64.0, floor: float = 0.05, bins: int = 48) -> None:
        self.max_classes = max_classes
        self.half_life = half_life
        self.prior = prior
        self.floor = floor
        self.bins = bins
        self.all = DecayedHistogram(bins=bins, half_life=global_half_life, min_init=32)
        self.hists: dict[int, DecayedHistogram] = {}
        self._cache: dict[int, tuple[float, float]] = {}

    def _hist(self, c: int) -> DecayedHistogram:
        h = self.hists.get(c)
        if h is None:
            h = self.hists[c] = DecayedHistogram(bins=self.bins, half_life=self.half_life, min_init=32)
        return h

    @staticmethod
    def _read(h: DecayedHistogram) -> tuple[float, float, float]:
        """Median, upper spread and the (decayed) count of ``h``."""
        if h.n_seen == 0:
            return 0.0, 1.0, 0.0
        med, q90 = (float(v) for v in h.quantile(np.array([0.5, 0.9])))
        return med, (q90 - med) / Z90, float(h.total)

    def stats(self, c: int) -> tuple[float, float]:
        """Median and spread class ``c`` is read against (-1: the global ones)."""
        hit = self._cache.get(c)
        if hit is not None:
            return hit
        if c < 0 or c not in self.hists:
            out = self._global()
        else:
            gmed, gspread = self._global()
            cmed, cspread, cn = self._read(self.hists[c])
            w = cn / (cn + self.prior)
            out = (w * cmed + (1 - w) * gmed, max(w * cspread + (1 - w) * gspread, self.floor))
        self._cache[c] = out
        return out

    def _global(self) -> tuple[float, float]:
        hit = self._cache.get(-1)
        if hit is None:
            med, spread, n = self._read(self.all)
            hit = self._cache[-1] = (med, max(spread, self.floor)) if n > 0 else (0.0, 1.0)
        return hit

    def normalize(self, s: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``(s - median) / spread`` of each record's class (-1: global)."""
        out = np.empty(len(s))
        for c in np.unique(classes):
            m = classes == c
            med, spread = self.stats(int(c))
            out[m] = (s[m] - med) / spread
        return out

    def update(self, s: np.ndarray, classes: np.ndarray, cut: float | None = None) -> None:
        """Learn the scores ``s`` of records of ``classes``. With ``cut``, a score above
        ``median + cut * spread`` of its class (as read before this update) counts at
        that level: the few extreme scores of anomalies move no quantile, while a class
        whose scores rise for good still moves its statistics up, mass by mass."""
        if len(s) == 0:
            return
        s = np.asarray(s, dtype=np.float64)
        if cut is not None:
            s = np.minimum(s, self.levels(classes, cut))
        self.all.update(s)
        for c in np.unique(classes):
            self._hist(int(c)).update(s[classes == c])
        self._cache.clear()

    def levels(self, classes: np.ndarray, z: float) -> np.ndarray:
        """``median + z * spread`` of each record's class."""
        out = np.empty(len(classes))
        for c in np.unique(classes):
            med, spread = self.stats(int(c))
            out[classes == c] = med + z * spread
        return out

    def reset(self) -> None:
        self.all.reset()
        self.hists.clear()
        self._cache.clear()

    def state_dict(self) -> dict[str, Any]:
        return {
            "all": self.all.state_dict(),
            "classes": np.fromiter(self.hists, dtype=np.int64, count=len(self.hists)),
            "hists": [h.state_dict() for h in self.hists.values()],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.all.load_state_dict(state["all"])
        self.hists = {}
        for c, hs in zip(np.asarray(state["classes"], dtype=np.int64).tolist(), state["hists"]):
            self._hist(int(c)).load_state_dict(hs)
        self._cache.clear()
