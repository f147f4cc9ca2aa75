"""Build the per-lane components from settings."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from streamad.detectors import Detector, accepts, make_detector, resolve
from streamad.detectors.per_key import DEFAULT_INNER
from streamad.errors import ConfigError
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


#: What ``detector.name: default`` runs on a stream the temporal stage runs on (sensor
#: readings with event times): an online Gaussian per key (``per-key``: each device
#: judged against its own past, by its own threshold; a stream without keys is one) over the values and
#: their context, trimmed at its scores' 95% quantile (LOE's hard E-step), scoring from
#: its first windows, refitted every 32 records, without an online scaler. On one
#: device it is the Gaussian of examples/sensor-streams.yaml, record for record; why it
#: is the default there: README, "Sensor streams", and benchmarks/results/ANALYSIS.md
#: (eighth and ninth rounds). Tables keep ``loe-ae``.
SENSOR_DEFAULT: dict[str, Any] = {"detector": "per-key", "params": {"detector": "gaussian", "inner": DEFAULT_INNER["gaussian"]}, "scaler": "none", "window": 32}
#: What ``default`` ran on streams with event times before: a lane checkpointed then
#: goes on with it (``for_stream``'s ``held``). Until 2026-12-02 ``loe-ae`` (a table's
#: default, then without its feature histograms: its scaler and windows), then the one
#: Gaussian for all keys until ``per-key`` took its place.
FORMER_SENSOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "loe-ae": {"detector": "loe-ae", "params": {"histograms": False}, "scaler": None, "window": None},
    "gaussian": {"detector": "gaussian", "params": DEFAULT_INNER["gaussian"], "scaler": "none", "window": 32},
}


def temporal_on(settings: Settings, timed: bool | None) -> bool:
    """Whether the temporal stage runs: ``features.temporal: on``, or ``auto`` and
    ``timed`` (the records carry event times)."""
    f = settings.features.temporal
    return f == "on" or (f == "auto" and bool(timed))


def for_stream(settings: Settings, timed: bool | None, held: str | None = None) -> Settings:
    """The settings a pipeline runs: ``detector.name: default`` made concrete for the
    stream. On a stream the temporal stage runs on (``features.temporal: on``, or
    ``auto`` and ``timed``: its records carry event times) it is ``SENSOR_DEFAULT``,
    with its window size and scaler unless those are set; elsewhere (tables, or
    ``timed`` unknown) ``loe-ae``. A named detector is left as it is. ``held``: the
    detector a lane's checkpoint holds; one of ``FORMER_SENSOR_DEFAULTS`` stays.

    >>> from streamad.config import Settings
    >>> s = for_stream(Settings(), timed=True)
    >>> s.detector.name, s.detector.params["detector"], s.window.size, s.scaler.kind
    ('per-key', 'gaussian', 32, 'none')
    >>> for_stream(Settings(), timed=False).detector.name
    'default'
    >>> for_stream(Settings(), timed=True, held="gaussian").detector.params
    {'trim': 0.95, 'early': True}
    """
    d = settings.detector
    if d.name != "default" or not temporal_on(settings, timed):
        return settings
    if d.params:
        names = ", ".join(sorted(d.params))
        raise ConfigError(
            f"detector.params ({names}): on records with event times the default detector is {SENSOR_DEFAULT['detector']}; "
            "name the detector whose parameters these are (detector.name, --detector loe-ae)"
        )
    spec = FORMER_SENSOR_DEFAULTS.get(held or "", SENSOR_DEFAULT)
    params = copy.deepcopy(spec["params"])
    update: dict[str, Any] = {"detector": d.model_copy(update={"name": spec["detector"], "params": params})}
    if spec["scaler"] is not None and settings.scaler.kind == "auto":
        update["scaler"] = settings.scaler.model_copy(update={"kind": spec["scaler"]})
    w = settings.window
    if spec["window"] is not None and "size" not in w.model_fields_set:
        size = spec["window"]
        update["window"] = w.model_copy(update={"size": size, "initial_size": None if w.initial_size is None else min(w.initial_size, size)})
    return settings.model_copy(update=update)


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
    if kind == "standard":
        params["constant_share"] = settings.scaler.constant_share
        if settings.scaler.half_life:
            params["half_life"] = settings.scaler.half_life
    return make_scaler(kind, **params)


def build_threshold(t: ThresholdSettings) -> Threshold:
    common = {"min_records": t.warmup_records, "half_life": t.half_life, "skip_first": t.skip_first_records}
    if t.kind == "spot":
        return make_threshold("spot", risk=t.risk, **common)
    return make_threshold("quantile", q=t.quantile, **common)
