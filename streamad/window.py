"""Cut a lane's record stream into windows, by count and by a maximum wait.

On a lane of several keys (devices) the count is per key: a window closes when one key
has ``size`` records in it, or when it holds ``max_records`` in all. A device is then
judged in windows of up to ``size`` of its own records whether it streams alone or
beside a hundred others, and a lane of many devices is not cut into windows of a record
or two each, whose per-key bookkeeping was most of the time (SKAB's 35 runs on one
stream: about 2.5 times the records per second, F1 0.55 against 0.50;
benchmarks/results/ANALYSIS.md, eleventh round).

>>> import numpy as np
>>> from streamad.records import Batch, Lane
>>> buf = WindowBuffer(size=4, max_wait_seconds=1.0, clock=lambda: 0.0)
>>> b = Batch(Lane("s"), np.zeros((10, 2)), np.arange(10))
>>> [len(w) for w in buf.add(b)], len(buf)
([4, 4], 2)
>>> buf.due(now=0.5), buf.due(now=1.0)
(False, True)
>>> [w.offsets.tolist() for w in [buf.flush()]]
[[8, 9]]
>>> growing = WindowBuffer(size=8, initial_size=2)
>>> [len(w) for w in growing.add(Batch(Lane("s"), np.zeros((30, 1)), np.arange(30)))]
[2, 4, 8, 8, 8]
>>> fleet = WindowBuffer(size=4, max_records=10)  # five devices, then one alone
>>> keys = np.array(list("abcde") * 4 + ["a"] * 6, dtype=object)
>>> [len(w) for w in fleet.add(Batch(Lane("s"), np.zeros((26, 1)), np.arange(26), keys=keys))]
[10, 10, 4]
"""

from __future__ import annotations

import time
from collections.abc import Callable

from streamad.records import Batch


class WindowBuffer:
    """Holds records until ``size`` have arrived or the oldest has waited ``max_wait_seconds``.

    The wait is measured on the processing clock from when the window's first record
    was read, so a quiet topic still gets its detections out within the time limit.
    With ``initial_size``, the first window holds that many records and each next one
    twice as many, up to ``size``: a young model learns after a few records instead of
    scoring a whole first window blind, and a short stream is not one single window.

    Records with keys are counted per key: a window closes at the record that brings
    one key to ``size`` (doubling from ``initial_size`` as above) or the window to
    ``max_records`` (never fewer than ``size``; None: ``size``, every record counted
    as one key's).
    """

    def __init__(
        self,
        size: int,
        max_wait_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        initial_size: int | None = None,
        max_records: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        if initial_size is not None and not 1 <= initial_size <= size:
            raise ValueError("initial window size must be between 1 and the window size")
        if max_wait_seconds is not None and max_wait_seconds <= 0:
            raise ValueError("max_wait_seconds must be positive")
        if max_records is not None and max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_size = size
        self.max_records = max(size, max_records or size)
        self.size = initial_size or size
        self.max_wait_seconds = max_wait_seconds
        self.clock = clock
        self._parts: list[Batch] = []
        self._count = 0
        self._per_key: dict[object, int] = {}  # records of each key in the open window
        self._opened: float | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def first_offset(self) -> int | None:
        """Offset of the oldest buffered record (None when empty)."""
        return int(self._parts[0].offsets[0]) if self._parts else None

    def add(self, batch: Batch) -> list[Batch]:
        """Buffer a batch; return the windows it completes."""
        out: list[Batch] = []
        start = 0
        n = len(batch)
        while start < n:
            if self._count == 0:
                self._opened = batch.arrival or self.clock()
            take, full = self._take(batch, start)
            self._parts.append(batch.slice(start, start + take) if (start, take) != (0, n) else batch)
            self._count += take
            start += take
            if full:
                out.append(self.flush())
        return out

    def _take(self, batch: Batch, start: int) -> tuple[int, bool]:
        """How many of ``batch``'s records from ``start`` join the open window, and
        whether the window is then full."""
        if batch.keys is None or self.max_records == self.max_size:
            take = min(self.size - self._count, len(batch) - start)
            return take, self._count + take == self.size
        # The cap doubles with the window's size while the lane's first windows grow.
        room = self.size * self.max_records // self.max_size - self._count
        counts = self._per_key
        keys = batch.keys[start : start + room].tolist()
        for i, k in enumerate(keys):
            c = counts.get(k, 0) + 1
            counts[k] = c
            if c >= self.size:
                return i + 1, True
        return len(keys), len(keys) == room

    def due(self, now: float | None = None) -> bool:
        """True when a partial window has waited its limit."""
        if self._count == 0 or self.max_wait_seconds is None or self._opened is None:
            return False
        now = self.clock() if now is None else now
        return now - self._opened >= self.max_wait_seconds

    def flush(self) -> Batch:
        """Close the current (possibly partial) window and return it."""
        if not self._parts:
            raise ValueError("flush() of an empty window buffer")
        window = Batch.concat(self._parts)
        self._parts = []
        self._count = 0
        self._per_key = {}
        self._opened = None
        self.size = min(self.max_size, 2 * self.size)
        return window
