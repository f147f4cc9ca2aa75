"""Detectors, and the registry that builds them from a name and parameters."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from streamad.detectors.base import Detector, LearnReport

_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register(name: str, factory: Callable[..., Detector]) -> None:
    _REGISTRY[name] = factory


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """One line on a registered detector: its version, if it has one, and the first line
    of its module's docstring.

    >>> describe("loe-ae").startswith("v3: An autoencoder trained with LOE")
    True
    """
    _load_builtin()
    factory = _REGISTRY[name]
    doc = (inspect.getmodule(factory).__doc__ or "").strip().splitlines()  # type: ignore[union-attr]
    version = getattr(factory, "version", None)
    return (f"v{version}: " if version else "") + (doc[0].rstrip(".").replace("``", "") if doc else "")


def make_detector(name: str, **params: Any) -> Detector:
    """Build a registered detector; unknown names and parameters raise ``ValueError``."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
    try:
        return factory(**params)
    except TypeError as e:
        raise ValueError(f"bad parameters for detector {name!r}: {e}") from None


_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    from streamad.detectors.gaussian import Gaussian
    from streamad.detectors.loe_ae import LoeAE
    from streamad.detectors.loe_ntl import LoeNTL
    from streamad.detectors.loe_svdd import LoeSVDD
    from streamad.detectors.river_hst import RiverHST

    for cls in (LoeAE, LoeNTL, LoeSVDD, Gaussian, RiverHST):
        register(cls.name, cls)


DEFAULT_DETECTOR = "loe-ae"

__all__ = ["Detector", "LearnReport", "available", "describe", "make_detector", "register", "DEFAULT_DETECTOR"]
