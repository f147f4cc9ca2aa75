"""Per-key temporal context: each record's values, plus what its key's recent history
says about them.

A lane (a file, a Kafka partition) carries many keys (devices). For each key the stage
keeps a small, fixed-size summary of the records before: the last few values, short and
long exponentially weighted means, the typical size of a step, how long each value has
gone unchanged and when the key was last heard from. A record becomes its values plus
derived columns, per source feature ``pressure``:

- ``pressure.jump``: the value minus the median of the key's previous values (a spike,
  the start of a shift; a single spike does not make the next record jump back);
- ``pressure.drift``: the recent level (the median of the last few values, which one
  spike does not move) minus the long mean (a level that moved and stays);
- ``pressure.vol``: log ratio of the recent step size (a short mean of the steps
  ``|x_t - x_{t-1}|``, each clipped at three times the usual step as the key's state
  knew it before the window, so one spike and its way back do not move it much) to the usual one (a long mean): noisier than
  usual above 0, a sensor going flat below 0, even one whose values are never exactly
  repeated;
- ``pressure.run``: log(records since the value last changed), from the second repeat
  (one repeated reading is common in rounded data), 0 until the value has changed at
  least once (a sensor that is constant from the start is not stuck);
- ``pressure.diff``: the step from the previous value (off by default: a spike's way
  back down is a step as large as the spike);

and per key, with event times: ``time.gap`` (the time since the key's previous record
over the median of its previous few such times, in log units rounded to 0.01: exactly
0 for regular sampling, 0 when unknown) and ``time.calendar`` (time of day and weekday
on the unit circle; off by default: a stream shorter than a few days sees each time of
day only once).

Score before learning holds here too: ``transform`` computes a window's context from the
committed state and from the records of the window before each record (never from the
record after it), and changes nothing; ``commit`` makes the window's keys' new state the
state, once the model learned the window. A checkpoint saves the committed state with
the offset learned through, so a restart never applies a record twice.

Keys are bounded (``max_keys`` per lane; the least recently seen are evicted), and so is
what a key keeps: ``(history + 6) * d + history + 2`` numbers for ``d`` features.

The derived columns have their own online scaler (``scale`` / ``learn_scale``): a
running mean and deviation with a floor for the columns in natural units (run length,
step ratio, gap), so that a column that has never moved (the run length of a sensor
whose values always change) still counts when it first does: a sensor that freezes for
the first time is seen while it is frozen, not only after the model learned it.

The computation is one compiled pass over a window's rows, each updating its key's
state (streamad/temporal_kernel.py).

>>> import numpy as np
>>> tf = TemporalFeatures(groups=("jump", "run"))
>>> X = np.array([[1.0], [2.0], [2.0], [2.0], [9.0]])
>>> ctx = tf.transform(X, names=("flow",))
>>> tf.names
('flow', 'flow.jump', 'flow.run')
>>> ctx.features[:, 1].tolist()  # 9 is 7 above the median of the five values before it
[0.0, 1.0, 1.0, 1.0, 7.0]
>>> ctx.run[:, 0].tolist()  # records since the value last changed
[0, 0, 1, 2, 0]
>>> tf.n_keys, tf.commit(ctx), tf.n_keys
(0, None, 1)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamad.scaling import StandardScaler

#: every group the stage can compute, in column order
GROUPS = ("jump", "diff", "drift", "vol", "run", "gap", "calendar")
#: the groups a stage computes unless told otherwise (benchmarks/results/sensor_streams.md)
DEFAULT_GROUPS = ("jump", "drift", "vol", "run", "gap")
#: groups with one column per source feature; the others are per key, from event times
PER_FEATURE = ("jump", "diff", "drift", "vol", "run")
TIME_SOURCE = "time"

# Scale floors of the derived columns, in their own units: a column in the source's
# units has none (its spread is the source's), a column in natural units keeps at
# least this spread, so one that never moved before still scores when it moves.
FLOORS = {"jump": 0.0, "diff": 0.0, "drift": 0.0, "vol": 0.25, "run": 1.0, "gap": 1.0, "calendar": 0.25}
# What a source feature's columns say in words (``behaviour`` in a detection).
BEHAVIOURS = {"level": "level", "jump": "jump", "diff": "jump", "drift": "drift", "run": "stuck", "gap": "gap", "calendar": "time of day"}

#: the derived columns the compiled pass computes (streamad/temporal_kernel.py), in the
#: order of its ``offsets`` argument; calendar columns need no state
KERNEL_GROUPS = ("jump", "diff", "drift", "vol", "run", "gap")
RUN_CAP = 1 << 40  # run lengths count up to here
_NO_TIMES = np.zeros(0)  # the kernel's event times on a stream without them (never read)
_SEG = 1 << 43  # offsets that keep a running maximum within its key's rows
_NEG = -(1 << 41)
VOL_FLOOR = 0.01  # a flat sensor's step ratio bottoms out near log(0.01)
# What a record the model alarmed on counts in its key's long means: little, so a long
# anomaly does not become the level the next records are measured from, but not
# nothing, so a lasting change of level is still learned (ten times slower).
FLAGGED_WEIGHT = 0.1
STEP_CLIP = 3.0  # steps count at most this many usual steps in the short step mean
# The gap ratio's regularisers: a gap of 0 (records in the same second) bottoms out near
# log(0.1); a key whose usual gap is 0 does not divide by it.
GAP_EPS = 0.1
STUCK_Z = 2.0  # a run length this far above the usual (scaled) reads "stuck" in an attribution
GAP_EPS_SECONDS = 1e-3


@functools.cache
def _kernel() -> Any:
    # numba, and the compiled passes, load with the first window (an import statement
    # per call cost a tenth of a one-record context).
    from streamad import temporal_kernel

    return temporal_kernel


@dataclass(frozen=True)
class Column:
    """One column the detector sees: a source feature itself (``kind == "level"``) or
    something derived from its history."""

    name: str  # "pressure", "pressure.jump", "time.gap"
    source: str  # the feature (or "time") an operator knows
    kind: str  # level, jump, diff, drift, vol, run, gap, calendar
    feature: int  # index of the source feature; -1 for time columns


@dataclass
class KeyStates:
    """The summary each key keeps, one row per key."""

    count: np.ndarray  # (K,) records seen
    last: np.ndarray  # (K, d) the previous value
    hist: np.ndarray  # (K, h, d) the last h values, oldest first
    ml: np.ndarray  # (K, d) long mean
    vs: np.ndarray  # (K, d) short mean step size |x_t - x_{t-1}| (clipped)
    vl: np.ndarray  # (K, d) long mean step size
    run: np.ndarray  # (K, d) records since the value last changed
    ever: np.ndarray  # (K, d) the value has changed at least once
    t_last: np.ndarray  # (K,) event time of the previous record (NaN: none)
    ghist: np.ndarray  # (K, h, 1) the last h times between records, oldest first (NaN: unknown)

    FIELDS = ("count", "last", "hist", "ml", "vs", "vl", "run", "ever", "t_last", "ghist")

    @classmethod
    def empty(cls, k: int, d: int, h: int) -> KeyStates:
        z = lambda: np.zeros((k, d))  # noqa: E731
        return cls(
            np.zeros(k, dtype=np.int64), z(), np.zeros((k, h, d)), z(), z(), z(),
            np.zeros((k, d), dtype=np.int64), np.zeros((k, d), dtype=bool), np.full(k, np.nan), np.full((k, h, 1), np.nan),
        )  # fmt: skip

    def take(self, idx: np.ndarray) -> KeyStates:
        if len(idx) == 1:  # one key (a stream without keys): a slice's copy costs a third of indexing
            i = int(idx[0])
            return KeyStates(*(getattr(self, f)[i : i + 1].copy() for f in self.FIELDS))
        return KeyStates(*(getattr(self, f)[idx] for f in self.FIELDS))  # indexing by an array copies

    def copy(self) -> KeyStates:
        # Field by field: a generator over FIELDS cost a third of a one-record context.
        return KeyStates(
            self.count.copy(), self.last.copy(), self.hist.copy(), self.ml.copy(), self.vs.copy(),
            self.vl.copy(), self.run.copy(), self.ever.copy(), self.t_last.copy(), self.ghist.copy(),
        )  # fmt: skip

    def put(self, idx: np.ndarray, other: KeyStates) -> None:
        at: Any = slice(int(idx[0]), int(idx[0]) + 1) if len(idx) == 1 else idx
        for f in self.FIELDS:
            getattr(self, f)[at] = getattr(other, f)

    def grow(self, k: int) -> KeyStates:
        """The same states in arrays of ``k`` rows (the new rows empty)."""
        out = KeyStates.empty(k, self.last.shape[1], self.hist.shape[1])
        n = min(k, len(self.count))
        out.put(np.arange(n), self.take(np.arange(n)))
        return out

    def as_dict(self, n: int) -> dict[str, np.ndarray]:
        return {f: getattr(self, f)[:n].copy() for f in self.FIELDS}


@dataclass
class Context:
    """What ``transform`` made of a window: the columns, the raw quantities behind the
    words of an attribution, and the keys' states after the window (``commit``)."""

    features: np.ndarray  # n × D: the record's values, then the derived columns
    run: np.ndarray  # n × d: records since each value last changed
    gap: np.ndarray | None  # n: seconds since the key's previous record (None: no event times)
    keys: list[Any]  # the window's keys, in order of first appearance
    after: KeyStates  # their states after the window
    last_row: np.ndarray  # per key: its last row in the window (recency among them)
    revision: int  # the committed state it was computed from
    means: tuple[np.ndarray, ...]  # the keys' last, ml, vs, vl before the window (what ``reweigh`` runs again from)
    groups: np.ndarray  # each row's index into ``keys``


