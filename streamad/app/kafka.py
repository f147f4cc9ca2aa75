"""``streamad run``: the pipeline as a member of a Kafka consumer group.

The same ``Pipeline`` as file replay, with a Kafka source, a detection sink and a
dead-letter sink. At every commit point, in this order: detections and dead letters
are sent, the producer is flushed and every send is checked, each partition's model
state is checkpointed with the offset it learned through, and only then are the
input offsets committed (at-least-once). SIGTERM or SIGINT finishes the current
windows, flushes, checkpoints, commits and leaves the group, giving unacknowledged
sends ``kafka.stop_grace_seconds`` more; a second one exits at once (nothing
uncommitted is lost: it is read again at the next start). A broker that cannot be
reached, at start or later, is retried with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from streamad.app.keys_log import KeyEvictionLog
from streamad.app.signals import StopSignals, main_thread
from streamad.config import Settings
from streamad.connectors.kafka.decoder import JsonDecoder
from streamad.connectors.kafka.options import Backoff, RepeatFilter, client_options, describe_error, quiet_kafka, redacted, retriable, sleep
from streamad.connectors.kafka.sink import DeliveryInterrupted, KafkaDeadLetterSink, KafkaDetectionSink, KafkaDriftSink, Producer
from streamad.connectors.kafka.source import KafkaSource, TopicIds
from streamad.connectors.sinks import DriftEventsFile, FanoutSink
from streamad.drift import DriftLog, DriftSink
from streamad.errors import ConfigError, StreamadError
from streamad.factory import for_stream
from streamad.pipeline import Counts, ObserverLike, Pipeline
from streamad.records import Lane
from streamad.state import StateStore

log = logging.getLogger("streamad.kafka")

# A bootstrap attempt gives up after this long, so streamad's own retry line (and a
# stop signal) come through; a client option `bootstrap_timeout_ms` overrides it.
BOOTSTRAP_TIMEOUT_MS = 5_000
# Once the graceful part of a stop is over, closing each client waits at most this
# long (leaving the group, flushing what is left): a stop is over in about
# kafka.stop_grace_seconds plus twice this, broker or not.
CLOSE_TIMEOUT_SECONDS = 2.0


class KafkaStartError(StreamadError):
    """The Kafka clients cannot start for a reason retrying does not cure."""


class KafkaApp:
    """Wires settings, clients, source, sinks, state store and pipeline, and runs them.

    ``observers`` receive the pipeline's hooks (metrics), and ``on_offset_reset(lane,
    reason)`` when they have it; ``lag()`` gives the consumer lag per partition;
    ``stop()`` asks for a graceful stop from any thread; ``on_ack(id, metadata)``
    (optional) is called from the producer's thread when the broker acknowledges a
    detection.
    """

    def __init__(
        self,
        settings: Settings,
        observers: Iterable[ObserverLike] = (),
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
        # What a partition without a checkpoint runs: Kafka records always carry an event
        # time, so ``features.temporal: auto`` is on and the default detector is the sensor one.
        self.runs: Settings = for_stream(settings, timed=True)
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

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop gracefully (from any thread); sends the broker has not acknowledged are
        retried for ``grace_seconds`` more (default ``kafka.stop_grace_seconds``), then
        given up (and not committed)."""
        grace = self.kafka.stop_grace_seconds if grace_seconds is None else grace_seconds
        deadline = time.monotonic() + grace
        self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
        self._stop.set()

    def _give_up(self) -> bool:
        return self._stop.is_set() and (self._deadline is None or time.monotonic() >= self._deadline)

    def _time_left(self) -> float | None:
        if not self._stop.is_set() or self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

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
                log.info("stopped before connecting to the brokers: nothing was read")
                return Counts()
            try:
                producer = self._connect("producer", self.producer_options)
            except BaseException:
                with quiet_kafka(self.settings.log_level == "DEBUG"):
                    self._close_quietly(consumer.close, autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_SECONDS * 1000))
                raise
            if producer is None:
                with quiet_kafka(self.settings.log_level == "DEBUG"):
                    self._close_quietly(consumer.close, autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_SECONDS * 1000))
                log.info("stopped before connecting to the brokers: nothing was read")
                return Counts()
            return self._run(consumer, Producer(producer, lambda: self._connect("producer", self.producer_options)))

    def _run(self, consumer: Any, producer: Producer) -> Counts:
        s, k = self.settings, self.kafka
        store = StateStore(s.state.dir) if s.state.dir is not None else None
        if store is None:
            log.warning("state.dir is not set: model state is not checkpointed, so a restart or a moved partition starts its model afresh")
        self.decoder = JsonDecoder(s.record, k.max_message_bytes, on_features=self._features_inferred)
        detections = KafkaDetectionSink(producer, k.output_topic, k.retry, self._give_up, self.on_ack)
        dead = KafkaDeadLetterSink(producer, k.dead_letter_topic, k.retry, self._give_up)
        drift_log = self._drift_log(producer)
        observers: list[ObserverLike] = [*self.observers, KeyEvictionLog(), drift_log]
        # features.temporal auto: on for a partition without a checkpoint (Kafka records
        # always carry an event time); a checkpoint keeps the choice it was made with.
        self.pipeline = pipeline = Pipeline(
            s, detections, feature_names=s.record.features, rejects=dead, observers=observers, store=store, temporal=True
        )
        poll_ms = max(10, min(100, int(s.window.max_wait_seconds * 250)))
        self.source = source = KafkaSource(consumer, k, self.decoder, should_stop=self._stop.is_set, poll_timeout_ms=poll_ms)
        source.resume_offset = self._resume
        source.handoff = self._handoff
        source.drop = pipeline.release
        source.rewind = self._rewind
        source.on_reset = self._offset_reset
        source.time_left = self._time_left
        source.topic_ids = TopicIds(s.state.dir)
        log.info(
            "streamad run: group %s reads %s; detections to %s, dead letters to %s; detector %s, window %d records of a key (%d in all) or %.3g s; state %s",
            k.group_id,
            ", ".join(k.topics),
            k.output_topic,
            k.dead_letter_topic,
            pipeline.model_name,
            pipeline.settings.window.size,
            pipeline.settings.window.keyed_max,
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
            with quiet_kafka(self.settings.log_level == "DEBUG"):
                # Closing cancels kafka-python's pending requests, which it reports
                # as errors ("Metadata refresh: failed Cancelled"): not news here.
                source.close(timeout_ms=int(CLOSE_TIMEOUT_SECONDS * 1000))
                self._close_quietly(producer.close, timeout=CLOSE_TIMEOUT_SECONDS)
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

    @staticmethod
    def _close_quietly(close: Callable[..., Any], **kwargs: Any) -> None:
        try:
            close(**kwargs)
        except Exception as e:  # noqa: BLE001
            log.warning("kafka: closing a client: %s", describe_error(e))

    def _drift_log(self, producer: Producer) -> DriftLog:
        """Drift events are logged, and sent to the drift topic and/or file when set; with
        ``drift.enabled: false`` the only events are keys' lasting states adopted."""
        s, k = self.settings, self.kafka
        sinks: list[DriftSink] = []
        if k.drift_topic is not None:
            sinks.append(KafkaDriftSink(producer, k.drift_topic, k.retry, self._give_up))
        if s.drift.events is not None:
            sinks.append(DriftEventsFile(s.drift.events, append=True))
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

    def _rewind(self, lane: Lane, offset: int | None) -> None:
        """After an offset reset: the lane's model keeps what it learned and goes on
        from ``offset`` (records it held from before are scored first). It is
        checkpointed and committed there at once: should the partition move or the
        worker stop before its next window, the checkpoint of the old offsets must not
        be taken for one of the new records."""
        assert self.pipeline is not None and self.source is not None
        lm = self.pipeline.lanes.get(lane)
        if lm is None:
            return
        self.pipeline.drain([lane])
        lm.next_offset = offset
        lm.read_offset = offset
        if offset is not None:
            self.source.commit(self.pipeline.checkpoint([lane]))

    def _offset_reset(self, lane: Lane, reason: str) -> None:
        for obs in self.observers:
            hook = getattr(obs, "on_offset_reset", None)
            if hook is not None:
                hook(lane, reason)

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
                if not retriable(e):
                    raise KafkaStartError(f"kafka: cannot start the {what} ({servers}): {describe_error(e)}") from None
                if backoff.exhausted():
                    raise KafkaStartError(
                        f"kafka: no broker reachable at {servers} after {backoff.elapsed:.0f} s (kafka.retry.give_up_after_seconds): {describe_error(e)}"
                    ) from None
                delay = backoff.next()
                log.warning(
                    "kafka: cannot reach the brokers at %s for the %s (%s); retrying in %.1f s (attempt %d, %.0f s so far)",
                    servers,
                    what,
                    describe_error(e),
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
        """The first SIGTERM/SIGINT stops gracefully, a later one exits at once. The
        handlers may already be in place (a command installs them before its slow
        imports): a signal that came then stops this app as soon as it starts."""
        if not self.handle_signals or not main_thread():
            yield
            return
        own = StopSignals.current() is None
        signals = StopSignals.install()

        def on_stop(name: str) -> None:
            self.stop()
            if self.settings.log_level != "DEBUG":
                # From now on streamad says what it waits for; kafka-python's own
                # reconnect errors and cancelled requests are not news.
                logging.getLogger("kafka").setLevel(logging.CRITICAL + 1)
            if self.pipeline is None:
                log.info("%s%s: stopping before anything is read", name, " (during start-up)" if signals.early else "")
            else:
                log.info(
                    "%s: finishing the current windows, flushing, checkpointing, committing, leaving the group "
                    "(in about %.3g s at most; again: exit at once)",
                    name,
                    self.kafka.stop_grace_seconds + 2 * CLOSE_TIMEOUT_SECONDS,
                )

        signals.listen(on_stop)
        try:
            yield
        finally:
            signals.forget(on_stop)
            if own:
                signals.uninstall()


def run(settings: Settings, observers: Iterable[ObserverLike] = ()) -> Counts:
    """Run until stopped by a signal (what ``streamad run`` does)."""
    return KafkaApp(settings, observers).run()


def _quiet_kafka_repeats() -> None:
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())
