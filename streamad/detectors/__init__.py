"""Detectors, and the registry that builds them from a name and parameters.

The registry knows the built-in detectors by module path and class name and imports a
detector's module only when asked about it; no detector module imports torch at import
time (the neural ones import it when their network is first built). So parameters can
be checked against a detector's signature without building a model or loading torch:

>>> validate_params("loe-ae", {"alpha": "0.2"})
{'alpha': 0.2}
>>> validate_params("loe-ae", {"alpah": 0.2})
Traceback (most recent call last):
...
streamad.detectors.params.ParamsError: bad parameters for detector 'loe-ae': alpah: unknown parameter; did you mean alpha?
>>> make_detector("default").name
'loe-ae'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from streamad.detectors.base import Detector, LearnReport
from streamad.detectors.params import ParamsError, check_params, param_names, takes

DEFAULT_DETECTOR = "loe-ae"

#: name -> the detector class, or ``"module:Class"`` until it is first needed
_REGISTRY: dict[str, Callable[..., Detector] | str] = {
    "loe-ae": "streamad.detectors.loe_ae:LoeAE",
    "loe-ntl": "streamad.detectors.loe_ntl:LoeNTL",
    "loe-svdd": "streamad.detectors.loe_svdd:LoeSVDD",
    "gaussian": "streamad.detectors.gaussian:Gaussian",
    "river-hst": "streamad.detectors.river_hst:RiverHST",
    "hgad": "streamad.detectors.hgad:HGAD",
    "per-key": "streamad.detectors.per_key:PerKey",
}


def register(name: str, factory: Callable[..., Detector] | str) -> None:
    """Add a detector: a class or factory taking keyword parameters, or its
    ``"module:attribute"`` path (imported when the detector is first needed)."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    return sorted(_REGISTRY)


def resolve(name: str) -> str:
    """The registered name ``name`` stands for (``default`` is the default detector)."""
    return DEFAULT_DETECTOR if name == "default" else name


def detector_class(name: str) -> Callable[..., Detector]:
    """The class (or factory) registered under ``name``; raises ``ValueError`` for unknown names."""
    name = resolve(name)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available())}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return factory


def validate_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked against the detector's signature and converted to their types,
    without building the detector; raises ``ParamsError`` (a ``ValueError``) naming
    every bad key."""
    return check_params(detector_class(name), params, resolve(name))


def parameters(name: str) -> frozenset[str]:
    """The names of the detector's parameters."""
    return param_names(detector_class(name))


def accepts(name: str, param: str) -> bool:
    """Whether the detector takes the keyword ``param``."""
    return takes(detector_class(name), param)


def make_detector(name: str, **params: Any) -> Detector:
    """Build a registered detector; unknown names and bad parameters raise ``ValueError``."""
    factory = detector_class(name)
    checked = check_params(factory, params, resolve(name))
    try:
        return factory(**checked)
    except TypeError as e:
        raise ValueError(f"bad parameters for detector {resolve(name)!r}: {e}") from None


def describe(name: str) -> str:
    """One line on a registered detector: its version, if it has one, and the first line
    of its module's docstring.

    >>> describe("loe-ae").startswith("v3: An autoencoder trained with LOE")
    True
    """
    factory = detector_class(name)
    doc = (inspect.getmodule(factory).__doc__ or "").strip().splitlines()
    version = getattr(factory, "version", None)
    return (f"v{version}: " if version else "") + (doc[0].rstrip(".").replace("``", "") if doc else "")


__all__ = [
    "DEFAULT_DETECTOR",
    "Detector",
    "LearnReport",
    "ParamsError",
    "accepts",
    "available",
    "describe",
    "detector_class",
    "make_detector",
    "parameters",
    "register",
    "resolve",
    "validate_params",
]
