"""Detections and dead letters to Kafka topics, through one shared producer.

``write`` sends without waiting. ``flush`` returns only when the broker has
acknowledged every message written so far: the pipeline checkpoints and commits
input offsets after it, so an unacknowledged detection is never covered by a
commit. A message the broker did not take (gone, timed out) is kept and sent again
with backoff until it is acknowledged; an error that resending cannot cure
(authorization, an invalid topic) raises ``DeliveryError`` and nothing is committed.

A broker that lost its producer state (it restarted empty: ``UnknownProducerIdError``,
``OutOfOrderSequenceNumberError``) takes the messages again from a new producer: the
idempotent producer's sequence numbers mean nothing to it any more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from streamad.config import KafkaRetrySettings
from streamad.connectors.kafka.decoder import KafkaReject
from streamad.connectors.kafka.options import Backoff, describe_error, retriable, sleep
from streamad.detection import DetectionBatch
from streamad.errors import StreamadError
from streamad.records import Reject

log = logging.getLogger("streamad.kafka")

# How long one flush waits before it says what it is waiting for; a stop is checked
# every FLUSH_SLICE_SECONDS.
FLUSH_WAIT_SECONDS = 5.0
FLUSH_SLICE_SECONDS = 0.5
# The broker does not know the producer's idempotence state: resending through a new
# producer cures it (kafka-python's own epoch bump fails the batches in flight).
PRODUCER_STATE_ERRORS = ("UnknownProducerIdError", "OutOfOrderSequenceNumberError", "InvalidProducerEpochError", "InvalidProducerIdMappingError")

# Header names of a dead letter (the value is the original message, byte for byte).
H_CODE = "streamad.error.code"
H_REASON = "streamad.error.reason"
H_FIELD = "streamad.error.field"
H_TOPIC = "streamad.source.topic"
H_PARTITION = "streamad.source.partition"
H_OFFSET = "streamad.source.offset"
H_TIMESTAMP = "streamad.source.timestamp"
H_TRUNCATED = "streamad.raw.truncated"


class DeliveryError(StreamadError):
    """The broker refused messages for a reason that resending does not cure."""


class DeliveryInterrupted(Exception):
    """A stop was requested while messages were still unacknowledged (nothing is committed)."""


class Producer:
    """The producer all sinks share, replaced by ``renew()`` when the broker no longer
    knows its idempotence state. ``make()`` builds a new kafka-python producer (None
    when asked to stop meanwhile)."""

    def __init__(self, producer: Any, make: Callable[[], Any] | None = None) -> None:
        self.current = producer
        self.make = make
        self.generation = 0

    @property
    def config(self) -> dict[str, Any]:
        return getattr(self.current, "config", {})

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None) -> Any:
        return self.current.send(topic, value=value, key=key, headers=headers)

    def flush(self, timeout: float | None = None) -> None:
        self.current.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        if not close_producer(self.current, timeout):
            log.warning(
                "kafka: closing the producer: messages still unacknowledged after %.3g s are dropped "
                "(they were not committed: their records are read again at the next start)",
                timeout or 0,
            )

    def broken(self) -> bool:
        """The producer gave up for good: kafka-python's own recovery from a lost
        producer state (an epoch bump) failed, and every send fails from now on. (Its
        transaction manager is the only place that says so.)"""
        tm = getattr(self.current, "_transaction_manager", None)
        try:
            return bool(tm is not None and tm.has_fatal_error())
        except Exception:  # noqa: BLE001 - another kafka-python version
            return False

    def renew(self, generation: int) -> bool:
        """A new producer, unless one was made since ``generation`` (another sink saw
        the same error first); False when none can be made."""
        if generation != self.generation:
            return True
        if self.make is None:
            return False
        old = self.current
        try:
            # Waits for what the old one still has in flight: other sinks check those.
            old.flush(timeout=FLUSH_WAIT_SECONDS)
        except Exception:  # noqa: BLE001 - what failed is sent again
            pass
        new = self.make()
        if new is None:
            return False
        self.current = new
        self.generation += 1
        close_producer(old, 0)
        return True


def close_producer(producer: Any, timeout: float | None) -> bool:
    """Close a kafka-python producer within ``timeout``; False when messages were left
    unacknowledged. (Its close() flushes first and raises when that times out, leaving
    the producer open, and its __del__ raises the same at exit: it is then closed
    without waiting.)"""
    try:
        producer.close(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001
        pass
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None:
            sender.force_close()
        producer._closed = True
    except Exception:  # noqa: BLE001 - another kafka-python version
        pass
    return False


class _Outbox:
    """Sends through the producer and remembers what the broker has not acknowledged."""

    def __init__(self, producer: Any, retry: KafkaRetrySettings, should_stop: Callable[[], bool], what: str) -> None:
        self.producer = producer
        self.retry = retry
        self.should_stop = should_stop
        self.what = what
        self.sent = 0
        # Sent since the last flush, with their futures: checked once the producer has
        # flushed (cheaper than a callback per message).
        self._inflight: list[tuple[tuple[Any, ...], Any]] = []
        # Messages send() could not hand to the producer.
        self._failed: list[tuple[tuple[Any, ...], BaseException]] = []
        self._blocked: BaseException | None = None
        self._generation = getattr(producer, "generation", 0)

    def send(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Any:
        msg = (topic, value, key, headers)
        if self._blocked is not None:
            # The broker is unreachable: queue without waiting max_block_ms per message.
            self._failed.append((msg, self._blocked))
            return None
        try:
            fut = self.producer.send(topic, value=value, key=key, headers=headers)
        except Exception as e:  # noqa: BLE001 - every error is handled at flush
            if retriable(e):
                self._blocked = e
            self._failed.append((msg, e))
            return None
        self._inflight.append((msg, fut))
        self.sent += 1
        return fut

    def _collect(self) -> list[tuple[tuple[Any, ...], BaseException]]:
        """After a complete flush: every message that failed, and forget the rest."""
        failed, self._failed = self._failed, []
        inflight, self._inflight = self._inflight, []
        for msg, fut in inflight:
            if not fut.is_done:  # cannot happen after flush(); keep it to be sure
                self._inflight.append((msg, fut))
            elif fut.exception is not None:
                failed.append((msg, fut.exception))
        return failed

    def flush(self) -> None:
        backoff = Backoff(self.retry)
        waited = 0.0
        told = 0.0
        renewed = 0
        while True:
            try:
                self.producer.flush(timeout=FLUSH_SLICE_SECONDS)
            except Exception as e:  # noqa: BLE001 - a timeout: acknowledgements still outstanding
                waited += FLUSH_SLICE_SECONDS
                if waited - told >= FLUSH_WAIT_SECONDS:
                    told = waited
                    log.warning("kafka: waiting for the broker to acknowledge %s (%.0f s so far: %s)", self.what, waited, describe_error(e))
                if self.should_stop():
                    raise DeliveryInterrupted(f"stopped while {self.what} were unacknowledged") from None
                continue
            failed = self._collect()
            if not failed and not self._inflight:
                self._blocked = None
                return
            if not failed:
                continue
            generation = getattr(self.producer, "generation", self._generation)
            if generation != self._generation:
                # Another sink replaced the producer: what failed here went through the
                # old one (aborted with it), and goes again through the new one.
                self._generation = generation
                self._resend(failed)
                continue
            broken = getattr(self.producer, "broken", None)
            if broken is not None and broken():
                stale, failed = failed, []
            else:
                stale = [(m, e) for m, e in failed if _producer_state(e)]
                failed = [(m, e) for m, e in failed if not _producer_state(e)]
            fatal = [(m, e) for m, e in failed if not retriable(e)]
            failed = self.refused(fatal) + [(m, e) for m, e in failed if retriable(e)]
            if stale:
                failed += stale
                if not self._renew(stale):
                    self._failed = failed + self._failed
                    raise DeliveryInterrupted(f"stopped while {len(failed)} {self.what} were unacknowledged")
                renewed += 1
                if renewed == 1:
                    self._resend(failed)
                    continue
            if not failed:
                continue
            delay = backoff.next()
            log.warning(
                "kafka: %d %s not acknowledged by the broker (%s); sending them again in %.1f s (attempt %d)",
                len(failed),
                self.what,
                describe_error(failed[0][1]),
                delay,
                backoff.attempts,
            )
            if not sleep(delay, self.should_stop):
                self._failed = failed + self._failed
                raise DeliveryInterrupted(f"stopped while {len(failed)} {self.what} were unacknowledged")
            self._resend(failed)

    def _resend(self, failed: list[tuple[tuple[Any, ...], BaseException]]) -> None:
        self._blocked = None
        for msg, _ in failed:
            self.send(*msg)

    def _renew(self, stale: list[tuple[tuple[Any, ...], BaseException]]) -> bool:
        """A new producer for messages the broker refused for its producer state."""
        renew = getattr(self.producer, "renew", None)
        if renew is None:
            self.refused(stale)  # raises: a bare producer cannot be replaced
            return False
        generation = self._generation
        log.warning(
            "kafka: the broker does not know this producer any more (%s; did it restart without its data?): "
            "sending %d %s again from a new producer",
            describe_error(stale[0][1]),
            len(stale),
            self.what,
        )
        if not renew(generation):
            return False
        self._generation = self.producer.generation
        return True

    def refused(self, failures: list[tuple[tuple[Any, ...], BaseException]]) -> list[tuple[tuple[Any, ...], BaseException]]:
        """Non-retriable failures: raise, or return messages to send again as they are."""
        if failures:
            (topic, *_), error = failures[0]
            raise DeliveryError(f"kafka: the broker refused {len(failures)} {self.what} for topic {topic!r}: {describe_error(error)}")
        return []


class KafkaDetectionSink:
    """Detection messages (JSON, the detection-message contract) to a topic, keyed by the
    input record's key. Each message's ``id`` comes from its input's topic, partition
    and offset, so one re-sent after a crash can be recognised as a duplicate."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        retry: KafkaRetrySettings,
        should_stop: Callable[[], bool] = lambda: False,
        on_ack: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.topic = topic
        self.outbox = _Outbox(producer, retry, should_stop, "detections")
        self.on_ack = on_ack

    @property
    def written(self) -> int:
        return self.outbox.sent

    def write(self, detections: DetectionBatch) -> None:
        send = self.outbox.send
        topic = self.topic
        if self.on_ack is None:
            for m in detections.messages():
                send(topic, m.value, m.key)
            return
        for m in detections.messages():
            fut = send(topic, m.value, m.key)
            if fut is not None:
                fut.add_callback(self.on_ack, m.id)

    def flush(self) -> None:
        self.outbox.flush()

    def close(self) -> None:
        self.flush()


