"""Says in the log when a lane holds more devices than its key tables keep.

The temporal stage keeps ``features.max_keys`` keys' histories per lane, a detector per
key (the sensor default) ``max_keys`` keys' models; beyond that the least recently seen
are forgotten, and a key that comes back starts afresh (its model scores 0 until it has
learned enough). On a topic where that happens all the time, every key is forgotten
before it returns and none ever alarms: the metrics count it
(``streamad_temporal_evictions_total``, ``streamad_detector_key_evictions_total``), and
this says it once per lane and table, where an operator reads first.
"""

from __future__ import annotations

import logging

from streamad.pipeline import Observer, WindowResult
from streamad.records import Lane

log = logging.getLogger("streamad.keys")


class KeyEvictionLog(Observer):
    """One warning per lane and key table, at its first forgotten key.

    >>> from streamad.detectors.base import LearnReport
    >>> seen = KeyEvictionLog()
    >>> full = LearnReport(0, extra={"keys": 1024.0, "evicted": 2.0})
    >>> r = WindowResult(Lane("pumps", 3), None, None, None, 1.0, None, full, 0.0)  # what it reads: lane, report, temporal
    >>> seen.on_window(r); seen.on_window(r)  # logged once
    >>> sorted(seen.warned)
    [(Lane(stream='pumps', partition=3), 'detector')]
    """

    def __init__(self) -> None:
        self.warned: set[tuple[Lane, str]] = set()

    def on_window(self, result: WindowResult) -> None:
        extra, t = result.report.extra, result.temporal
        if extra.get("evicted"):
            self._once(
                result.lane,
                "detector",
                "more devices than the per-key detector keeps models for (%d): the least recently seen key's model was forgotten, "
                "and a key that comes back starts afresh (it scores 0 until its model has learned enough). detector.params.max_keys "
                "keeps more (streamad_detector_key_evictions_total counts them)",
                int(extra.get("keys", 0)),
            )
        if t is not None and t.evictions:
            self._once(
                result.lane,
                "temporal",
                "more devices than the temporal stage keeps histories for (%d, features.max_keys): the least recently seen "
                "key's history was forgotten (streamad_temporal_evictions_total counts them)",
                t.keys,
            )

    def _once(self, lane: Lane, table: str, message: str, keys: int) -> None:
        if (lane, table) not in self.warned:
            self.warned.add((lane, table))
            log.warning("%s: " + message, lane, keys)
