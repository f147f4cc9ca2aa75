"""Kafka: a consumer-group source, detection, drift and dead-letter sinks, and the
decoder of input messages; uses kafka-python. The worker that runs the pipeline between
them (``streamad run``) is ``streamad.app.kafka``.

Names are imported on first use, so importing this package does not load kafka-python.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "OffsetResetError": "source",
    "JsonDecoder": "decoder",
    "KafkaReject": "decoder",
    "KafkaSource": "source",
    "KafkaDetectionSink": "sink",
    "KafkaDeadLetterSink": "sink",
    "DeliveryError": "sink",
    "DeliveryInterrupted": "sink",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
