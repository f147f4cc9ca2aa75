"""Sources whose records are already in memory: arrays, and DataFrames through them.

>>> import numpy as np
>>> src = ArraySource(np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 4.0]]), chunk_rows=2)
>>> [(b.offsets.tolist(), [r.offset for r in b.rejects]) for b in src]
[([1], [2]), ([3], [])]
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from streamad.records import Batch, Lane
from streamad.schema import split_nonfinite


class ArraySource:
    """In-memory arrays as a source of one lane, in batches; offsets are row numbers
    (from 1, like file lines). Rows with NaN or inf are rejected."""

    progress_unit = "records"
    live = False  # all records are at hand: windows close by count, never by the clock

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        stream: str = "array",
        timestamps: np.ndarray | None = None,
        keys: np.ndarray | None = None,
        chunk_rows: int = 8192,
        feature_names: tuple[str, ...] | None = None,
    ) -> None:
        self.X = np.asarray(X, dtype=np.float64)
        self.y = y
        self.timestamps = timestamps
        self.keys = keys
        self.lane = Lane(stream)
        self.chunk_rows = chunk_rows
        self.feature_names = feature_names or tuple(f"x{i}" for i in range(self.X.shape[1]))
        self.done = 0

    @property
    def progress(self) -> tuple[int, int]:
        return self.done, len(self.X)

    @property
    def records_in_file(self) -> int | None:
        """Rows in the array, once every one was handed out (a replay's reconciliation)."""
        return len(self.X) if self.done == len(self.X) else None

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.X)
        for start in range(0, n, self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            batch = Batch(
                lane=self.lane,
                X=self.X[start:stop],
                offsets=np.arange(start + 1, stop + 1),
                keys=None if self.keys is None else self.keys[start:stop],
                timestamps=None if self.timestamps is None else self.timestamps[start:stop],
                labels=None if self.y is None else self.y[start:stop],
                arrival=time.monotonic(),
            )
            self.done = stop
            yield split_nonfinite(batch, self.feature_names)

    def commit(self, offsets: object) -> None:
        return None
