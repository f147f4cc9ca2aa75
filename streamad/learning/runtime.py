"""Torch, imported when a network is first built, with the thread count settings ask for.

Settings, the registry and the detectors that need no network never import torch
(importing it costs seconds); ``set_threads`` only records the count until then.
"""

from __future__ import annotations

import sys
from types import ModuleType

_threads: int | None = None


def set_threads(n: int) -> None:
    """Use ``n`` threads for tensor math: now if torch is loaded, else when it is."""
    global _threads
    _threads = n
    torch = sys.modules.get("torch")
    if torch is not None:
        _apply(torch)


def import_torch() -> ModuleType:
    """``import torch``, with the configured thread count applied."""
    import torch

    _apply(torch)
    return torch


def _apply(torch: ModuleType) -> None:
    # Windows of a few hundred records through a network this small are dominated by
    # thread hand-offs when torch spreads them over every core.
    if _threads is not None and torch.get_num_threads() != _threads:
        torch.set_num_threads(_threads)
