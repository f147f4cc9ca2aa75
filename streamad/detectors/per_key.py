"""One detector per key: a fleet of devices of different kinds on one stream, each judged
against its own past.

A detector that ignores keys serves many devices as one population, and a device that
runs in a regime of its own then looks anomalous from its first record to its last,
while a fault inside any one device hides in the spread between devices. On SKAB's 35
runs interleaved on one stream the default raised no alarm at all: a handful of
runs scored high throughout, the threshold rose above them, and within each run the
scores ranked its anomalies no better than chance (benchmarks/results/ANALYSIS.md,
seventh round). Here each key gets a detector of its own (any registered one, with the
same parameters), learning only its key's records, so a device is compared with itself.

Each key's scores are also judged against its own threshold (``scores_per_key``: the
model keeps one per key, streamad/judging.py), so a quiet pump's moderate fault is not
held to the tail of a rough pump beside it, and the configured risk is each device's
false-alarm rate. The number of keys is bounded
(``max_keys``): a new key beyond it replaces the one seen least recently (not one of the
same window's keys, while there are others), whose detector is forgotten (``evictions``). A key's first records are scored 0 until its detector has
learned enough to speak (the inner detector's own warm-up; ``gaussian`` with ``early``
speaks after five records per column), and each key's detector learns the records the
lane model flagged as it would alone (``learns_alarmed_rows``: that Gaussian learns
every record of its warm-up, one flagged record in ten after it).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = PerKey(inner={"warmup": 16})
>>> # two pumps in different regimes: a reading normal for one is far off for the other
>>> X = np.vstack([rng.normal(0.0, 1.0, (200, 2)), rng.normal(8.0, 1.0, (200, 2))])
>>> keys = np.array(["a"] * 200 + ["b"] * 200, dtype=object)
>>> _ = det.learn(X, keys)
>>> a, b = det.score(np.array([[8.0, 8.0], [8.0, 8.0]]), np.array(["a", "b"], dtype=object))
>>> bool(a > 50 > b)
True
>>> det.n_keys, det.evictions
(2, 0)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from streamad.detectors.base import Detector, LearnReport
from streamad.key_table import KeyTable
from streamad.minibatch import Keys, Record, key_groups

#: The inner detector's parameters when ``inner`` is not given: for ``gaussian``, those
#: of ``examples/sensor-streams.yaml`` (trimmed at its scores' 95% quantile, so a fault
#: that lasts is not learned as the device's normal; scoring from its first windows).
DEFAULT_INNER: dict[str, dict[str, Any]] = {"gaussian": {"trim": 0.95, "early": True}}


class PerKey(Detector):
    """A detector per key (``detector``, built with ``inner`` as its parameters), at most
    ``max_keys`` of them, the least recently seen replaced first.

    Parameters
    ----------
    detector : str, default "gaussian"
        The registered detector each key gets.
    inner : dict, optional
        Its parameters, the same for every key, over ``DEFAULT_INNER`` for that detector
        (``{"warmup": 64}`` keeps the trimming; ``{"trim": 1.0, "early": False}`` is the
        plain Gaussian), else over its own defaults.
    max_keys : int, default 1024
        Keys kept at once; a new key beyond them replaces the least recently seen.
    seed : int, optional
        Passed to each key's detector when it takes one.
    """

    name = "per-key"
    version = "1"
    #: A grown key's detector learns its records this many or more at a time: on a stream
    #: of many devices a window holds one or two records of each, and a detector's learn
    #: (for ``gaussian``: an inverse of its covariance) per record was most of the time.
    #: While a key's detector warms up it learns every window's records at once, and so
    #: does the only key of a window (the window is its batch).
    BATCH = 8
    uses_keys = True
    scores_per_key = True
    #: A scaler shared by the keys would move every key's units with the other keys'
    #: records, under estimates that each hold one key's: each key's detector keeps its
    #: own scale (``gaussian``: its covariance). The temporal stage's derived columns,
    #: already relative to each key's own history, keep theirs.
    preferred_scaler = "none"

    detector: str
    inner: dict[str, Any] | None
    max_keys: int
    seed: int | None

    def __init__(
        self,
        detector: str = "gaussian",
        inner: dict[str, Any] | None = None,
        max_keys: Annotated[int, Field(ge=1)] = 1024,
        seed: int | None = None,
    ) -> None:
        self._set_params(PerKey, locals())
        from streamad.detectors import accepts, resolve

        if resolve(detector) == self.name:
            raise ValueError("per-key: the inner detector cannot be per-key itself")
        # ``inner`` changes the defaults it names (``{warmup: 64}`` keeps the trimming).
        self._inner = {**DEFAULT_INNER.get(resolve(detector), {}), **(inner or {})}
        if seed is not None and accepts(detector, "seed"):
            self._inner.setdefault("seed", seed)
        self._template = self._make()  # checks ``inner`` now; a new key's detector as it starts
        # Each key's detector, least recently learned first, and a grown key's records
        # not learned yet (fewer than ``BATCH``).
        self.table: KeyTable[Detector] = KeyTable(max_keys, self.BATCH, forget=self._forget)
        self.grown = False  # some key's detector has finished its warm-up
        self.grown_keys: set[Any] = set()

    @property
    def models(self) -> OrderedDict[Any, Detector]:
        return self.table.items

    @property
    def pending(self) -> dict[Any, np.ndarray]:
        return self.table.pending

    @property
    def evictions(self) -> int:
        return self.table.evictions

    def _forget(self, key: Any) -> None:
        self.grown_keys.discard(key)

    def warmup_setting(self) -> tuple[int, str, str] | None:
        # Each key's detector warms up on its own records, by its own parameter.
        p = self._template.warmup_param
        return None if p is None else (int(getattr(self._template, p)), f"'inner={{{p}: N}}'", f"detector.params.inner.{p}")

    def _make(self) -> Detector:
        from streamad.detectors import make_detector

        return make_detector(self.detector, **self._inner)

    @property
    def n_keys(self) -> int:
        return len(self.models)

    def score(self, X: np.ndarray, keys: Keys = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros(len(X))
        for k, rows in key_groups(keys, len(X)):
            m = self.models.get(k)
            if m is not None:  # a key not learned yet scores 0: nothing to compare it with
                out[rows] = m.score(X[rows])
        return out

    def score_one(self, x: Record, key: str | None = None) -> float:
        """``score`` of one record: its key's detector's one-record path."""
        m = self.models.get(key)
        return 0.0 if m is None else m.score_one(self._row(x), key)

    def learn(self, X: np.ndarray, keys: Keys = None) -> LearnReport:
        X = np.asarray(X, dtype=np.float64)
        n_learned, evicted = 0, self.evictions
        flagged, judged = 0.0, 0  # the keys' LOE labels, pooled (records judged, records flagged)
        groups = key_groups(keys, len(X))
        for k, m, rows in self.table.take(groups, self._make):
            Xk = self.table.batch(k, X[rows], hold=k in self.grown_keys and len(groups) > 1)
            if Xk is None:
                continue
            report = m.learn(Xk)
            n_learned += report.n_learned
            if report.loe_flag_rate is not None:
                flagged += report.loe_flag_rate * len(Xk)
                judged += len(Xk)
            if not report.warmup:
                self.grown_keys.add(k)
            self.grown = self.grown or not report.warmup
        # Young until some key's detector has grown up (the lane's drift tests and
        # metrics read it); each key's threshold asks ``key_young``.
        flag_rate = flagged / judged if judged else None
        return LearnReport(n_learned=n_learned, loe_flag_rate=flag_rate, warmup=not self.grown, extra={"keys": float(len(self.models)), "evicted": float(self.evictions - evicted)})

    def key_young(self, key: Any) -> bool:
        return key not in self.grown_keys

    def learns_alarmed_rows(self, keys: Keys, n: int) -> np.ndarray | bool:
        # Each key's detector decides for its key's records as it would alone (``gaussian``
        # with ``early`` learns every record of its warm-up: its young estimate's rough
        # scores decide alarms, not what it learns). A key not seen yet gets a new one's.
        if keys is None:  # one key: its detector's one answer
            return self.models.get(None, self._template).learns_alarmed_rows(None, n)
        out = np.zeros(n, dtype=bool)
        for k, rows in key_groups(keys, n):
            out[rows] = self.models.get(k, self._template).learns_alarmed
        return out

    def contributions(self, X: np.ndarray, keys: Keys = None) -> np.ndarray | None:
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros(X.shape)  # a key not learned yet: nothing stands out
        for k, rows in key_groups(keys, len(X)):
            m = self.models.get(k)
            c = None if m is None else m.contributions(X[rows])
            if m is not None and c is None:
                return None  # the inner detector cannot tell: the pipeline falls back to scaled deviations
            if c is not None:
                out[rows] = c
        return out

    def on_drift(self, kind: str) -> None:
        # Nothing to reopen: the lane's drift tests watch the keys' records pooled, which
        # move when a device joins or leaves as much as when one drifts. Each key's
        # detector forgets on its own (``gaussian``: its half-life).
        return None

    def on_lasting_state(self, keys: Sequence[Any]) -> None:
        # Each key's own state: the other devices go on as they were.
        for k in keys:
            m = self.models.get(k)
            if m is not None:
                m.on_lasting_state([None])

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {"detector": self.detector, "inner": None if self.inner is None else dict(self.inner), "max_keys": self.max_keys},
            "keys": list(self.models),
            "models": [m.state_dict() for m in self.models.values()],
            "evictions": self.evictions,
            "grown": self.grown,
            "grown_keys": [k in self.grown_keys for k in self.models],
            "pending": [self.pending.get(k) for k in self.models],
            "one": self._one_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_params(state["params"])
        self.table = KeyTable(self.max_keys, self.BATCH, forget=self._forget)
        self.grown_keys = set()
        n = len(state["keys"])
        # Checkpoints before ``BATCH`` hold neither: every key learns its next window at once.
        grown = state.get("grown_keys") or [False] * n
        pending = state.get("pending") or [None] * n
        for k, s, g, p in zip(state["keys"], state["models"], grown, pending):
            m = self._make()
            m.load_state_dict(s)
            key = tuple(k) if isinstance(k, list) else k
            self.models[key] = m
            if g:
                self.grown_keys.add(key)
            if p is not None:
                self.pending[key] = np.asarray(p, dtype=np.float64)
        self.table.evictions = int(state.get("evictions", 0))
        self.grown = bool(state.get("grown", False))
        self._load_one_state(state.get("one"))


__all__: Sequence[str] = ("PerKey",)
