"""Records one at a time, learned in mini-batches: what ``learn_one`` / ``score_one`` of a
detector and of a ``Model`` share.

A record is a mapping (feature name to value: the names of the first one fix the order),
a sequence or an array. ``MiniBatches`` turns records into rows and collects them; a
batch is due when it holds ``first`` records, then twice as many each time, up to the
owner's batch size, so a young model learns early and an old one at full speed.

Each record may carry a key (the device or tenant it came from: a string, or None
for a record without one). The buffer keeps the keys of the records it holds, in its
state too; the ``*_keyed`` methods hand them out with their batch, aligned with its
rows, as a list, or None when no record of the batch has a key (so a stream without
keys stays exactly the keyless path).

>>> mb = MiniBatches(first=2)
>>> mb.add({"a": 1.0, "b": 2.0}, limit=8) is None
True
>>> mb.add({"b": 4.0, "a": 3.0}, limit=8).tolist()  # due: the first batch holds 2
[[1.0, 2.0], [3.0, 4.0]]
>>> mb.names, mb.next
(('a', 'b'), 4)
>>> mb.add_keyed([5.0, 6.0], limit=8, key="pump-1") is None
True
>>> mb.take_keyed(limit=8)
(array([[5., 6.]]), ['pump-1'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, float] | Sequence[float] | np.ndarray
#: One key per record of a batch (None: a record without a key), or None: no keys at all.
Keys = Sequence[str | None] | np.ndarray | None


def listed_keys(keys: np.ndarray | Sequence[Any]) -> list[Any]:
    """A window's keys as a list of Python objects (an array's ``tolist``)."""
    return keys.tolist() if isinstance(keys, np.ndarray) else list(keys)


def key_groups(keys: Keys, n: int) -> list[tuple[Any, np.ndarray | slice]]:
    """Each key of a window with its rows, in order of first appearance (a stream
    without keys: all of them, as a slice, so that no row is copied)."""
    if keys is None:
        return [(None, slice(None))] if n else []
    index: dict[Any, list[int]] = {}
    for i, k in enumerate(listed_keys(keys)):
        index.setdefault(k, []).append(i)
    return [(k, np.asarray(rows, dtype=np.int64)) for k, rows in index.items()]


class MiniBatches:
    """The records waiting to be learned, and the feature names records are read by."""

    def __init__(self, first: int = 8) -> None:
        self.first = first
        self.rows: list[np.ndarray] = []
        self.keys: list[str | None] = []  # the key of each kept record
        self.next: int | None = None  # records the next batch holds (None: the first is not due yet)
        self.names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, x: Record) -> np.ndarray:
        """One record as a 1 × d array."""
        if type(x) is np.ndarray and x.dtype == np.float64:
            return x.reshape(1, -1)  # a row one at a time: four a record, no ABC check
        if isinstance(x, Mapping):
            if self.names is None:
                self.names = tuple(x)
            try:
                return np.array([[float(x[k]) for k in self.names]])
            except KeyError as e:
                raise KeyError(f"feature {e.args[0]!r} missing; the model was first given {list(self.names)}") from None
        return np.asarray(x, dtype=np.float64).reshape(1, -1)

    def matrix(self, X: Any) -> np.ndarray:
        """A batch as an n × d array: an array, a DataFrame (its columns by name, the
        first one's order fixing the names) or a sequence of records."""
        if hasattr(X, "columns") and hasattr(X, "to_numpy"):
            if self.names is None:
                self.names = tuple(str(c) for c in X.columns)
            return np.asarray(X[list(self.names)].to_numpy(dtype=np.float64))
        if isinstance(X, np.ndarray):
            return np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        rows = [self.row(x) for x in X]
        return np.concatenate(rows) if rows else np.empty((0, 0))

    def add(self, x: Record, limit: int, key: str | None = None) -> np.ndarray | None:
        """Keep one record; the batch to learn now when one is due (``limit``: the
        largest batch), else None."""
        batch = self.add_keyed(x, limit, key)
        return None if batch is None else batch[0]

    def add_keyed(self, x: Record, limit: int, key: str | None = None) -> tuple[np.ndarray, list[str | None] | None] | None:
        """``add``, the batch handed out with its keys (see the module docstring)."""
        # A copy: a caller may fill the same array with each record it reads.
        self.rows.append(self.row(x)[0].copy())
        self.keys.append(key)
        if self.next is None:
            self.next = min(self.first, limit)
        return self.take_keyed(limit) if len(self.rows) >= self.next else None

    def take(self, limit: int) -> np.ndarray | None:
        """Every record kept, as one batch (None when there are none); the next batch is
        due at twice this one's size, up to ``limit``."""
        batch = self.take_keyed(limit)
        return None if batch is None else batch[0]

    def take_keyed(self, limit: int) -> tuple[np.ndarray, list[str | None] | None] | None:
        """``take``, the batch handed out with its keys."""
        if not self.rows:
            return None
        X = np.stack(self.rows)
        keys = _or_none(self.keys)
        self.rows, self.keys = [], []
        self.next = min(2 * max(self.next or 1, len(X)), limit)
        return X, keys

    def before(self, X: np.ndarray) -> np.ndarray:
        """``X`` with the kept records in front of it (they are no longer kept)."""
        return self.before_keyed(X)[0]

    def before_keyed(self, X: np.ndarray, keys: Keys = None) -> tuple[np.ndarray, list[str | None] | None]:
        """``before``, with the keys of the kept records in front of ``keys`` (those of
        ``X``; None: its records have none)."""
        mine = None if keys is None else [None if k is None else str(k) for k in keys]
        if mine is not None and len(mine) != len(X):
            raise ValueError(f"{len(mine)} keys for {len(X)} records")
        if not self.rows:
            return X, None if mine is None else _or_none(mine)
        kept = np.stack(self.rows)
        kept_keys = self.keys
        self.rows, self.keys = [], []
        both = kept_keys + (mine if mine is not None else [None] * len(X))
        return (np.concatenate([kept, X]) if len(X) else kept), _or_none(both)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": np.stack(self.rows) if self.rows else None,
            "keys": _or_none(self.keys),
            "next": self.next,
            "features": None if self.names is None else list(self.names),
        }

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        state = state or {}  # states written before records were buffered: nothing kept
        rows = state.get("rows")
        self.rows = [] if rows is None else list(np.asarray(rows, dtype=np.float64))
        keys = state.get("keys")  # states written before keys were kept: none had one
        self.keys = [None] * len(self.rows) if keys is None else [None if k is None else str(k) for k in keys]
        if len(self.keys) != len(self.rows):
            raise ValueError(f"mini-batch state holds {len(self.rows)} records and {len(self.keys)} keys")
        nxt = state.get("next")
        self.next = None if nxt is None else int(nxt)
        features = state.get("features")
        self.names = None if features is None else tuple(features)


def _or_none(keys: list[str | None]) -> list[str | None] | None:
    """The keys as a new list, or None when none of them is a key."""
    return None if all(k is None for k in keys) else list(keys)
