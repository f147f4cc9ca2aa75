"""What an operator reads of drift: one log line per feature at its first alarm, counts
after that, a summary at the end; every event also goes to a sink (file or topic)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamad.drift.monitor import DriftEvent, exceeding
from streamad.records import Batch, Lane

log = logging.getLogger("streamad.drift")


class DriftSink(Protocol):
    """Where drift events go: a JSONL file on replay, a drift topic on Kafka."""

    def write(self, events: Sequence[DriftEvent]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Tally:
    """The alarms of one feature (or the score stream) of one lane, for the log."""

    first: DriftEvent
    count: int = 1
    last_offset: int = 0
    peak: float = -math.inf
    unreported: int = 0  # alarms since the last log line about this feature
    reported_at: float = 0.0

    def add(self, e: DriftEvent) -> None:
        self.count += 1
        self.unreported += 1
        self.last_offset = e.offset
        if math.isfinite(e.statistic):
            self.peak = max(self.peak, e.statistic)

    def describe(self) -> str:
        e = self.first
        peak = f"; {e.method} up to {self.peak:.3g}" if math.isfinite(self.peak) and self.count > 1 else ""
        if self.count == 1:
            return f"drift: {e.subject} of {e.lane}: 1 alarm, at offset {e.offset:,}"
        return f"drift: {e.subject} of {e.lane}: {self.count:,} alarms between offset {e.offset:,} and {self.last_offset:,}{peak}"


class DriftLog:
    """A pipeline observer that writes every drift event to a drift sink and logs them
    so that an operator can read the log.

    A drifting stream can raise an alarm every few windows; a line for each buries
    everything else. So the first alarm of each feature (and of the score stream) of a
    lane is logged in full; later ones are counted, and a feature with new alarms gets
    at most one line per ``report_every`` seconds saying how many. ``close()`` (the end
    of a replay) logs one line per feature that had alarms: how many, and between
    which offsets. The sink still gets every event.

    >>> import sys
    >>> shown = logging.StreamHandler(sys.stdout); log.addHandler(shown)
    >>> dl = DriftLog(report_every=3600.0, clock=lambda: 0.0)
    >>> for off in (1024, 2048, 4096):
    ...     dl.log(DriftEvent(Lane("s"), "feature", "psi", 1.5, 1.0, off, "x0"))
    drift in feature 'x0' of s[0] at offset 1,024: psi 1.5 > 1 (further alarms of this feature are counted)
    >>> dl.close()
    drift: feature 'x0' of s[0]: 3 alarms between offset 1,024 and 4,096; psi up to 1.5
    >>> log.removeHandler(shown)
    """

    def __init__(self, sink: DriftSink | None = None, report_every: float = 60.0, clock: Any = time.monotonic) -> None:
        self.sink = sink
        self.report_every = float(report_every)
        self.clock = clock
        self.tallies: dict[tuple[Lane, str, str | None], _Tally] = {}
        self._closed = False

    def on_batch(self, batch: Batch) -> None:
        return None

    def on_rejects(self, rejects: Sequence[Any]) -> None:
        return None

    def on_window(self, result: Any) -> None:
        status = getattr(result, "drift", None)
        events = status.events if status is not None else ()
        for e in events:
            self.log(e)
        if events and self.sink is not None:
            self.sink.write(events)

    def log(self, e: DriftEvent) -> None:
        """Log one event: in full when it is the first of its feature, else counted."""
        key = (e.lane, e.kind, e.feature)
        now = self.clock()
        t = self.tallies.get(key)
        if t is None:
            self.tallies[key] = _Tally(e, last_offset=e.offset, peak=e.statistic if math.isfinite(e.statistic) else -math.inf, reported_at=now)
            what = "feature" if e.feature else "score stream"
            log.warning("%s (further alarms of this %s are counted)", e.describe(), what)
            return
        t.add(e)
        if now - t.reported_at >= self.report_every:
            log.warning(
                "drift: %s of %s: %d more alarm%s (latest at offset %s: %s %s > %g); %s so far",
                e.subject, e.lane, t.unreported, "" if t.unreported == 1 else "s",
                f"{e.offset:,}", e.method, exceeding(e.statistic, e.threshold), e.threshold, f"{t.count:,}",
            )
            t.unreported, t.reported_at = 0, now

    def summary(self) -> list[str]:
        """One line per feature (and score stream) of each lane that had alarms."""
        return [t.describe() for _, t in sorted(self.tallies.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))]

    def on_checkpoint(self, lanes: Sequence[Lane]) -> None:
        if self.sink is not None:
            self.sink.flush()

    def close(self) -> None:
        """Log the per-feature summary (once) and close the sink."""
        if not self._closed:
            self._closed = True
            for line in self.summary():
                log.warning(line)
        if self.sink is not None:
            self.sink.close()
