"""streamad: streaming anomaly detection for sensor and tabular data.

The model — an online scaler, a detector and a threshold, scored before they learn:

>>> import numpy as np
>>> from streamad import Model, detect
>>> X = np.random.default_rng(0).normal(size=(2000, 3))
>>> X[1500] = [0.0, 7.0, 0.0]
>>> result = detect(X, Model("gaussian"))
>>> row = result.iloc[1500]
>>> bool(row["is_anomaly"]), row["top_features"][0][0]
(True, 'x1')

Detectors (``Model(detector=...)`` takes one, or its name): ``LoeAE`` (the default),
``LoeNTL``, ``LoeSVDD``, ``Gaussian``, ``RiverHST``. Scalers: ``StandardScaler``,
``MinMaxScaler``. Thresholds: ``SpotThreshold``, ``QuantileThreshold``.
``detect(data, model)`` runs a DataFrame or an array through the pipeline's windows and
returns a DataFrame of verdicts. For windows, sources and sinks of your own:
``Pipeline`` with ``Settings`` (``load_settings``) and ``ArraySource``, and the file and
Kafka connectors in ``streamad.connectors``.

Everything here is imported on first use, so ``import streamad`` stays cheap and torch
is loaded only when a neural detector builds its network.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("streamad-loe")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "Model": "streamad.model",
    "Verdict": "streamad.model",
    "Detector": "streamad.detectors",
    "LearnReport": "streamad.detectors",
    "make_detector": "streamad.detectors",
    "validate_params": "streamad.detectors",
    "LoeAE": "streamad.detectors.loe_ae",
    "LoeNTL": "streamad.detectors.loe_ntl",
    "LoeSVDD": "streamad.detectors.loe_svdd",
    "Gaussian": "streamad.detectors.gaussian",
    "RiverHST": "streamad.detectors.river_hst",
    "Scaler": "streamad.scaling",
    "StandardScaler": "streamad.scaling",
    "MinMaxScaler": "streamad.scaling",
    "Threshold": "streamad.threshold",
    "SpotThreshold": "streamad.threshold",
    "QuantileThreshold": "streamad.threshold",
    "detect": "streamad.pipeline",
    "Pipeline": "streamad.pipeline",
    "Observer": "streamad.pipeline",
    "WindowResult": "streamad.pipeline",
    "Settings": "streamad.config",
    "load_settings": "streamad.config",
    "ArraySource": "streamad.sources",
    "Batch": "streamad.records",
    "Lane": "streamad.records",
    "Reject": "streamad.records",
    "DetectionBatch": "streamad.detection",
    "StreamadError": "streamad.errors",
    "ConfigError": "streamad.errors",
    "InputError": "streamad.errors",
}

# The names of _EXPORTS, written out: linters and type checkers read only a literal list.
__all__ = [
    "__version__",
    "Model", "Verdict",
    "Detector", "LearnReport", "make_detector", "validate_params", "LoeAE", "LoeNTL", "LoeSVDD", "Gaussian", "RiverHST",
    "Scaler", "StandardScaler", "MinMaxScaler",
    "Threshold", "SpotThreshold", "QuantileThreshold",
    "detect", "Pipeline", "Observer", "WindowResult",
    "Settings", "load_settings",
    "ArraySource", "Batch", "Lane", "Reject", "DetectionBatch",
    "StreamadError", "ConfigError", "InputError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamad' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from streamad.config import Settings, load_settings
    from streamad.detection import DetectionBatch
    from streamad.detectors import Detector, LearnReport, make_detector, validate_params
    from streamad.detectors.gaussian import Gaussian
    from streamad.detectors.loe_ae import LoeAE
    from streamad.detectors.loe_ntl import LoeNTL
    from streamad.detectors.loe_svdd import LoeSVDD
    from streamad.detectors.river_hst import RiverHST
    from streamad.errors import ConfigError, InputError, StreamadError
    from streamad.model import Model, Verdict
    from streamad.pipeline import Observer, Pipeline, WindowResult, detect
    from streamad.records import Batch, Lane, Reject
    from streamad.scaling import MinMaxScaler, Scaler, StandardScaler
    from streamad.sources import ArraySource
    from streamad.threshold import QuantileThreshold, SpotThreshold, Threshold
