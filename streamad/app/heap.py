"""Keep the garbage collector off the objects a run starts with.

torch, pandas and numba leave about 280,000 container objects behind when they load.
They live as long as the process, yet every full collection walks all of them again,
and a replay allocates enough short-lived containers (a parsed line is a list) for a
full collection every few thousand records: up to a third of a CSV replay's time went there.
``gc.freeze()`` moves every object alive at that moment to a generation the collector
never scans; objects made later are collected as before. (A frozen object that later
becomes part of an unreachable cycle stays until the process ends: the frozen ones are
the imports' and the pipeline's own, which live that long anyway.) The heavy imports happen
while the first window is judged (the network is built, the temporal stage's compiled
loop loads), so the commands freeze right after it, once.

Only the commands (``streamad replay``, ``streamad run``) do this: a program that uses
the pipeline or a ``Model`` itself keeps its own collector as it set it.
"""

from __future__ import annotations

import gc

from streamad.pipeline import Observer, WindowResult


class SettleHeap(Observer):
    """Freeze the heap (``gc.freeze``) after the first window; nothing after that."""

    def __init__(self) -> None:
        self.done = False

    def on_window(self, result: WindowResult) -> None:
        if not self.done:
            self.done = True
            # The young generations only: what is garbage by now was made recently. A
            # full collection would cost 0.1 s, more than it saves on a short replay.
            gc.collect(1)
            gc.freeze()
