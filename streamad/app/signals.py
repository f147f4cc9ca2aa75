"""SIGTERM and SIGINT for a worker: the first asks for a graceful stop, a later one
(a second or more after it) exits at once.

No Kafka client is imported here, so a command can install the handlers before its
slow imports (torch, kafka-python): a signal during start-up is then a logged,
clean stop instead of the default action (killed, status 143, nothing logged).

>>> s = StopSignals()
>>> s.listen(lambda name: print("stop:", name))
>>> s.received is None
True
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("streamad.kafka")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# One signal can arrive twice (sent to the process and to its group, as `timeout`
# does): only one this much later means "now".
AGAIN_AFTER_SECONDS = 1.0


class StopSignals:
    """Remembers the first stop signal and tells the listeners (at once, or when they
    register if it came before them)."""

    _installed: StopSignals | None = None

    def __init__(self) -> None:
        self.received: str | None = None
        self.early = False  # it came before any listener: during start-up
        self._at = 0.0
        self._listeners: list[Callable[[str], None]] = []
        self._previous: dict[int, Any] = {}

    @classmethod
    def install(cls) -> StopSignals:
        """The process's handlers (installed once; main thread only)."""
        if cls._installed is None:
            s = cls()
            s._previous = {sig: signal.signal(sig, s._on_signal) for sig in SIGNALS}
            cls._installed = s
        return cls._installed

    @classmethod
    def current(cls) -> StopSignals | None:
        return cls._installed

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if StopSignals._installed is self:
            StopSignals._installed = None

    def listen(self, callback: Callable[[str], None]) -> None:
        """``callback(signal name)`` on the first signal; now if it already came."""
        self._listeners.append(callback)
        if self.received is not None:
            callback(self.received)

    def forget(self, callback: Callable[[str], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self.received is not None:
            if now - self._at >= AGAIN_AFTER_SECONDS:
                log.warning("%s again: exiting now; records after the last commit are read again at the next start", name)
                raise SystemExit(128 + signum)
            return
        self.received, self._at = name, now
        # Logged by the listener: before it listens, logging may not be set up yet.
        self.early = not self._listeners
        for callback in list(self._listeners):
            callback(name)


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
