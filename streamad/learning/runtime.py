"""Torch, imported when a network is first built, with the thread count settings ask for.

Settings, the registry and the detectors that need no network never import torch
(importing it costs seconds); ``set_threads`` only records the count until then.

Windows of a few hundred records through a network this small are dominated by thread
hand-offs when torch spreads them over every core (several times slower, and erratic,
on a machine with other work). So when streamad is the one to import torch, it sets
one thread; a program that imported torch itself keeps its own setting unless it calls
``set_threads`` (the pipeline does, with ``Settings.threads``).
"""

from __future__ import annotations

import sys
from types import ModuleType

DEFAULT_THREADS = 1
_threads: int | None = None  # asked for by set_threads


def set_threads(n: int) -> None:
    """Use ``n`` threads for tensor math: numpy's BLAS now, torch now if it is loaded,
    else when it is."""
    global _threads
    _threads = n
    limit_blas(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        _apply(torch, n)


def import_torch() -> ModuleType:
    """``import torch``, with the thread count applied (see the module docstring)."""
    ours = "torch" not in sys.modules
    import torch

    if _threads is not None:
        _apply(torch, _threads)
    elif ours:
        _apply(torch, DEFAULT_THREADS)
    return torch


def _apply(torch: ModuleType, n: int) -> None:
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def limit_blas(n: int) -> None:
    """At most ``n`` threads in numpy's BLAS and LAPACK. Their calls here are small (the
    online Gaussian's inverse of a few dozen columns, once every few windows): spread
    over the cores they wait on each other's hand-offs, twice as slow on an idle machine
    and up to a hundred times on a busy one (a 41-column inverse: 0.13 ms alone, 2 ms
    with two threads, 15-20 ms beside other work)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
