"""Records one at a time, learned in mini-batches: what ``learn_one`` / ``score_one`` of a
detector and of a ``Model`` share.

A record is a mapping (feature name to value: the names of the first one fix the order),
a sequence or an array. ``MiniBatches`` turns records into rows and collects them; a
batch is due when it holds ``first`` records, then twice as many each time, up to the
owner's batch size, so a young model learns early and an old one at full speed.

>>> mb = MiniBatches(first=2)
>>> mb.add({"a": 1.0, "b": 2.0}, limit=8) is None
True
>>> mb.add({"b": 4.0, "a": 3.0}, limit=8).tolist()  # due: the first batch holds 2
[[1.0, 2.0], [3.0, 4.0]]
>>> mb.names, mb.next
(('a', 'b'), 4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, float] | Sequence[float] | np.ndarray


class MiniBatches:
    """The records waiting to be learned, and the feature names records are read by."""

    def __init__(self, first: int = 8) -> None:
        self.first = first
        self.rows: list[np.ndarray] = []
        self.next: int | None = None  # records the next batch holds (None: the first is not due yet)
        self.names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, x: Record) -> np.ndarray:
        """One record as a 1 × d array."""
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

    def add(self, x: Record, limit: int) -> np.ndarray | None:
        """Keep one record; the batch to learn now when one is due (``limit``: the
        largest batch), else None."""
        self.rows.append(self.row(x)[0])
        if self.next is None:
            self.next = min(self.first, limit)
        return self.take(limit) if len(self.rows) >= self.next else None

    def take(self, limit: int) -> np.ndarray | None:
        """Every record kept, as one batch (None when there are none); the next batch is
        due at twice this one's size, up to ``limit``."""
        if not self.rows:
            return None
        X = np.stack(self.rows)
        self.rows = []
        self.next = min(2 * max(self.next or 1, len(X)), limit)
        return X

    def before(self, X: np.ndarray) -> np.ndarray:
        """``X`` with the kept records in front of it (they are no longer kept)."""
        if not self.rows:
            return X
        kept = np.stack(self.rows)
        self.rows = []
        return np.concatenate([kept, X]) if len(X) else kept

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": np.stack(self.rows) if self.rows else None,
            "next": self.next,
            "features": None if self.names is None else list(self.names),
        }

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        state = state or {}  # states written before records were buffered: nothing kept
        rows = state.get("rows")
        self.rows = [] if rows is None else list(np.asarray(rows, dtype=np.float64))
        nxt = state.get("next")
        self.next = None if nxt is None else int(nxt)
        features = state.get("features")
        self.names = None if features is None else tuple(features)
