"""Kafka: a consumer-group source, detection and dead-letter sinks, and the app that
runs the pipeline between them (``streamad run``). Uses kafka-python.

Names are imported on first use, so ``connectors.kafka.signals`` can be imported
(and its handlers installed) before kafka-python is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "KafkaApp": "app",
    "KafkaStartError": "app",
    "OffsetResetError": "source",
    "run": "app",
    "JsonDecoder": "decoder",
    "KafkaReject": "decoder",
    "KafkaSource": "source",
    "KafkaDetectionSink": "sink",
    "KafkaDeadLetterSink": "sink",
    "DeliveryError": "sink",
    "DeliveryInterrupted": "sink",
    "StopSignals": "signals",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
