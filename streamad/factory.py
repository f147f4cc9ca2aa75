"""Build the per-lane components from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamad.detectors import Detector, accepts, make_detector, resolve
from streamad.learning.runtime import set_threads
from streamad.scaling import Scaler, make_scaler
from streamad.threshold import Threshold, make_threshold

if TYPE_CHECKING:
    from streamad.config import Settings, ThresholdSettings


def apply_threads(settings: Settings) -> None:
    """Give torch the configured number of threads: now if it is loaded, else when a
    neural detector first builds its network (detectors without one never load torch).
    Windows of a few hundred records through a network this small are dominated by
    thread hand-offs when torch spreads them over every core."""
    set_threads(settings.threads)


def detector_name(settings: Settings) -> str:
    return resolve(settings.detector.name)


def build_detector(settings: Settings) -> Detector:
    params: dict[str, Any] = dict(settings.detector.params)
    name = detector_name(settings)
    if accepts(name, "seed"):
        params.setdefault("seed", settings.detector.seed)
    return make_detector(name, **params)


def build_scaler(settings: Settings, detector: Detector) -> Scaler:
    kind: str = settings.scaler.kind
    if kind == "auto":
        kind = detector.preferred_scaler
    params: dict[str, Any] = {}
    if kind == "standard" and settings.scaler.half_life:
        params["half_life"] = settings.scaler.half_life
    return make_scaler(kind, **params)


def build_threshold(t: ThresholdSettings) -> Threshold:
    common = {"min_records": t.warmup_records, "half_life": t.half_life, "skip_first": t.skip_first_records}
    if t.kind == "spot":
        return make_threshold("spot", risk=t.risk, **common)
    return make_threshold("quantile", q=t.quantile, **common)