@dataclass
class TemporalStats:
    """What a window did to the key table (for metrics)."""

    keys: int
    evictions: int


class TemporalFeatures:
    """Per-key history of one lane, turned into temporal context for each record.

    Parameters
    ----------
    groups : sequence of str, optional
        Which derived columns (``GROUPS``; default ``DEFAULT_GROUPS``). ``gap`` and
        ``calendar`` need event times: without them (the first window has none) they
        are left out.
    max_keys : int, default 10,000
        Keys kept per lane; beyond that the least recently seen key is forgotten (and
        starts afresh when it comes back).
    short_span, long_span : int, default 8 and 256
        Records over which the short and long means average (``alpha = 2 / (span + 1)``).
    history : int, default 5
        Previous values whose median a ``jump`` is measured from.
    """

    def __init__(
        self,
        groups: Sequence[str] | None = None,
        max_keys: int = 10_000,
        short_span: int = 8,
        long_span: int = 256,
        history: int = 5,
    ) -> None:
        groups = tuple(DEFAULT_GROUPS if groups is None else groups)
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise ValueError(f"unknown temporal feature group(s) {unknown}; choose from {', '.join(GROUPS)}")
        if max_keys < 1 or short_span < 1 or long_span < 1 or history < 1:
            raise ValueError("max_keys, short_span, long_span and history must be at least 1")
        self.groups = tuple(g for g in GROUPS if g in groups)
        self.max_keys = int(max_keys)
        self.short_span = int(short_span)
        self.long_span = int(long_span)
        self.history = int(history)
        self.columns: tuple[Column, ...] | None = None
        self._names: tuple[str, ...] = ()  # the columns' names, asked for every window
        self.timed = False
        self.sources: tuple[str, ...] = ()
        self._slots: dict[Any, int] = {}
        self._seen = np.zeros(0, dtype=np.int64)  # per slot: the commit that last saw it
        self._states: KeyStates | None = None
        self._tick = 0
        self.revision = 0
        self.evictions = 0
        self.scaler: StandardScaler | None = None
        self._offsets = np.full(len(KERNEL_GROUPS), -1, dtype=np.int64)
        self._layout_cache: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self._alphas = (2.0 / (self.short_span + 1.0), 2.0 / (self.long_span + 1.0))  # short, long

    # -- layout -----------------------------------------------------------------------------

    def bind(self, names: Sequence[str], timed: bool) -> None:
        """Fix the columns for these source features (``timed``: records carry event times)."""
        self.sources = tuple(names)
        self.timed = bool(timed)
        cols = [Column(n, n, "level", j) for j, n in enumerate(self.sources)]
        for g in self.groups:
            if g in PER_FEATURE:
                cols += [Column(f"{n}.{g}", n, g, j) for j, n in enumerate(self.sources)]
        if self.timed and "gap" in self.groups:
            cols.append(Column(f"{TIME_SOURCE}.gap", TIME_SOURCE, "gap", -1))
        if self.timed and "calendar" in self.groups:
            cols += [Column(f"{TIME_SOURCE}.{c}", TIME_SOURCE, "calendar", -1) for c in ("day_sin", "day_cos", "week_sin", "week_cos")]
        self.columns = tuple(cols)
        self._names = tuple(c.name for c in cols)
        self._layout_cache = None
        d = len(self.sources)
        first = {c.kind: i for i, c in reversed(list(enumerate(cols)))}
        self._offsets = np.array([first.get(g, -1) for g in KERNEL_GROUPS], dtype=np.int64)
        # The derived columns' own scale; a floor per kind of column keeps one that
        # barely moved so far from calling its first small move extreme.
        # Every derived column keeps its scale however rarely it moves: a run length is
        # 0 nearly always, and its departure is the stuck sensor.
        self.scaler = StandardScaler(floors=np.array([FLOORS[c.kind] for c in cols[d:]]), constant_share=None)
        self._states = KeyStates.empty(0, d, self.history)

    @property
    def names(self) -> tuple[str, ...]:
        """The columns the detector sees: the source features, then the derived ones."""
        return () if self.columns is None else self._names

    @property
    def n_keys(self) -> int:
        return len(self._slots)

    # -- the window ---------------------------------------------------------------------------

    def transform(
        self,
        X: np.ndarray,
        keys: np.ndarray | Sequence[Any] | None = None,
        timestamps: np.ndarray | None = None,
        names: Sequence[str] | None = None,
        flagged: np.ndarray | None = None,
        after: Context | None = None,
    ) -> Context:
        """The context of each record of ``X`` (n × d, in order) from the committed
        state and the records before it; changes nothing. ``flagged`` (bool, n) marks
        records the model alarmed on: they count ``FLAGGED_WEIGHT`` in the keys' long
        means (what ``Model.learn`` commits), so a long anomaly does not become the
        long-run level that the records after it are measured from.

        ``after``: the context of records just before ``X`` that are not committed
        (both without keys): ``X`` continues that window, its context the same as that
        of the last records of one window holding both (``Model.score_one`` with the
        records ``learn_one`` holds, one record at a time instead of all of them again)."""
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        if self.columns is None:
            self.bind(names if names is not None else tuple(f"x{i}" for i in range(d)), timestamps is not None)
        if d != len(self.sources):
            raise ValueError(f"records have {d} features, the temporal stage was built for {len(self.sources)}")
        ts = None
        if self.timed:
            ts = np.full(n, np.nan) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
        means: tuple[np.ndarray, ...]
        if after is None:
            uniq, g, W, last_row = self._gather(X, keys)
            means = (W.last.copy(), W.ml.copy(), W.vs.copy(), W.vl.copy())
        else:
            if keys is not None or after.keys != [None] or after.revision != self.revision:
                raise ValueError("only a window without keys, of the committed state, can be continued")
            uniq, g, W, last_row = [None], np.zeros(n, dtype=np.int64), after.after.copy(), np.array([n - 1])
            means = after.means  # the window's start
        F = np.empty((n, len(self._names)))
        F[:, :d] = X
        run = np.zeros((n, d), dtype=np.int64)
        gap = np.zeros(n)
        w = np.ones(n) if flagged is None else np.where(np.asarray(flagged, dtype=bool), FLAGGED_WEIGHT, 1.0)
        _kernel().run_rows(
            X, g, ts if ts is not None else _NO_TIMES, ts is not None, w,
            *self._alphas, STEP_CLIP, VOL_FLOOR, GAP_EPS, GAP_EPS_SECONDS, RUN_CAP,
            self._offsets, F, run, gap,
            W.last, W.hist, W.ml, W.vs, W.vl, W.run, W.ever, W.t_last, W.ghist[:, :, 0], W.count, means[3],
        )  # fmt: skip
        if ts is not None and "calendar" in self.groups:
            day = np.nan_to_num(ts % 86400.0 / 86400.0 * 2 * np.pi)
            week = np.nan_to_num((ts / 86400.0 + 3.0) % 7.0 / 7.0 * 2 * np.pi)  # 0: a Monday
            cal = np.column_stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)])
            F[:, -4:] = np.where(np.isnan(ts)[:, None], 0.0, cal)
        return Context(F, run, None if ts is None else gap, uniq, W, last_row, self.revision, means, g)

    def _gather(self, X: np.ndarray, keys: np.ndarray | Sequence[Any] | None) -> tuple[list[Any], np.ndarray, KeyStates, np.ndarray]:
        """The window's keys in order of first appearance, each row's key index, the
        keys' committed states (a new key's from its first record) and each key's last
        row."""
        n, d = X.shape
        if keys is None:
            uniq: list[Any] = [None]
            g = np.zeros(n, dtype=np.int64)
        else:
            index: dict[Any, int] = {}
            g = np.fromiter((index.setdefault(k, len(index)) for k in (keys.tolist() if isinstance(keys, np.ndarray) else keys)), dtype=np.int64, count=n)
            uniq = list(index)
        G = len(uniq)
        assert self._states is not None
        slots = np.array([self._slots.get(k, -1) for k in uniq], dtype=np.int64)
        known = slots >= 0
        if known.all():
            W = self._states.take(slots)
        else:
            W = KeyStates.empty(G, d, self.history)
            if known.any():
                W.put(np.flatnonzero(known), self._states.take(slots[known]))
        last_row = np.zeros(G, dtype=np.int64)
        if keys is None and known.all():  # the one key, known: nothing to start
            last_row[0] = max(n - 1, 0)
            return uniq, g, W, last_row
        if n:
            # A key seen for the first time starts from its first value: no step, no jump.
            first = np.full(G, n, dtype=np.int64)
            if keys is None:
                first[0], last_row[0] = 0, n - 1
            else:
                np.minimum.at(first, g, np.arange(n))
                np.maximum.at(last_row, g, np.arange(n))
            fresh = np.flatnonzero(~known & (first < n))
            if len(fresh):
                x0 = X[first[fresh]]
                W.last[fresh] = x0
                W.hist[fresh] = x0[:, None, :]
                W.ml[fresh] = x0
                W.run[fresh] = -1  # its first record is the first of its run, not a repeat
        return uniq, g, W, last_row

    def reweigh(self, ctx: Context, X: np.ndarray, flagged: np.ndarray) -> Context:
        """``ctx`` (the context ``transform`` made of ``X``) with its keys' states as
        ``transform(..., flagged=flagged)`` leaves them (what ``Model.learn`` commits:
        flagged records count less in the long means), and its columns as judged."""
        if ctx.revision != self.revision:
            raise ValueError("this context was computed from an older state; transform the window again")
        X = np.asarray(X, dtype=np.float64)
        flagged = np.asarray(flagged, dtype=bool)
        if len(X) == 0 or not flagged.any():
            return ctx
        # Only the running means depend on the flags: run them again from the keys'
        # states before the window (which ``transform`` kept).
        if len(ctx.groups) != len(X):
            raise ValueError(f"this context was made of {len(ctx.groups)} records, not {len(X)}")
        last, ml, vs, vl = (a.copy() for a in ctx.means)
        w = np.where(flagged, FLAGGED_WEIGHT, 1.0)
        _kernel().running_means(X, ctx.groups, w, *self._alphas, STEP_CLIP, self._offsets[3] >= 0, last, ml, vs, vl)
        a = ctx.after  # built field by field: copy.copy (or dataclasses.replace), twice, cost more than the rest of this
        after = KeyStates(a.count, a.last, a.hist, ml, vs, vl, a.run, a.ever, a.t_last, a.ghist)
        return Context(ctx.features, ctx.run, ctx.gap, ctx.keys, after, ctx.last_row, ctx.revision, ctx.means, ctx.groups)

    # -- learning ----------------------------------------------------------------------------

    def scale(self, derived: np.ndarray, unit: bool = False) -> np.ndarray:
        """The derived columns scaled by the statistics from before (``unit``: mapped to
        [0, 1] for detectors that expect min-max scaled input)."""
        assert self.scaler is not None
        z = self.scaler.transform(np.asarray(derived, dtype=np.float64))
        return np.clip(0.5 + z / 10.0, 0.0, 1.0) if unit else z

    def learn_scale(self, derived: np.ndarray) -> None:
        assert self.scaler is not None
        self.scaler.learn(np.asarray(derived, dtype=np.float64))

    def commit(self, ctx: Context) -> None:
        """Make the window's keys' states the committed ones (the model learned it)."""
        if ctx.revision != self.revision:
            raise ValueError("this context was computed from an older state; transform the window again")
        assert self._states is not None
        self._tick += 1
        self.revision += 1
        keys, after = ctx.keys, ctx.after
        if not keys:
            return
        if len(keys) > self.max_keys:
            # More keys in one window than the table holds: the most recent ones stay.
            keep = np.sort(np.argsort(-ctx.last_row, kind="stable")[: self.max_keys])
            self.evictions += len(keys) - len(keep)
            keys, after = [keys[i] for i in keep], after.take(keep)
        slots = np.array([self._slots.get(k, -1) for k in keys], dtype=np.int64)
        if slots.min() < 0:
            new = np.flatnonzero(slots < 0)
            over = len(self._slots) + len(new) - self.max_keys
            if over > 0:
                self._evict(over, protect=slots[slots >= 0])
            free = self._free_slots(len(new))
            for i, s in zip(new.tolist(), free.tolist()):
                self._slots[keys[i]] = s
            slots[new] = free
        self._states.put(slots, after)
        self._seen[slots] = self._tick

    def _evict(self, n: int, protect: np.ndarray) -> None:
        """Forget the ``n`` least recently seen keys (not those of this window)."""
        items = [(k, s) for k, s in self._slots.items()]
        seen = self._seen[[s for _, s in items]].astype(np.float64)
        if len(protect):
            keep = np.isin([s for _, s in items], protect)
            seen[keep] = np.inf
        victims = np.argsort(seen, kind="stable")[:n]
        for v in victims.tolist():
            k, s = items[v]
            del self._slots[k]
            self._seen[s] = -1
        self.evictions += len(victims)

    def _free_slots(self, n: int) -> np.ndarray:
        assert self._states is not None
        used = np.zeros(len(self._seen), dtype=bool)
        if self._slots:
            used[list(self._slots.values())] = True
        free = np.flatnonzero(~used)
        if len(free) < n:
            cap = len(self._seen)
            grown = max(16, 2 * cap, cap + n - len(free))
            self._states = self._states.grow(grown)
            self._seen = np.concatenate([self._seen, np.full(grown - cap, -1, dtype=np.int64)])
            free = np.concatenate([free, np.arange(cap, grown)])
        return free[:n]

    def stats(self, evictions_before: int) -> TemporalStats:
        return TemporalStats(self.n_keys, self.evictions - evictions_before)

    # -- words ----------------------------------------------------------------------------------

    def stuck(self, ctx: Context, scaled: np.ndarray, keys: Sequence[Any]) -> list[Any]:
        """Of ``keys``, those whose last record in the window has a source unchanged for
        an unusually long run (its scaled run length, a row of ``scaled``, at least
        ``STUCK_Z``: what ``explain`` calls stuck); the key None stands for all the
        window's keys, any of them stuck."""
        _, _, run_col = self._layout()
        cols = run_col[run_col >= 0]
        if not len(cols) or not len(ctx.keys):
            return []
        frozen = (np.asarray(scaled)[ctx.last_row][:, cols] >= STUCK_Z).any(axis=1)
        at = {k: i for i, k in enumerate(ctx.keys)}
        return [k for k in keys if (frozen[at[k]] if k in at else k is None and bool(frozen.any()))]

    def explain(
        self,
        contrib: np.ndarray,
        ctx: Context,
        rows: np.ndarray,
        k: int,
        center: np.ndarray | None,
        spread: np.ndarray | None,
        scaled: np.ndarray | None = None,
    ) -> list[list[tuple[str, float, str, str]]]:
        """The ``k`` source features contributing most to each of ``rows``' scores:
        (feature, share, behaviour, description). ``contrib`` holds the rows'
        contributions per column (``scaled``: the rows as the detector saw them);
        ``center``/``spread`` the usual level of each source, the lane's. With more than
        one key in the table, a level is worded against its own key's long-run mean
        instead (the lane's pools devices that may run in different regimes).

        The behaviour is that of the source's column contributing most, except for a
        source unchanged for an unusually long run (its run length at least
        ``STUCK_Z`` deviations above the lane's usual): a frozen sensor breaks its
        jumps' and levels' relation to the others too, and "stuck" is what happened."""
        assert self.columns is not None
        sources, members, run_col = self._layout()
        contrib = np.maximum(np.asarray(contrib, dtype=np.float64), 0.0)
        if not np.isfinite(contrib).all():  # nan_to_num's wrapper costs more than the rest of a row's arithmetic
            contrib = np.nan_to_num(contrib, nan=0.0, posinf=1e300)
        n = len(contrib)
        # Each source's columns (padded with a column that never wins): its total and its
        # strongest column, for every row at once.
        padded = np.concatenate([contrib, np.full((n, 1), -1.0)], axis=1)[:, members]  # n × sources × columns
        per_source = np.maximum(padded, 0.0).sum(axis=2)
        best = members[np.arange(len(sources))[None, :], padded.argmax(axis=2)]  # n × sources
        if scaled is not None:
            has_run = run_col >= 0
            stuck = np.zeros_like(best, dtype=bool)
            stuck[:, has_run] = np.asarray(scaled)[:, run_col[has_run]] >= STUCK_Z
            best = np.where(stuck, run_col[None, :], best)
        total = per_source.sum(axis=1, keepdims=True)
        share = np.divide(per_source, total, out=np.zeros_like(per_source), where=total > 0)
        order = np.argsort(-share, axis=1, kind="stable")[:, : min(k, len(sources))]
        keyed = self.n_keys > 1
        out = []
        for i, row in enumerate(np.asarray(rows).tolist()):
            if keyed:  # the key's long mean before the window; no spread is kept per key
                center, spread = ctx.means[1][ctx.groups[row]], None
            entries = []
            for s in order[i].tolist():
                if share[i, s] <= 0:
                    continue
                behaviour, text = self._words(int(best[i, s]), ctx, row, center, spread)
                entries.append((sources[s], float(share[i, s]), behaviour, text))
            out.append(entries)
        return out

    def _layout(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The source features, each one's columns (a sources × columns index matrix,
        padded with the index one past the last column) and its run-length column (-1:
        none)."""
        if self._layout_cache is None:
            assert self.columns is not None
            cols = self.columns
            sources = list(dict.fromkeys(c.source for c in cols))
            of = [[i for i, c in enumerate(cols) if c.source == src] for src in sources]
            width = max(len(m) for m in of)
            members = np.array([m + [len(cols)] * (width - len(m)) for m in of], dtype=np.int64)
            run_col = np.full(len(sources), -1, dtype=np.int64)
            for i, c in enumerate(cols):
                if c.kind == "run":
                    run_col[sources.index(c.source)] = i
            self._layout_cache = (sources, members, run_col)
        return self._layout_cache

    def _words(self, c: int, ctx: Context, row: int, center: np.ndarray | None, spread: np.ndarray | None) -> tuple[str, str]:
        """The behaviour column ``c`` stands for, and a sentence with the record's numbers."""
        assert self.columns is not None
        col = self.columns[c]
        F = ctx.features
        name = col.source
        j = col.feature
        value = float(F[row, j]) if j >= 0 else math.nan
        derived = float(F[row, c])
        run = int(ctx.run[row, j]) if j >= 0 else 0
        kind = col.kind
        if kind == "level":
            if center is not None and math.isfinite(center[j]):
                if spread is not None and spread[j] > 0:
                    return "level", f"{name}: {value:.4g}, usually {center[j]:.4g} ± {spread[j]:.2g}"
                if spread is None:
                    return "level", f"{name}: {value:.4g}, usually about {center[j]:.4g}"
            return "level", f"{name}: {value:.4g}, off its usual level"
        if kind in ("jump", "diff"):
            return "jump", f"{name}: {value:.4g}, a jump of {derived:+.4g}"
        if kind == "drift":
            return "drift", f"{name}: {value:.4g}, drifted {derived:+.4g} from its long-run mean"
        if kind == "run" or (kind == "vol" and derived < 0 and run >= 2):
            return "stuck", f"{name}: stuck at {value:.4g} for {run} record{'s' if run != 1 else ''}"
        if kind == "vol":
            ratio = math.exp(float(derived))
            if ratio < 1:
                return "flat", f"{name}: {value:.4g}, moving {1 / max(ratio, 1e-9):.3g}x less than usual"
            return "noisy", f"{name}: {value:.4g}, moving {ratio:.3g}x more than usual"
        if kind == "gap":
            gap = 0.0 if ctx.gap is None else float(ctx.gap[row])
            return "gap", f"{name}: {gap:.4g} s since the key's previous record"
        return BEHAVIOURS.get(kind, kind), f"{name}: unusual {BEHAVIOURS.get(kind, kind)}"

    # -- checkpoints ------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "groups": list(self.groups),
            "max_keys": self.max_keys,
            "short_span": self.short_span,
            "long_span": self.long_span,
            "history": self.history,
        }

    def state_dict(self) -> dict[str, Any]:
        if self.columns is None or self._states is None or self.scaler is None:
            return {"config": self.config(), "bound": None}
        items = sorted(self._slots.items(), key=lambda kv: kv[1])
        slots = np.array([s for _, s in items], dtype=np.int64)
        st = self._states.take(slots)
        return {
            "config": self.config(),
            "bound": {"sources": list(self.sources), "timed": self.timed},
            "keys": [k for k, _ in items],
            "seen": self._seen[slots].copy(),
            "states": {f: getattr(st, f) for f in KeyStates.FIELDS},
            "tick": self._tick,
            "evictions": self.evictions,
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        cfg = dict(state.get("config") or {})
        if cfg and cfg != self.config():
            raise ValueError(f"checkpoint's temporal features were made with {cfg}, configured are {self.config()}")
        bound = state.get("bound")
        if bound is None:
            self.columns = None
            self._slots, self._states, self._seen = {}, None, np.zeros(0, dtype=np.int64)
            return
        self.bind(bound["sources"], bool(bound["timed"]))
        keys = [_key(k) for k in state["keys"]]
        n = len(keys)
        states = KeyStates(**{f: np.asarray(state["states"][f]) for f in KeyStates.FIELDS})
        self._states = KeyStates.empty(max(16, n), len(self.sources), self.history)
        self._states.put(np.arange(n), states)
        self._seen = np.full(len(self._states.count), -1, dtype=np.int64)
        self._seen[:n] = np.asarray(state["seen"], dtype=np.int64)
        self._slots = {k: i for i, k in enumerate(keys)}
        self._tick = int(state["tick"])
        self.evictions = int(state["evictions"])
        assert self.scaler is not None
        self.scaler.load_state_dict(state["scaler"])
        self.revision += 1  # contexts computed before the load are stale


def compile_kernels() -> None:
    """Compile the stage's inner loops now (or load them from numba's cache): what the
    first window with temporal context would otherwise do. A container image runs this
    at build time, into the ``NUMBA_CACHE_DIR`` its user reads."""
    tf = TemporalFeatures()
    X, keys, ts = np.zeros((2, 1)), np.array(["a", "b"], dtype=object), np.zeros(2)
    ctx = tf.transform(X, keys, ts, ("x",))
    tf.reweigh(ctx, X, np.array([True, False]))
    from streamad.temporal_kernel import scale_columns

    scale_columns(ctx.features, np.zeros(1), np.ones(1), np.zeros(ctx.features.shape[1] - 1), np.ones(ctx.features.shape[1] - 1), 10.0)


def _key(k: Any) -> Any:
    # A checkpoint stores keys as JSON values; lists come back for tuples.
    return tuple(k) if isinstance(k, list) else k
