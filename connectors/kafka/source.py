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
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, Mapping

from streamad.config import KafkaSettings
from streamad.records import Batch, Lane

from connectors.kafka.decoder import JsonDecoder

log = logging.getLogger("streamad.kafka")

# A commit that takes longer is given up (and made again at the next checkpoint) so a
# broker outage does not stall the worker.
COMMIT_TIMEOUT_MS = 5_000
# After this long without partitions, say so (and every NOTE_EVERY seconds after).
QUIET_SECONDS = 15.0
NOTE_EVERY = 30.0


class KafkaSource:
    """A consumer-group member yielding ``Batch`` objects (``None`` when a poll is empty).

    The pipeline's side is reached through three hooks set by the app:
    ``resume_offset(lane)`` (restore a lane; its checkpoint's learned-through offset),
    ``handoff(lanes)`` (drain, checkpoint and forget lanes; the offsets to commit) and
    ``drop(lanes)`` (forget lanes without a checkpoint).
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
        self._pending: set[Any] = set()  # assigned, paused, not yet positioned
        self._committed: dict[Any, int] = {}
        self._start: dict[Any, int] = {}  # first offset read, for the lag before a first commit
        self._expect: dict[Any, int] = {}  # where reading was positioned, until the first record
        self._lag: dict[Lane, int] = {}
        self._error: BaseException | None = None
        self._quiet_since = time.monotonic()
        self._noted = 0.0
        self.rebalances = 0

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
        for tp in tps:
            self._committed.pop(tp, None)
            self._start.pop(tp, None)
            self._expect.pop(tp, None)
            self._lag.pop(Lane(tp.topic, tp.partition), None)

    @staticmethod
    def _committed_async(offsets: Any, response: Any) -> None:
        if isinstance(response, BaseException):
            log.warning("kafka: offset commit of given-up partitions failed (%s); their checkpoint keeps what was learned", response)

    def _position_new(self) -> None:
        """Position newly assigned partitions at max(committed, checkpoint) and resume them."""
        if not self._pending:
            return
        assigned = self.consumer.assignment()
        for tp in sorted(self._pending, key=lambda t: (t.topic, t.partition)):
            if tp not in assigned:
                self._pending.discard(tp)
                continue
            lane = Lane(tp.topic, tp.partition)
            try:
                committed = self.consumer.committed(tp, timeout_ms=COMMIT_TIMEOUT_MS)
            except Exception as e:  # noqa: BLE001 - retried at the next poll
                log.warning("kafka: cannot read the committed offset of %s, is the broker reachable? (%s); retrying", lane, _describe(e))
                return
            learned = self.resume_offset(lane)
            known = [o for o in (committed, learned) if o is not None]
            if known:
                target = max(known)
                self.consumer.seek(tp, target)
                self._expect[tp] = target
                self._committed[tp] = committed if committed is not None else target
                why = f"committed {committed}, checkpoint learned through {learned}"
                if learned is not None and committed is not None and learned > committed:
                    why += ": the last commit did not happen, records the checkpoint holds are not read again"
                log.info("kafka: %s resumes at offset %d (%s)", lane, target, why)
            else:
                log.info("kafka: %s has no committed offset and no checkpoint: starting at the %s offset", lane, self.settings.auto_offset_reset)
            self._pending.discard(tp)
            self.consumer.resume(tp)

    # -- reading --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch | None]:
        while not self.should_stop():
            self._position_new()
            polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
            self._raise_hook_error()
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
                expect = self._expect.pop(tp, None)
                if expect is not None and messages[0].offset < expect:
                    log.error(
                        "kafka: %s[%d] restarted at offset %d, below %d where it was positioned: the committed offset or "
                        "checkpoint is past the end of the partition (was the topic recreated? then clear state.dir)",
                        tp.topic,
                        tp.partition,
                        messages[0].offset,
                        expect,
                    )
                yield self.decoder.decode(Lane(tp.topic, tp.partition), messages, arrival)

    def _raise_hook_error(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def commit(self, offsets: Mapping[Lane, int]) -> None:
        """Commit offsets the pipeline has finished; a failure is logged, not raised: the
        next checkpoint commits again, and the checkpoint holds what was learned."""
        todo = self._offsets(offsets, self.consumer.assignment() - self._pending)
        if not todo:
            return
        from kafka.errors import CommitFailedError

        try:
            self.consumer.commit(todo, timeout_ms=COMMIT_TIMEOUT_MS)
        except CommitFailedError as e:
            log.warning("kafka: offset commit refused (%s): the group is rebalancing; the partitions' next owner resumes from the checkpoint", e)
        except Exception as e:  # noqa: BLE001 - broker away: commit again at the next checkpoint
            log.warning("kafka: offset commit failed, is the broker reachable? (%s); committing again at the next checkpoint", _describe(e))
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
        """Records per assigned partition not yet committed: the high-water mark from the
        last fetch minus the committed offset (what `kafka-consumer-groups` shows; before
        a partition's first commit, minus where reading started). The high-water mark
        comes with every fetch response (``end_offsets()`` is not used: Tansu answers it
        wrongly). Safe to call from another thread (a metrics scrape)."""
        return dict(self._lag)

    def _update_lag(self) -> None:
        lag = {}
        for tp in self.consumer.assignment():
            base = self._committed.get(tp, self._start.get(tp))
            if base is None:
                continue
            try:
                hw = self.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - unassigned in between
                continue
            if hw is not None:
                lag[Lane(tp.topic, tp.partition)] = max(0, int(hw) - base)
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
            log.warning("kafka: no partitions assigned for %.0f s and the brokers cannot be asked for topics (%s)", now - self._quiet_since, e)
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
            log.warning("kafka: closing the consumer: %s", e)


def _describe(e: BaseException) -> str:
    text = str(e)
    return type(e).__name__ if text in ("", "None", type(e).__name__) or text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"


def _names(tps: Any) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps, key=lambda t: (t.topic, t.partition)))
