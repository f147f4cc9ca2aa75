"""Build the per-lane components from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamad.detectors import DEFAULT_DETECTOR, Detector, make_detector
from streamad.scaling import Scaler, make_scaler
from streamad.threshold import Threshold, make_threshold

if TYPE_CHECKING:
    from streamad.config import Settings


def apply_threads(settings: "Settings") -> None:
    """Give torch the configured number of threads. Windows of a few hundred records
    through a network this small are dominated by thread hand-offs when torch spreads
    them over every core (several times slower on a busy machine)."""
    import torch

    if torch.get_num_threads() != settings.threads:
        torch.set_num_threads(settings.threads)


def detector_name(settings: "Settings") -> str:
    name = settings.detector.name
    return DEFAULT_DETECTOR if name == "default" else name


def build_detector(settings: "Settings") -> Detector:
    params: dict[str, Any] = dict(settings.detector.params)
    params.setdefault("seed", settings.detector.seed)
    return make_detector(detector_name(settings), **params)


def build_scaler(settings: "Settings", detector: Detector) -> Scaler:
    kind = settings.scaler.kind
    if kind == "auto":
        kind = detector.preferred_scaler
    params: dict[str, Any] = {}
    if kind == "standard" and settings.scaler.half_life:
        params["half_life"] = settings.scaler.half_life
    return make_scaler(kind, **params)


def build_threshold(settings: "Settings") -> Threshold:
    t = settings.threshold
    common = {"min_records": t.warmup_records, "half_life": t.half_life}
    if t.kind == "spot":
        return make_threshold("spot", risk=t.risk, **common)
    return make_threshold("quantile", q=t.quantile, **common)
