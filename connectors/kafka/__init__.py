"""Kafka: a consumer-group source, detection and dead-letter sinks, and the app that
runs the pipeline between them (``streamad run``). Uses kafka-python."""

from connectors.kafka.app import KafkaApp, KafkaStartError, run
from connectors.kafka.decoder import JsonDecoder, KafkaReject
from connectors.kafka.sink import DeliveryError, DeliveryInterrupted, KafkaDeadLetterSink, KafkaDetectionSink
from connectors.kafka.source import KafkaSource

__all__ = [
    "KafkaApp",
    "KafkaStartError",
    "run",
    "JsonDecoder",
    "KafkaReject",
    "KafkaSource",
    "KafkaDetectionSink",
    "KafkaDeadLetterSink",
    "DeliveryError",
    "DeliveryInterrupted",
]
