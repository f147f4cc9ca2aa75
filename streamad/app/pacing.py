"""Replay at the pace of the records' own timestamps, optionally sped up.

>>> import numpy as np
>>> from streamad.records import Batch, Lane
>>> b = Batch(Lane("s"), np.zeros((4, 1)), np.arange(4), timestamps=np.array([0.0, 0.0, 1.0, 3.0]))
>>> slept = []
>>> out = list(paced([b], speed=2.0, clock=lambda: 0.0, sleep=slept.append))
>>> [len(x) for x in out], slept
([2, 1, 1], [0.5, 1.5])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from streamad.errors import ConfigError
from streamad.records import Batch


def paced(
    batches: Iterable[Batch | None],
    speed: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Batch | None]:
    """Release each record when its timestamp, relative to the first, divided by
    ``speed`` has elapsed. Records sharing a due time are released together."""
    if not (math.isfinite(speed) and speed > 0):  # NaN compares false with everything
        raise ConfigError(f"--speed must be a positive number of times real time (got {speed:g})")
    start_wall: float | None = None
    start_ts: float | None = None
    for batch in batches:
        if batch is None or len(batch) == 0:
            yield batch
            continue
        if batch.timestamps is None:
            raise ConfigError("pacing needs event timestamps: name the timestamp column (--timestamp)")
        ts = batch.timestamps
        if start_ts is None:
            start_ts, start_wall = float(ts[0]), clock()
        assert start_wall is not None
        due = start_wall + (ts - start_ts) / speed
        # One slice per distinct due time, in order (timestamps may go backwards: then
        # the record is simply late and released at once).
        cuts = np.flatnonzero(np.diff(due) != 0) + 1
        first = True
        for part in np.split(np.arange(len(batch)), cuts):
            wait = float(due[part[0]]) - clock()
            if wait > 0:
                sleep(wait)
            piece = batch.slice(int(part[0]), int(part[-1]) + 1)
            piece.arrival = clock()
            if first:
                piece.rejects = batch.rejects
                first = False
            yield piece
