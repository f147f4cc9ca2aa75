"""Records of Kafka topics as batches, one per partition and poll, as a consumer group member.

Offsets are committed by hand, only what the pipeline says is done. Partitions move
between workers with their model state:

- revoked (a rebalance, or leaving the group): the ``handoff`` hook processes the
  partitions' partial windows, flushes and checkpoints them, and the returned offsets
  are committed before the partition is given up;
- assigned: the partition is paused until, outside the rebalance callback, its
  committed offset and its checkpoint are read; reading resumes at the later of the
  two (records below a checkpoint were learned and delivered before it was written);
- lost (the group dropped this worker): the partitions are forgotten without a
  checkpoint; their next owner starts from the last checkpoint and commit.

A broker that cannot be reached, refuses or resets connections while the worker
reads is retried with backoff (``kafka.retry``), one log line per attempt.

An offset outside the broker's range of a partition (the topic was re-created, the
broker lost its storage, retention deleted records not yet read) is an *offset reset*:
the committed offset or checkpoint is beyond the partition's high-water mark, the
first record fetched lies below where reading was positioned, the log start has
moved past it, or the topic's id is not the one the partition was read from. It is
logged at ERROR and handled by ``kafka.offset_reset_policy``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from streamad.config import KafkaSettings
from streamad.connectors.kafka.decoder import JsonDecoder
from streamad.connectors.kafka.options import Backoff, describe_error, retriable, sleep
from streamad.errors import StreamadError
from streamad.records import Batch, Lane

log = logging.getLogger("streamad.kafka")

# A commit or offset look-up that takes longer is given up (and made again later) so
# a broker outage does not stall the worker.
COMMIT_TIMEOUT_MS = 5_000
# After this long without partitions, say so (and every NOTE_EVERY seconds after).
QUIET_SECONDS = 15.0
NOTE_EVERY = 30.0
# Polls that do not fail but bring nothing end an outage after this long.
OUTAGE_OVER_SECONDS = 10.0


class OffsetResetError(StreamadError):
    """A partition's committed offset or checkpoint is outside the broker's range and
    ``kafka.offset_reset_policy`` is ``fail``."""


class TopicIds:
    """The id of the topic each partition was last read from, beside the checkpoints
    (``<topic>-<partition>.topic-id`` in ``state.dir``; in memory only without one). A
    topic deleted and created again has a new id even when its offsets look like a
    continuation of the old ones."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._known: dict[tuple[str, int], str] = {}

    def path(self, topic: str, partition: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', topic)}-{partition}.topic-id"

    def get(self, topic: str, partition: int) -> str | None:
        key = (topic, partition)
        if key not in self._known and self.directory is not None:
            try:
                self._known[key] = self.path(topic, partition).read_text().strip()
            except OSError:
                self._known[key] = ""  # none kept: do not look again
        return self._known.get(key) or None

    def put(self, topic: str, partition: int, topic_id: str) -> None:
        if self.get(topic, partition) == topic_id:
            return
        self._known[(topic, partition)] = topic_id
        if self.directory is None:
            return
        path = self.path(topic, partition)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(topic_id + "\n")
            os.replace(tmp, path)
        except OSError as e:
            log.warning("kafka: cannot write %s (%s): a topic re-created while no worker runs is then noticed by its offsets only", path, e)


class KafkaSource:
    """A consumer-group member yielding ``Batch`` objects (``None`` when a poll is empty).

    The pipeline's side is reached through hooks set by the app:
    ``resume_offset(lane)`` (restore a lane; its checkpoint's learned-through offset),
    ``handoff(lanes)`` (drain, checkpoint and forget lanes; the offsets to commit),
    ``drop(lanes)`` (forget lanes without a checkpoint), ``rewind(lane, offset)``
    (after an offset reset: the lane's model goes on from ``offset``, None when not
    known yet, and is checkpointed there), ``on_reset(lane, reason)`` (count an
    offset reset) and ``time_left()`` (seconds left to stop gracefully, None when not
    stopping).
    """

    def __init__(
        self,
        consumer: Any,
        settings: KafkaSettings,
        decoder: JsonDecoder,
        should_stop: Callable[[], bool] = lambda: False,
        poll_timeout_ms: int = 100,
    ) -> None:
        self.consumer = consumer
        self.settings = settings
        self.decoder = decoder
        self.should_stop = should_stop
        self.poll_timeout_ms = poll_timeout_ms
        self.resume_offset: Callable[[Lane], int | None] = lambda lane: None
        self.handoff: Callable[[list[Lane]], Mapping[Lane, int]] = lambda lanes: {}
        self.drop: Callable[[list[Lane]], None] = lambda lanes: None
        self.rewind: Callable[[Lane, int | None], None] = lambda lane, offset: None
        self.on_reset: Callable[[Lane, str], None] = lambda lane, reason: None
        self.time_left: Callable[[], float | None] = lambda: None
        self.topic_ids = TopicIds()
        self._pending: set[Any] = set()  # assigned, paused, not yet positioned
        self._committed: dict[Any, int] = {}
        self._start: dict[Any, int] = {}  # where reading started, for the lag before a first commit
        self._next: dict[Any, int] = {}  # the offset the partition must reach: where reading stands
        self._lag: dict[Lane, int] = {}
        self._error: BaseException | None = None
        self._outage: Backoff | None = None
        self._trouble_at = 0.0
        self._quiet_since = time.monotonic()
        self._noted = 0.0
        self.rebalances = 0
        self.resets = 0

    # -- group membership -----------------------------------------------------------------

    def subscribe(self) -> None:
        from kafka import ConsumerRebalanceListener

        source = self

        class Listener(ConsumerRebalanceListener):
            # Runs on the consumer's IO thread while the main thread waits in poll()
            # (or close()), so the pipeline is never used from two threads at once.
            def on_partitions_revoked(self, revoked: Any) -> None:
                source._revoked(revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                source._assigned(assigned)

            def on_partitions_lost(self, lost: Any) -> None:
                source._lost(lost)

        self.consumer.subscribe(topics=list(self.settings.topics), listener=Listener())

    def _assigned(self, assigned: Any) -> None:
        self.rebalances += 1
        if not assigned:
            log.info("kafka: no partitions assigned to this worker (group %s has more members than partitions?)", self.settings.group_id)
            return
        self._pending |= set(assigned)
        self.consumer.pause(*assigned)
        self._quiet_since = time.monotonic()
        log.info("kafka: assigned %s", _names(assigned))

    def _revoked(self, revoked: Any) -> None:
        revoked = set(revoked)
        active = [tp for tp in revoked if tp not in self._pending]
        self._pending -= revoked
        try:
            if active:
                self._give_up(active)
        finally:
            self._forget(revoked)

    def _give_up(self, active: list[Any]) -> None:
        try:
            offsets = self.handoff([Lane(tp.topic, tp.partition) for tp in active])
        except BaseException as e:  # noqa: BLE001 - raised from poll() on the main thread
            self._error = e
            return
        todo = self._offsets(offsets, set(active))
        if todo:
            # A blocking commit is refused on this thread; the request still goes out
            # before this member's JoinGroup, and the checkpoint already holds the
            # offsets the model learned through should it be lost.
            self.consumer.commit_async(todo, callback=self._committed_async)

    def _lost(self, lost: Any) -> None:
        lost = set(lost)
        log.warning(
            "kafka: lost %s (this worker was dropped from group %s, e.g. a poll came later than max_poll_interval_ms): "
            "their state since the last checkpoint is discarded; the next owner resumes from the last checkpoint and commit",
            _names(lost),
            self.settings.group_id,
        )
        active = [Lane(tp.topic, tp.partition) for tp in lost if tp not in self._pending]
        self._pending -= lost
        self._forget(lost)
        try:
            self.drop(active)
        except BaseException as e:  # noqa: BLE001
            self._error = e

    def _forget(self, tps: set[Any]) -> None:
        lag = dict(self._lag)
        for tp in tps:
            self._committed.pop(tp, None)
            self._start.pop(tp, None)
            self._next.pop(tp, None)
            lag.pop(Lane(tp.topic, tp.partition), None)
        self._lag = lag

    @staticmethod
    def _committed_async(offsets: Any, response: Any) -> None:
        if isinstance(response, BaseException):
            log.warning("kafka: offset commit of given-up partitions failed (%s); their checkpoint keeps what was learned", response)

    def _position_new(self) -> None:
        """Position newly assigned partitions at max(committed, checkpoint) and resume them."""
        if not self._pending:
            return
        assigned = self.consumer.assignment()
        self._pending &= assigned
        todo = sorted(self._pending, key=lambda t: (t.topic, t.partition))
        if not todo:
            return
        try:
            begins = self.consumer.beginning_offsets(todo, timeout_ms=COMMIT_TIMEOUT_MS)
        except Exception as e:  # noqa: BLE001 - retried at the next poll
            log.warning("kafka: cannot ask the broker where %s start, is it reachable? (%s); retrying", _names(todo), describe_error(e))
            return
        for tp in todo:
            lane = Lane(tp.topic, tp.partition)
            try:
                committed = self.consumer.committed(tp, timeout_ms=COMMIT_TIMEOUT_MS)
            except Exception as e:  # noqa: BLE001 - retried at the next poll
                log.warning("kafka: cannot read the committed offset of %s, is the broker reachable? (%s); retrying", lane, describe_error(e))
                return
            learned = self.resume_offset(lane)
            known = [o for o in (committed, learned) if o is not None]
            begin = begins.get(tp)
            current = self._topic_id(tp.topic)
            self._pending.discard(tp)
            if known:
                target = max(known)
                self.consumer.seek(tp, target)
                self._next[tp] = target
                self._committed[tp] = committed if committed is not None else target
                why = f"committed {committed}, checkpoint learned through {learned}"
                if learned is not None and committed is not None and learned > committed:
                    why += ": the last commit did not happen, records the checkpoint holds are not read again"
                log.info("kafka: %s resumes at offset %d (%s)", lane, target, why)
                before = self.topic_ids.get(tp.topic, tp.partition)
                if current is not None and before is not None and before != current:
                    # A new topic of the same name: the first poll, which brings the
                    # partition's high-water mark, handles it (no record is used before).
                    current = None
                elif begin is not None and begin > target:
                    self._reset(tp, "before_start", target, begin=begin)
            else:
                log.info("kafka: %s has no committed offset and no checkpoint: starting at the %s offset", lane, self.settings.auto_offset_reset)
                if self.settings.auto_offset_reset == "earliest" and begin is not None:
                    self._start[tp] = begin
            if current is not None:
                self.topic_ids.put(tp.topic, tp.partition, current)
            self.consumer.resume(tp)

    # -- reading --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch | None]:
        while not self.should_stop():
            self._position_new()
            try:
                polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
            except Exception as e:  # noqa: BLE001 - sorted below
                self._raise_hook_error()
                if not retriable(e, timeouts=True):
                    raise
                self._broker_trouble(e)
                yield None
                continue
            self._raise_hook_error()
            if self._outage is not None and (polled or time.monotonic() - self._trouble_at >= OUTAGE_OVER_SECONDS):
                log.info("kafka: reading again (%.0f s after the first failed poll)", self._outage.elapsed)
                self._outage = None
            polled = self._check_ranges(dict(polled))
            self._update_lag()
            if not polled:
                self._note_quiet()
                yield None
                continue
            self._quiet_since = time.monotonic()
            arrival = time.monotonic()
            for tp, messages in polled.items():
                if tp in self._pending:
                    # Paused partitions return nothing; should a fetch slip through,
                    # read it again once positioned.
                    self.consumer.seek(tp, messages[0].offset)
                    continue
                self._start.setdefault(tp, messages[0].offset)
                self._next[tp] = messages[-1].offset + 1
                yield self.decoder.decode(Lane(tp.topic, tp.partition), messages, arrival)

    def _broker_trouble(self, e: BaseException) -> None:
        """A poll failed for a reason that passes (connection refused or reset, no
        coordinator): wait with backoff and poll again."""
        if self._outage is None:
            self._outage = Backoff(self.settings.retry)
        self._trouble_at = time.monotonic()
        delay = self._outage.next()
        log.warning(
            "kafka: the brokers cannot be reached while reading (%s); polling again in %.1f s (attempt %d, %.0f s so far)",
            describe_error(e),
            delay,
            self._outage.attempts,
            self._outage.elapsed,
        )
        sleep(delay, self.should_stop)

    def _raise_hook_error(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    # -- offset resets --------------------------------------------------------------------

    def _check_ranges(self, polled: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """Find partitions whose position is outside the broker's range; the records
        polled for them are dropped (they are fetched again where the policy says)."""
        for tp in list(self._next):
            if tp in self._pending:
                continue
            expected = self._next[tp]
            messages = polled.get(tp)
            hw = self._highwater(tp)
            current, before = self._topic_id(tp.topic), self.topic_ids.get(tp.topic, tp.partition)
            if current is not None and before is not None and current != before:
                # Deleted and created again since it was last read.
                if hw is None and not messages:
                    continue  # its range is known at the first fetch
                reason, begin = "recreated", None
            elif (hw is not None and hw < expected) or (messages and messages[0].offset < expected):
                # Beyond the end: Tansu answers an empty fetch with the high-water mark;
                # Kafka answers OFFSET_OUT_OF_RANGE and kafka-python restarts the
                # partition at auto_offset_reset, below where it stood.
                reason, begin = "beyond_end", None
            elif messages and messages[0].offset > expected:
                # A gap: transaction markers and compaction make them too; the log
                # start tells whether retention deleted records this worker had not read.
                reason, begin = "before_start", self._beginning(tp)
                if begin is None or begin <= expected:
                    continue
            else:
                continue
            polled.pop(tp, None)
            if not self._reset(tp, reason, expected, begin=begin, end=hw, topic_id=current) and messages:
                # Not handled yet (the broker did not answer): fetch these again.
                self.consumer.seek(tp, messages[0].offset)
        return polled

    def _reset(self, tp: Any, reason: str, expected: int, begin: int | None = None, end: int | None = None, topic_id: str | None = None) -> bool:
        """An offset reset: log it, count it, then stop or move as the policy says;
        False when the broker could not be asked where the partition starts (the check
        is made again at the next poll). ``topic_id`` is kept for the partition once
        the ``rewind`` hook has checkpointed it at its new offset."""
        lane = Lane(tp.topic, tp.partition)
        policy = self.settings.offset_reset_policy
        if begin is None:
            begin = self._beginning(tp)
            if begin is None and policy == "earliest":
                return False
        end = end if end is not None else self._highwater(tp)
        span = f"[{begin if begin is not None else '?'}, {end if end is not None else '?'})"
        start = f"{lane} was to be read from offset {expected} (its committed offset or checkpoint)"
        if reason == "recreated":
            what = f"{start}, but the topic was deleted and created again since (its topic id changed); it holds offsets {span}."
        else:
            where = "beyond the end" if reason == "beyond_end" else "before the start"
            what = (
                f"{start}, {where} of what the broker holds, offsets {span}: was the topic re-created, the broker's "
                "storage lost, or records deleted before they were read?"
            )
        self.resets += 1
        self.on_reset(lane, reason)
        if policy == "fail":
            log.error("kafka: offset reset: %s Stopping (kafka.offset_reset_policy: fail)", what)
            raise OffsetResetError(
                f"kafka: offset reset: {what} kafka.offset_reset_policy is fail; set it to earliest to read the partition "
                "again from its start (or latest to skip to its end)"
            )
        target = begin if policy == "earliest" else end
        log.error("kafka: offset reset: %s Reading it from offset %s (kafka.offset_reset_policy: %s)", what, target, policy)
        self._committed.pop(tp, None)
        if target is None:  # latest, before the high-water mark is known
            self.consumer.seek_to_end(tp)
            self._next.pop(tp, None)
            self._start.pop(tp, None)
        else:
            self.consumer.seek(tp, target)
            self._next[tp] = target
            self._start[tp] = target
        self.rewind(lane, target)
        if topic_id is not None and target is not None:
            # Only now: a checkpoint from before the reset, found with this id, would
            # be taken for one of the new topic.
            self.topic_ids.put(tp.topic, tp.partition, topic_id)
        return True

    def _topic_id(self, topic: str) -> str | None:
        """The topic's id (Kafka 2.8+ metadata; new when a topic is deleted and created
        again), as kafka-python's cluster metadata holds it; None when unknown."""
        try:
            tid = self.consumer._client.cluster.topic_id(topic)
        except Exception:  # noqa: BLE001 - another kafka-python version, or none known yet
            return None
        if tid is None or getattr(tid, "int", 1) == 0:
            return None
        return str(tid)

    def _highwater(self, tp: Any) -> int | None:
        try:
            hw = self.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - unassigned in between
            return None
        return None if hw is None else int(hw)

    def _beginning(self, tp: Any) -> int | None:
        try:
            return int(self.consumer.beginning_offsets([tp], timeout_ms=COMMIT_TIMEOUT_MS)[tp])
        except Exception as e:  # noqa: BLE001
            log.warning("kafka: cannot ask the broker where %s starts (%s); checking again later", Lane(tp.topic, tp.partition), describe_error(e))
            return None

    # -- committing -----------------------------------------------------------------------

    def commit(self, offsets: Mapping[Lane, int]) -> None:
        """Commit offsets the pipeline has finished; a failure is logged, not raised: the
        next checkpoint commits again, and the checkpoint holds what was learned."""
        todo = self._offsets(offsets, self.consumer.assignment() - self._pending)
        if not todo:
            return
        from kafka.errors import CommitFailedError

        timeout_ms = COMMIT_TIMEOUT_MS
        left = self.time_left()
        if left is not None:
            timeout_ms = int(max(100.0, min(COMMIT_TIMEOUT_MS, left * 1000)))
        try:
            self.consumer.commit(todo, timeout_ms=timeout_ms)
        except CommitFailedError as e:
            log.warning("kafka: offset commit refused (%s): the group is rebalancing; the partitions' next owner resumes from the checkpoint", e)
        except Exception as e:  # noqa: BLE001 - broker away: commit again at the next checkpoint
            log.warning("kafka: offset commit failed, is the broker reachable? (%s); committing again at the next checkpoint", describe_error(e))
        else:
            for tp, om in todo.items():
                self._committed[tp] = om.offset

    def _offsets(self, offsets: Mapping[Lane, int], allowed: set[Any]) -> dict[Any, Any]:
        from kafka import OffsetAndMetadata, TopicPartition

        out = {}
        for lane, off in offsets.items():
            tp = TopicPartition(lane.stream, lane.partition)
            if tp not in allowed:
                continue
            done = self._committed.get(tp)
            # A lane restored from a checkpoint may sit below a commit that also covers
            # dead letters after its last window: never move a commit backwards.
            if done is not None and off <= done:
                continue
            out[tp] = OffsetAndMetadata(int(off), "", -1)
        return out

    # -- lag and liveness -----------------------------------------------------------------

    def lag(self) -> dict[Lane, int]:
        """Records of each partition assigned to this worker that are not committed yet:
        the high-water mark from the latest fetch minus the committed offset (before a
        partition's first commit, minus where reading started: a partition not read yet
        counts in full). The high-water mark comes with every fetch response, empty or
        not (``end_offsets()`` is not used: Tansu answers it wrongly). A partition that
        moved to another worker is not in it. Safe to call from another thread."""
        return dict(self._lag)

    def _update_lag(self) -> None:
        lag = {}
        for tp in self.consumer.assignment():
            if tp in self._pending:
                continue
            hw = self._highwater(tp)
            if hw is None:
                continue
            base = self._committed.get(tp, self._start.get(tp))
            if base is None:
                # Started at auto_offset_reset latest: the end at the first fetch.
                base = self._start[tp] = hw
            lag[Lane(tp.topic, tp.partition)] = max(0, hw - base)
        self._lag = lag

    def _note_quiet(self) -> None:
        now = time.monotonic()
        if self.consumer.assignment() or now - self._quiet_since < QUIET_SECONDS or now - self._noted < NOTE_EVERY:
            return
        self._noted = now
        missing: list[str] = []
        try:
            known = self.consumer.topics()
            missing = [t for t in self.settings.topics if t not in known]
        except Exception as e:  # noqa: BLE001
            log.warning("kafka: no partitions assigned for %.0f s and the brokers cannot be asked for topics (%s)", now - self._quiet_since, describe_error(e))
            return
        if missing:
            log.warning("kafka: input topic(s) %s do not exist; waiting for them", ", ".join(missing))
        else:
            log.warning(
                "kafka: no partitions assigned for %.0f s: waiting for group %s (more workers than partitions, or the coordinator is unreachable)",
                now - self._quiet_since,
                self.settings.group_id,
            )

    def close(self, timeout_ms: int = 5_000) -> None:
        try:
            self.consumer.close(autocommit=False, timeout_ms=timeout_ms)
        except Exception as e:  # noqa: BLE001
            log.warning("kafka: closing the consumer: %s", describe_error(e))


def _names(tps: Any) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps, key=lambda t: (t.topic, t.partition)))
