"""A bounded table of something per key (a device's detector, its threshold), and the
few rows of a key that wait to be learned together.

On a stream of many devices a window of 256 records holds a few records of each key:
learning each key's share of every window would refit a model (or a tail) per record.
A key whose rows may wait (``hold``) keeps them until it has ``batch`` of them; the
only key of a window learns them at once (the window is its batch).

>>> import numpy as np
>>> table = KeyTable(max_keys=2, batch=4)
>>> groups = [("a", np.array([0, 1])), ("b", np.array([2]))]
>>> X = np.arange(3.0)[:, None]
>>> [(k, made, rows) for k, made, rows in table.take(groups, dict)]
[('a', {}, array([0, 1])), ('b', {}, array([2]))]
>>> table.batch("a", X[[0, 1]], hold=True) is None  # two of four: they wait
True
>>> table.batch("a", X[[0]], hold=True) is None  # three: they still wait
True
>>> table.batch("a", X[[2]], hold=True).ravel().tolist()  # four: learned together
[0.0, 1.0, 0.0, 2.0]
>>> _ = list(table.take([("c", np.array([0]))], dict))  # a third key: the least recent goes
>>> list(table.items), table.evictions
(['b', 'c'], 1)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class KeyTable(Generic[T]):
    """At most ``max_keys`` items by key, the least recently used forgotten first (not
    one of the current window's keys, while there are others); ``forget(key)`` is called
    for each key forgotten. ``pending``: rows of a key waiting for ``batch`` of them."""

    def __init__(self, max_keys: int, batch: int, forget: Callable[[Any], None] | None = None) -> None:
        self.max_keys = max_keys
        self.batch_size = batch
        self.forget = forget
        self.items: OrderedDict[Any, T] = OrderedDict()  # least recently used first
        self.pending: dict[Any, np.ndarray] = {}
        self.evictions = 0

    def take(self, groups: Sequence[tuple[Any, np.ndarray | slice]], make: Callable[[], T]) -> Iterator[tuple[Any, T, np.ndarray | slice]]:
        """Each key of a window (``groups``: key and its rows) with its item, made for a
        key not in the table, and its rows; each is now the most recently used."""
        window = {k for k, _ in groups}
        for k, rows in groups:
            item = self.items.pop(k, None)
            if item is None:
                item = make()
                while len(self.items) >= self.max_keys:
                    self._evict(window)
            self.items[k] = item
            yield k, item, rows

    def batch(self, key: Any, rows: np.ndarray, hold: bool) -> np.ndarray | None:
        """``key``'s rows to learn now, after any that waited; None when ``hold`` and
        they are fewer than ``batch``: they wait (in ``pending``)."""
        held = self.pending.pop(key, None)
        if held is not None:
            rows = np.concatenate([held, rows])
        if hold and len(rows) < self.batch_size:
            self.pending[key] = rows
            return None
        return rows

    def _evict(self, window: set[Any]) -> None:
        victim = next((k for k in self.items if k not in window), next(iter(self.items)))
        del self.items[victim]
        self.pending.pop(victim, None)
        if self.forget is not None:
            self.forget(victim)
        self.evictions += 1
