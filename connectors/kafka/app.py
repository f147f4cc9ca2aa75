"""``streamad run``: the pipeline as a member of a Kafka consumer group.

The same ``Pipeline`` as file replay, with a Kafka source, a detection sink and a
dead-letter sink. At every commit point, in this order: detections and dead letters
are sent, the producer is flushed and every send is checked, each partition's model
state is checkpointed with the offset it learned through, and only then are the
input offsets committed (at-least-once). SIGTERM or SIGINT finishes the current
windows, flushes, checkpoints, commits and leaves the group; a second one exits at
once (nothing uncommitted is lost: it is read again at the next start). A broker
that cannot be reached, at start or later, is retried with backoff.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

from streamad.config import Settings
from streamad.drift import DriftLog, JsonlDriftSink
from streamad.errors import ConfigError, StreamadError
from streamad.pipeline import Counts, Observer, Pipeline
from streamad.records import Lane
from streamad.state import StateStore

from connectors.kafka.decoder import JsonDecoder
from connectors.kafka.options import Backoff, RepeatFilter, client_options, redacted, sleep
from connectors.kafka.sink import DeliveryInterrupted, KafkaDeadLetterSink, KafkaDetectionSink, KafkaDriftSink, _describe, _retriable
from connectors.kafka.source import KafkaSource
from connectors.sinks import FanoutSink

log = logging.getLogger("streamad.kafka")

# A bootstrap attempt gives up after this long, so streamad's own retry line (and a
# stop signal) come through; a client option `bootstrap_timeout_ms` overrides it.
BOOTSTRAP_TIMEOUT_MS = 5_000
# After a stop request, unacknowledged messages are still re-sent for this long (the
# graceful path); then the worker leaves without committing them (Kubernetes waits 30 s
# between SIGTERM and SIGKILL).
STOP_GRACE_SECONDS = 20.0


class KafkaStartError(StreamadError):
    """The Kafka clients cannot start for a reason retrying does not cure."""


class KafkaApp:
    """Wires settings, clients, source, sinks, state store and pipeline, and runs them.

    ``observers`` receive the pipeline's hooks (metrics); ``lag()`` gives the consumer
    lag per partition; ``stop()`` asks for a graceful stop from any thread;
    ``on_ack(id, metadata)`` (optional) is called from the producer's thread when the
    broker acknowledges a detection.
    """

    def __init__(
        self,
        settings: Settings,
        observers: Iterable[Observer] = (),
        on_ack: Callable[[str, Any], None] | None = None,
        handle_signals: bool = True,
    ) -> None:
        if settings.kafka is None:
            raise ConfigError(
                "kafka: missing: `streamad run` needs a kafka section with at least bootstrap_servers, topics, group_id, "
                "output_topic and dead_letter_topic (in the config file, or STREAMAD_KAFKA__... variables)"
            )
        r = settings.record
        clash = [f for f in (r.features or ()) if f in (r.key, r.timestamp, r.label)]
        if clash:
            raise ConfigError(f"record.features: {', '.join(clash)} is also the record's key, timestamp or label field")
        self.settings = settings
        self.kafka = settings.kafka
        self.consumer_options, self.producer_options = client_options(self.kafka)
        for opts in (self.consumer_options, self.producer_options):
            opts.setdefault("bootstrap_timeout_ms", BOOTSTRAP_TIMEOUT_MS)
        self.observers = list(observers)
        self.on_ack = on_ack
        self.handle_signals = handle_signals
        self._stop = threading.Event()
        self._deadline: float | None = None
        self.pipeline: Pipeline | None = None
        self.source: KafkaSource | None = None
        self.decoder: JsonDecoder | None = None

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stop gracefully (from any thread); sends the broker has not acknowledged are
        retried for ``grace_seconds`` more, then given up (and not committed)."""
        deadline = time.monotonic() + grace_seconds
        self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
        self._stop.set()

    def _give_up(self) -> bool:
        return self._stop.is_set() and (self._deadline is None or time.monotonic() >= self._deadline)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def lag(self) -> dict[Lane, int]:
        return self.source.lag() if self.source is not None else {}

    # -- running --------------------------------------------------------------------------

    def run(self) -> Counts:
        _quiet_kafka_repeats()
        if self.settings.log_level != "DEBUG":
            # kafka-python narrates every join and fetch at INFO; streamad logs what matters.
            logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
        with self._signals():
            consumer = self._connect("consumer", self.consumer_options)
            if consumer is None:
                return Counts()
            try:
                producer = self._connect("producer", self.producer_options)
            except BaseException:
                consumer.close(autocommit=False, timeout_ms=2_000)
                raise
            if producer is None:
                consumer.close(autocommit=False, timeout_ms=2_000)
                return Counts()
            return self._run(consumer, producer)

    def _run(self, consumer: Any, producer: Any) -> Counts:
        s, k = self.settings, self.kafka
        store = StateStore(s.state.dir) if s.state.dir is not None else None
        if store is None:
            log.warning("state.dir is not set: model state is not checkpointed, so a restart or a moved partition starts its model afresh")
        self.decoder = JsonDecoder(s.record, k.max_message_bytes, on_features=self._features_inferred)
        detections = KafkaDetectionSink(producer, k.output_topic, k.retry, self._give_up, self.on_ack)
        dead = KafkaDeadLetterSink(producer, k.dead_letter_topic, k.retry, self._give_up)
        drift_log = self._drift_log(producer)
        observers = [*self.observers, drift_log] if drift_log is not None else self.observers
        self.pipeline = pipeline = Pipeline(s, detections, feature_names=s.record.features, rejects=dead, observers=observers, store=store)
        poll_ms = max(10, min(100, int(s.window.max_wait_seconds * 250)))
        self.source = source = KafkaSource(consumer, k, self.decoder, should_stop=self._stop.is_set, poll_timeout_ms=poll_ms)
        source.resume_offset = self._resume
        source.handoff = self._handoff
        source.drop = pipeline.release
        log.info(
            "streamad run: group %s reads %s; detections to %s, dead letters to %s; detector %s, window %d records or %.3g s; state %s",
            k.group_id,
            ", ".join(k.topics),
            k.output_topic,
            k.dead_letter_topic,
            pipeline.model_name,
            s.window.size,
            s.window.max_wait_seconds,
            s.state.dir or "not kept",
        )
        log.debug("kafka consumer options: %s; producer options: %s", redacted(self.consumer_options), redacted(self.producer_options))
        t0 = time.monotonic()
        clean = False
        try:
            source.subscribe()
            pipeline.run(source, should_stop=self._stop.is_set)
            clean = True
        except DeliveryInterrupted as e:
            log.warning("stopped before the broker acknowledged everything (%s): offsets after the last commit are read again at the next start", e)
        finally:
            # Anything still unacknowledged must not hold up leaving the group.
            self.stop(grace_seconds=0)
            pipeline.release(list(pipeline.lanes))
            source.close()
            try:
                producer.close(timeout=5)
            except Exception as e:  # noqa: BLE001
                log.warning("kafka: closing the producer: %s", e)
        c = pipeline.counts
        log.info(
            "stopped%s after %.1f s: read %d, scored %d, dead-lettered %d%s, skipped %d (learned before), alarms %d; %d detections sent",
            "" if clean else " early",
            time.monotonic() - t0,
            c.read,
            c.scored,
            c.rejected,
            f" ({', '.join(f'{n}: {v}' for n, v in sorted(c.rejected_by_code.items()))})" if c.rejected else "",
            c.skipped,
            c.alarms,
            detections.written,
        )
        return c

    def _drift_log(self, producer: Any) -> DriftLog | None:
        """Drift events are logged, and sent to the drift topic and/or file when set."""
        s, k = self.settings, self.kafka
        if not s.drift.enabled:
            return None
        sinks: list[Any] = []
        if k.drift_topic is not None:
            sinks.append(KafkaDriftSink(producer, k.drift_topic, k.retry, self._give_up))
        if s.drift.events is not None:
            sinks.append(JsonlDriftSink(s.drift.events))
        return DriftLog(FanoutSink(sinks) if len(sinks) > 1 else (sinks[0] if sinks else None))

    # -- hooks of the source ---------------------------------------------------------------

    def _features_inferred(self, names: tuple[str, ...]) -> None:
        assert self.pipeline is not None
        if self.pipeline.feature_names is None:
            self.pipeline.feature_names = tuple(names)

    def _resume(self, lane: Lane) -> int | None:
        assert self.pipeline is not None and self.decoder is not None
        try:
            offset = self.pipeline.resume_offset(lane)
        except ValueError as e:
            raise ConfigError(f"cannot restore {lane} from {self.settings.state.dir}: {e}") from None
        if self.decoder.features is None and self.pipeline.feature_names is not None:
            self.decoder.fix(self.pipeline.feature_names)
        return offset

    def _handoff(self, lanes: list[Lane]) -> Mapping[Lane, int]:
        assert self.pipeline is not None
        present = [lane for lane in lanes if lane in self.pipeline.lanes]
        if not present:
            return {}
        log.info("kafka: giving up %s: processing partial windows, checkpointing, committing", ", ".join(map(str, present)))
        try:
            self.pipeline.drain(present)
            return self.pipeline.checkpoint(present)
        finally:
            self.pipeline.release(present)

    # -- start-up ---------------------------------------------------------------------------

    def _connect(self, what: str, options: dict[str, Any]) -> Any:
        """A kafka-python client, retried with backoff while the brokers cannot be reached;
        ``None`` when asked to stop meanwhile."""
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaConfigurationError

        cls = KafkaConsumer if what == "consumer" else KafkaProducer
        backoff = Backoff(self.kafka.retry)
        servers = ",".join(self.kafka.bootstrap_servers)
        while not self._stop.is_set():
            try:
                client = cls(**options)
            except KafkaConfigurationError as e:
                raise ConfigError(f"kafka: {e}") from None
            except Exception as e:  # noqa: BLE001 - sorted below
                if not _retriable(e):
                    raise KafkaStartError(f"kafka: cannot start the {what} ({servers}): {_describe(e)}") from None
                if backoff.exhausted():
                    raise KafkaStartError(
                        f"kafka: no broker reachable at {servers} after {backoff.elapsed:.0f} s (kafka.retry.give_up_after_seconds): {_describe(e)}"
                    ) from None
                delay = backoff.next()
                log.warning(
                    "kafka: cannot reach the brokers at %s for the %s (%s); retrying in %.1f s (attempt %d, %.0f s so far)",
                    servers,
                    what,
                    _describe(e),
                    delay,
                    backoff.attempts,
                    backoff.elapsed,
                )
                sleep(delay, self._stop.is_set)
                continue
            if backoff.attempts:
                log.info("kafka: %s connected to %s after %d attempts", what, servers, backoff.attempts + 1)
            return client
        return None

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return

        first: list[float] = []

        def on_signal(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            now = time.monotonic()
            if first:
                # One signal can arrive twice (sent to the process and to its group,
                # as `timeout` does): only a later one means "now".
                if now - first[0] >= 1.0:
                    log.warning("%s again: exiting now; records after the last commit are read again at the next start", name)
                    raise SystemExit(128 + signum)
                return
            first.append(now)
            self.stop()
            log.info("%s: finishing the current windows, flushing, checkpointing, committing, leaving the group (again: exit at once)", name)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(settings: Settings, observers: Iterable[Observer] = ()) -> Counts:
    """Run until stopped by a signal (what ``streamad run`` does)."""
    return KafkaApp(settings, observers).run()


def _quiet_kafka_repeats() -> None:
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())