class KafkaDriftSink:
    """Drift events (streamad.drift.DriftEvent, JSON) to a topic, keyed by the input
    stream and partition so each partition's events stay in order."""

    def __init__(self, producer: Any, topic: str, retry: KafkaRetrySettings, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.topic = topic
        self.outbox = _Outbox(producer, retry, should_stop, "drift events")

    @property
    def written(self) -> int:
        return self.outbox.sent

    def write(self, events: Sequence[Any]) -> None:
        for e in events:
            self.outbox.send(self.topic, e.to_json(), f"{e.lane.stream}/{e.lane.partition}".encode())

    def flush(self) -> None:
        self.outbox.flush()

    def close(self) -> None:
        self.flush()


class _DeadLetterOutbox(_Outbox):
    def refused(self, failures: list[tuple[tuple[Any, ...], BaseException]]) -> list[tuple[tuple[Any, ...], BaseException]]:
        # A broker whose topic limit is below the producer's refuses a big original
        # message: shrink it (keeping the headers) rather than stop on bad input.
        again: list[tuple[tuple[Any, ...], BaseException]] = []
        other: list[tuple[tuple[Any, ...], BaseException]] = []
        for msg, error in failures:
            shrinkable = "TooLarge" in type(error).__name__ and bool(msg[1])
            (again if shrinkable else other).append((msg, error))
        super().refused(other)
        out = []
        for (topic, value, key, headers), error in again:
            size = len(value) // 4
            headers = [h for h in headers if h[0] != H_TRUNCATED] + [(H_TRUNCATED, str(_original_size(headers, value)).encode())]
            out.append(((topic, value[:size], key, headers), error))
        return out


def _original_size(headers: list[tuple[str, bytes]], value: bytes) -> int:
    for name, v in headers:
        if name == H_TRUNCATED:
            return int(v)
    return len(value)


class KafkaDeadLetterSink:
    """Rejected messages to a dead-letter topic: the original key and value bytes, with
    headers naming the source coordinates and the reason (``streamad.error.code``,
    ``streamad.error.reason``, ``streamad.error.field``, ``streamad.source.topic``,
    ``streamad.source.partition``, ``streamad.source.offset``). A value too large for
    the producer is cut, and ``streamad.raw.truncated`` holds its original size."""

    def __init__(self, producer: Any, topic: str, retry: KafkaRetrySettings, should_stop: Callable[[], bool] = lambda: False, max_bytes: int | None = None) -> None:
        self.topic = topic
        self.outbox = _DeadLetterOutbox(producer, retry, should_stop, "dead letters")
        limit = getattr(producer, "config", {}).get("max_request_size", 1_048_576)
        # Room for the headers and the record's framing.
        self.max_bytes = max_bytes if max_bytes is not None else limit - min(16_384, limit // 2)

    @property
    def written(self) -> int:
        return self.outbox.sent

    def write(self, rejects: Sequence[Reject]) -> None:
        for r in rejects:
            value = r.raw.encode("utf-8", errors="surrogateescape") if isinstance(r.raw, str) else r.raw
            headers = [
                (H_CODE, r.code.encode()),
                (H_REASON, r.reason.encode("utf-8", errors="backslashreplace")),
                (H_TOPIC, r.lane.stream.encode()),
                (H_PARTITION, str(r.lane.partition).encode()),
                (H_OFFSET, str(r.offset).encode()),
            ]
            if r.field is not None:
                headers.append((H_FIELD, str(r.field).encode("utf-8", errors="backslashreplace")))
            key = None
            if isinstance(r, KafkaReject):
                key = r.key
                if r.timestamp_ms is not None and r.timestamp_ms >= 0:
                    headers.append((H_TIMESTAMP, str(r.timestamp_ms).encode()))
            if value is not None and len(value) > self.max_bytes:
                headers.append((H_TRUNCATED, str(len(value)).encode()))
                value = value[: self.max_bytes]
            self.outbox.send(self.topic, value, key, headers)

    def flush(self) -> None:
        self.outbox.flush()

    def close(self) -> None:
        self.flush()


def _producer_state(e: BaseException) -> bool:
    return type(e).__name__ in PRODUCER_STATE_ERRORS


