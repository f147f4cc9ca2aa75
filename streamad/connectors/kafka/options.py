"""kafka-python client options from the settings, and backoff for an unreachable broker."""

from __future__ import annotations

import difflib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka.partitioner.default import murmur2
from kafka.partitioner.sticky import StickyPartitioner

from streamad.config import KafkaRetrySettings, KafkaSettings
from streamad.errors import ConfigError

log = logging.getLogger("streamad.kafka")

# Options a YAML file or an environment variable may spell as a number (a password
# "1234") but that kafka-python needs as text.
_TEXT_OPTIONS = {
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_crlfile",
    "ssl_ciphers",
    "compression_type",
    "group_instance_id",
}


def client_options(k: KafkaSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(consumer, producer) keyword arguments; unknown option names raise ``ConfigError``
    naming the key, before any connection is tried."""
    from kafka import KafkaConsumer, KafkaProducer

    consumer_names = set(KafkaConsumer.DEFAULT_CONFIG)
    producer_names = set(KafkaProducer.DEFAULT_CONFIG)
    common = {
        "bootstrap_servers": list(k.bootstrap_servers),
        "reconnect_backoff_max_ms": int(k.retry.max_backoff_seconds * 1000),
    }
    consumer: dict[str, Any] = {
        **common,
        "group_id": k.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": k.auto_offset_reset,
        "session_timeout_ms": k.session_timeout_ms,
        "heartbeat_interval_ms": k.heartbeat_interval_ms,
        "max_poll_interval_ms": k.max_poll_interval_ms,
        "max_poll_records": k.max_poll_records,
        # An input topic that does not exist is a mistake to report, not to create.
        "allow_auto_create_topics": False,
        # kafka-python's 500 ms doubled the median latency at half load (benchmarks/).
        "fetch_max_wait_ms": 100,
    }
    producer: dict[str, Any] = {
        **common,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        # A send blocked on missing metadata (broker gone) gives up soon; the sink
        # keeps the message and sends it again with backoff.
        "max_block_ms": 10_000,
        "partitioner": KeyHashCache(),
    }

    def check(section: str, options: dict[str, Any], names: set[str], kind: str) -> dict[str, Any]:
        out = {}
        for key, value in options.items():
            if key not in names:
                near = difflib.get_close_matches(key, sorted(names), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"kafka.{section}.{key}: not a kafka-python {kind} option{hint}")
            out[key] = str(value) if key in _TEXT_OPTIONS and isinstance(value, (int, float)) and not isinstance(value, bool) else value
        return out

    shared = check("client", k.client, consumer_names | producer_names, "client")
    consumer.update({n: v for n, v in shared.items() if n in consumer_names})
    producer.update({n: v for n, v in shared.items() if n in producer_names})
    consumer.update(check("consumer", k.consumer, consumer_names, "consumer"))
    producer.update(check("producer", k.producer, producer_names, "producer"))
    return consumer, producer


class KeyHashCache(StickyPartitioner):
    """The Java client's partitioning (murmur2 of the key, so a key lands where other
    producers put it; null keys stick to a partition per batch) with each key's hash
    remembered: kafka-python computes it in pure Python for every message, and record
    keys repeat.

    >>> from kafka.partitioner.default import DefaultPartitioner
    >>> class Cluster:
    ...     def topics(self): return {"t"}
    ...     def partitions_for_topic(self, t): return {0, 1, 2, 3, 4}
    ...     def available_partitions_for_topic(self, t): return {0, 1, 2, 3, 4}
    >>> keys = [f"pump-{i}".encode() for i in range(50)]
    >>> ours, theirs = KeyHashCache(), DefaultPartitioner()
    >>> all(ours.partition("t", k, k, None, None, Cluster()) == theirs.partition("t", k, k, None, None, Cluster()) for k in keys * 2)
    True
    """

    def __init__(self, size: int = 100_000) -> None:
        super().__init__()
        self._size = size
        self._hash: dict[bytes, int] = {}

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any, serialized_value: Any, cluster: Any) -> int:
        parts = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if not parts:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        h = self._hash.get(serialized_key)  # type: ignore[arg-type]
        if h is None:
            if len(self._hash) >= self._size:
                self._hash.clear()
            h = self._hash[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF  # type: ignore[index]
        ordered = sorted(parts)
        return ordered[h % len(ordered)]


def redacted(options: dict[str, Any]) -> dict[str, Any]:
    """Options fit for a log line: secrets hidden."""
    return {n: ("***" if any(s in n for s in ("password", "token", "secret")) and v is not None else v) for n, v in options.items()}


class Backoff:
    """Exponential backoff with jitter, from the retry settings.

    >>> b = Backoff(KafkaRetrySettings(initial_backoff_seconds=1, max_backoff_seconds=4), rng=random.Random(0))
    >>> [round(b.next(), 2) for _ in range(5)]
    [0.96, 1.88, 3.42, 3.26, 3.51]
    """

    def __init__(self, retry: KafkaRetrySettings, rng: random.Random | None = None) -> None:
        self.retry = retry
        self.attempts = 0
        self.started = time.monotonic()
        self._rng = rng or random.Random()

    def next(self) -> float:
        base = min(self.retry.max_backoff_seconds, self.retry.initial_backoff_seconds * 2**self.attempts)
        self.attempts += 1
        return base * (0.75 + 0.25 * self._rng.random())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def exhausted(self) -> bool:
        limit = self.retry.give_up_after_seconds
        return limit is not None and self.elapsed >= limit

    def reset(self) -> None:
        self.attempts = 0
        self.started = time.monotonic()


def sleep(seconds: float, should_stop: Callable[[], bool]) -> bool:
    """Sleep, waking early when asked to stop; True when it slept the whole time."""
    end = time.monotonic() + seconds
    while not should_stop():
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.1))
    return False


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


class RepeatFilter(logging.Filter):
    """Lets a repeated kafka-python message through at most once per ``every`` seconds,
    and without its traceback (unless kafka-python logs at DEBUG).

    kafka-python logs every failed reconnect at ERROR; while a broker is away that is
    a line every few hundred milliseconds, some with a traceback of its own network
    code (a reset connection). streamad logs its own line per retry. Messages that
    differ only in their numbers are repeats: kafka-python 3 formats some before it
    logs them, such as its event loop's "Task <… at 0x7f…> ran for 0.122s", which a
    window being scored in the same process sets off, dozens of times an hour.
    """

    def __init__(self, prefix: str = "kafka", every: float = 60.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.every = every
        self._last: dict[tuple[str, int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name == self.prefix or record.name.startswith(self.prefix + ".")):
            return True
        key = (record.name, record.levelno, _NUMBERS.sub("#", str(record.msg)))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = now
        if record.exc_info and not logging.getLogger(self.prefix).isEnabledFor(logging.DEBUG):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({describe_error(error)})" if error is not None else record.getMessage()
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


@contextmanager
def quiet_kafka(debug: bool = False) -> Iterator[None]:
    """kafka-python says nothing meanwhile (unless ``debug``): closing clients cancels
    their pending requests, which it logs as errors."""
    logger = logging.getLogger("kafka")
    level = logger.level
    if not debug:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def describe_error(e: BaseException) -> str:
    """A client error in one line: its type, and its message when that adds anything."""
    text = str(e)
    return type(e).__name__ if text in ("", "None", type(e).__name__) or text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"


def retriable(e: BaseException, timeouts: bool = False) -> bool:
    """Whether a client error may pass if tried again (a broker away, a leader moving);
    with ``timeouts``, a request that timed out counts too."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, RetriableError

    kinds: tuple[type[BaseException], ...] = (RetriableError, KafkaConnectionError) + ((KafkaTimeoutError,) if timeouts else ())
    return isinstance(e, kinds) or getattr(e, "retriable", False) is True
