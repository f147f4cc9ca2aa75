"""The one code path from records to detections, for file replay and Kafka alike.

Per lane (a file, or a Kafka partition): records are buffered into windows; each
window is scaled with the statistics from before it, scored by the detector as it was
before it, thresholded, attributed and emitted; only then do the scaler, detector and
threshold learn from it. A checkpoint flushes the sinks first, then saves each
lane's state together with the offset it has learned through, and only then are
input offsets committed, so nothing is acknowledged before it is delivered.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from streamad.config import Settings
from streamad.detection import DetectionBatch
from streamad.detectors import Detector, LearnReport
from streamad.drift import DriftEvent, DriftMonitor, DriftStatus
from streamad.factory import apply_threads, detector_name, for_stream
from streamad.model import Explanation, Model, Verdict
from streamad.records import Batch, Lane, Reject
from streamad.scaling import Scaler, StandardScaler
from streamad.state import StateStore
from streamad.temporal import TemporalStats
from streamad.threshold import Threshold
from streamad.window import WindowBuffer

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("streamad")


class _End(enum.Enum):
    """The source has no more items (an enum member, so that ``is _END`` narrows a type)."""

    END = 0


_END: Final = _End.END


# -- the outside world, as the pipeline sees it ---------------------------------------------


class Source(Protocol):
    """Yields batches; ``None`` means "nothing right now" so time-limited windows can close.

    A source whose records are all at hand (a file replayed as fast as possible) sets
    ``live = False``: its windows close by count only, so results never depend on how
    fast the machine is. Without the attribute a source is taken as live.
    """

    def __iter__(self) -> Iterator[Batch | None]: ...

    def commit(self, offsets: Mapping[Lane, int]) -> None:
        """Record that every offset below ``offsets[lane]`` is fully handled."""
        ...


class Sink(Protocol):
    def write(self, detections: DetectionBatch) -> None: ...

    def flush(self) -> None:
        """Block until everything written is durable or acknowledged; raise if it is not."""
        ...

    def close(self) -> None: ...


class RejectSink(Protocol):
    def write(self, rejects: Sequence[Reject]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class WindowResult:
    """Everything known about one processed window; observers (metrics, drift,
    evaluation, plots) read it."""

    lane: Lane
    window: Batch
    scaled: np.ndarray
    scores: np.ndarray
    threshold: float | np.ndarray  # per record with a threshold per key
    alarms: np.ndarray
    report: LearnReport
    seconds: float
    drift: DriftStatus | None = None
    temporal: TemporalStats | None = None  # the lane's key table after the window (temporal stage on)


class Observer:
    """Hooks for metrics, evaluation and plotting; every method is optional."""

    def on_batch(self, batch: Batch) -> None: ...

    def on_rejects(self, rejects: Sequence[Reject]) -> None: ...

    def on_window(self, result: WindowResult) -> None: ...

    def on_checkpoint(self, lanes: Sequence[Lane]) -> None: ...


class ObserverLike(Protocol):
    """What the pipeline calls on an observer: the hooks of `Observer`, on a subclass
    or on any object that has all four (`DriftLog`, `MetricsObserver`)."""

    def on_batch(self, batch: Batch) -> None: ...

    def on_rejects(self, rejects: Sequence[Reject]) -> None: ...

    def on_window(self, result: WindowResult) -> None: ...

    def on_checkpoint(self, lanes: Sequence[Lane]) -> None: ...


@dataclass
class Counts:
    read: int = 0
    scored: int = 0
    rejected: int = 0
    skipped: int = 0  # already learned before a restart; delivered then
    alarms: int = 0
    windows: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.read - self.scored - self.rejected - self.skipped


# -- per-lane model -----------------------------------------------------------------------------


class LaneModel:
    """The model and window buffer of one lane, and how far it has learned."""

    STATE_VERSION = 1

    def __init__(
        self, lane: Lane, settings: Settings, feature_names: Sequence[str], clock: Callable[[], float], model: Model | None = None
    ) -> None:
        self.lane = lane
        self.settings = settings
        self.feature_names = tuple(feature_names)
        self.model = model if model is not None else Model.from_settings(settings)
        self.model.feature_names = self.feature_names
        w = settings.window
        self.buffer = WindowBuffer(w.size, w.max_wait_seconds, clock=clock, initial_size=w.initial_size, max_records=w.keyed_max)
        self.drift = DriftMonitor(lane, self.feature_names, settings.drift) if settings.drift.enabled else None
        self.next_offset: int | None = None  # first offset not yet learned
        self.read_offset: int | None = None  # one past the highest offset seen
        self.learned = 0

    @property
    def detector(self) -> Detector:
        return self.model.detector

    @property
    def scaler(self) -> Scaler:
        return self.model.scaler

    @property
    def stats(self) -> StandardScaler:
        return self.model.stats

    @property
    def threshold(self) -> Threshold:
        return self.model.threshold

    @property
    def commit_offset(self) -> int | None:
        """Every record below this offset is delivered (scored or dead-lettered)."""
        first = self.buffer.first_offset
        return first if first is not None else self.read_offset

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": self.STATE_VERSION,
            "lane": {"stream": self.lane.stream, "partition": self.lane.partition},
            "features": list(self.feature_names),
            "detector_name": self.detector.name,
            **self.model.state_dict(),  # detector, scaler, stats, threshold, temporal...
            "next_offset": self.next_offset,
            "learned": self.learned,
            "window_size": self.buffer.size,
            "drift": None if self.drift is None else self.drift.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != self.STATE_VERSION:
            raise ValueError(f"checkpoint version {state.get('version')!r} is not {self.STATE_VERSION}")
        if tuple(state["features"]) != self.feature_names:
            raise ValueError(f"checkpoint was made for features {state['features']}, not {list(self.feature_names)}")
        if state["detector_name"] != self.detector.name:
            raise ValueError(f"checkpoint holds detector {state['detector_name']!r}, configured is {self.detector.name!r}")
        self.model.load_state_dict(state)
        self.next_offset = state["next_offset"]
        self.read_offset = self.next_offset
        self.learned = int(state["learned"])
        # Where the window sizes had grown to (full size for checkpoints that predate it).
        self.buffer.size = min(int(state.get("window_size", self.buffer.max_size)), self.buffer.max_size)
        if self.drift is not None and state.get("drift") is not None:
            self.drift.load_state_dict(state["drift"])

    def lasting_states(self, lasting: Sequence[tuple[Any, int]], window: Batch) -> tuple[DriftEvent, ...]:
        """The drift events of the keys whose lasting state the model began to adopt with
        ``window`` (each with its records flagged in a row)."""
        at = int(window.offsets[-1])
        t = None if window.timestamps is None else float(window.timestamps[-1])
        limit = float(self.model.judging.adopt_after or 0)  # the model's own (a detect() model may set another)
        return tuple(DriftEvent(self.lane, "state", "adopted", float(run), limit, at, event_time=t, key=key) for key, run in lasting)

    def on_drift(self, events: Sequence[DriftEvent]) -> None:
        """Let the model react to drift as configured (``drift.action``)."""
        for kind in sorted({e.kind for e in events if e.action != "none"}):
            action = self.settings.drift.action
            if action in ("reopen_warmup", "reopen_warmup_and_reset_threshold"):
                self.detector.on_drift(kind)
            if action in ("reset_threshold", "reopen_warmup_and_reset_threshold"):
                self.model.judging.reset()


# -- the pipeline --------------------------------------------------------------------------------


def warm_kernels(settings: Settings) -> None:
    """Load the compiled loops every window runs (the histograms', the drift tests', the
    Gaussians' inverse) from numba's cache: at start-up, not in the first window."""
    from streamad import histogram_kernel
    from streamad.learning import gaussian_kernel

    histogram_kernel.warm()
    gaussian_kernel.warm()
    if settings.drift.enabled:
        from streamad.drift import kernel

        kernel.warm()


class Pipeline:
    """Records in, detections out; see the module docstring for the order of things."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        feature_names: Sequence[str] | None = None,
        rejects: RejectSink | None = None,
        observers: Iterable[ObserverLike] = (),
        store: StateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        model: Callable[[Lane], Model] | None = None,
        temporal: bool | None = None,
    ) -> None:
        """``model`` builds a lane's model (default: ``Model.from_settings``).
        ``temporal`` is what ``features.temporal: auto`` means for a lane without a
        checkpoint (a checkpoint keeps the choice it was made with): on or off, or
        ``None`` to decide by the lane's first batch (on when it carries event times).
        The same choice says what ``detector.name: default`` runs on the lane
        (``factory.for_stream``: the sensor default when the stage is on, ``loe-ae``
        otherwise); ``settings`` is what a lane runs when ``temporal`` is known."""
        self.requested = settings  # as configured: ``default`` is made concrete per lane
        settings = for_stream(settings, temporal)
        self.settings = settings
        self._new_model = model
        self.temporal = temporal
        self.sink = sink
        self.rejects = rejects
        self.observers = list(observers)
        self.store = store
        self.clock = clock
        self.feature_names: tuple[str, ...] | None = tuple(feature_names) if feature_names is not None else None
        self.lanes: dict[Lane, LaneModel] = {}
        self.counts = Counts()
        self.model_name = detector_name(settings)
        self._last_checkpoint = clock()
        apply_threads(settings)
        warm_kernels(settings)

    # -- lanes ---------------------------------------------------------------------------

    def lane(self, lane: Lane, n_features: int | None = None, batch: Batch | None = None) -> LaneModel:
        """The model of a lane, restored from the state store when it has a checkpoint
        (``batch``: its first records, which decide ``features.temporal: auto``)."""
        lm = self.lanes.get(lane)
        if lm is not None:
            return lm
        if self.feature_names is None:
            if n_features is None:
                raise ValueError("feature names are unknown")
            self.feature_names = tuple(f"x{i}" for i in range(n_features))
        state = self.store.load(lane) if self.store is not None else None
        settings = self.settings
        if self._new_model is not None:
            model = self._new_model(lane)
        else:
            timed = self._temporal(state, batch)
            settings = self._lane_settings(state, timed)
            model = Model.from_settings(settings, temporal=timed)
        lm = LaneModel(lane, settings, self.feature_names, self.clock, model)
        self.model_name = lm.detector.name
        if state is not None:
            lm.load_state_dict(state)
            log.info("restored %s from checkpoint: learned %d records, next offset %s", lane, lm.learned, lm.next_offset)
        self.lanes[lane] = lm
        return lm

    def _lane_settings(self, state: Mapping[str, Any] | None, timed: bool) -> Settings:
        """What a lane runs: ``detector.name: default`` made concrete for it. A checkpoint
        keeps the detector it was made with, as it keeps the temporal stage (one made by
        an earlier sensor default holds ``loe-ae`` or ``gaussian``, and goes on with it:
        ``factory.FORMER_SENSOR_DEFAULTS``)."""
        held = None if state is None else state.get("detector_name")
        return for_stream(self.requested, timed, held=held)

    def _temporal(self, state: Mapping[str, Any] | None, batch: Batch | None) -> bool:
        """What ``features.temporal: auto`` means for a new lane."""
        if state is not None:
            return state.get("temporal") is not None
        if self.temporal is not None:
            return self.temporal
        return batch is not None and batch.timestamps is not None

    def resume_offset(self, lane: Lane) -> int | None:
        """Where a lane should resume reading: the checkpoint's learned-through offset.

        Before the feature names are known (a source that infers them from its first
        record), a lane's checkpoint fixes them: the model was built for those."""
        if self.store is None:
            return None
        if self.feature_names is None and lane not in self.lanes:
            state = self.store.load(lane)
            if state is None:
                return None
            self.feature_names = tuple(state["features"])
            log.info("feature names from the checkpoint of %s: %s", lane, ", ".join(self.feature_names))
        return self.lane(lane).next_offset

    def release(self, lanes: Iterable[Lane]) -> None:
        """Forget lanes after they were drained and checkpointed (a partition moved away)."""
        for lane in lanes:
            self.lanes.pop(lane, None)

    # -- processing ------------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        """Take one batch of a lane: dead-letter its rejects, buffer its records, and
        process every window that fills up."""
        lm = self.lane(batch.lane, batch.n_features, batch)
        rejects = batch.rejects
        n_in = len(batch) + len(rejects)
        last = max(int(batch.offsets[-1]) if len(batch) else -1, max((r.offset for r in rejects), default=-1))
        if lm.next_offset is not None:
            # Already learned before a restart, and delivered before that checkpoint.
            seen = batch.offsets < lm.next_offset
            if seen.any():
                self.counts.skipped += int(seen.sum())
                batch = batch.select(~seen)
            old = [r for r in rejects if r.offset < lm.next_offset]
            if old:
                self.counts.skipped += len(old)
                rejects = [r for r in rejects if r.offset >= lm.next_offset]
        self.counts.read += n_in
        if last >= 0:
            lm.read_offset = max(lm.read_offset or 0, last + 1)
        if rejects:
            self._reject(rejects)
        if len(batch) == 0:
            return
        if batch.n_features != len(lm.feature_names):
            raise ValueError(f"{batch.lane}: batch has {batch.n_features} features, expected {len(lm.feature_names)}")
        for obs in self.observers:
            obs.on_batch(batch)
        for window in lm.buffer.add(batch):
            self._process_window(lm, window)

    def _reject(self, rejects: Sequence[Reject]) -> None:
        self.counts.rejected += len(rejects)
        by = self.counts.rejected_by_code
        for r in rejects:
            by[r.code] = by.get(r.code, 0) + 1
        if self.rejects is not None:
            self.rejects.write(rejects)
        for obs in self.observers:
            obs.on_rejects(rejects)

    def _process_window(self, lm: LaneModel, window: Batch) -> None:
        t0 = time.perf_counter()
        model = lm.model
        evicted = model.temporal.evictions if model.temporal is not None else 0
        verdict = model.judge(window.X, window.keys, window.timestamps)
        Xs, scores, thr, alarms = verdict.scaled, verdict.scores, verdict.threshold, verdict.alarms
        emit = alarms if self.settings.output.emit == "alarms" else np.ones(len(scores), dtype=bool)
        if emit.any():
            self.sink.write(self._detections(lm, window, verdict, emit))
        report = model.learn(window.X, scores, window.keys, window.timestamps, verdict=verdict)
        lm.next_offset = int(window.offsets[-1]) + 1
        lm.learned += len(window)
        n_alarms = int(alarms.sum())
        self.counts.scored += len(window)
        self.counts.alarms += n_alarms
        self.counts.windows += 1
        lasting = lm.lasting_states(report.lasting, window) if report.lasting else ()
        drift = None
        if lm.drift is not None:
            drift = lm.drift.update(window, scores, report.warmup, also=lasting)
            if drift.events:
                lm.on_drift(drift.events)
        elif lasting:
            # Without a drift monitor the model still adopts lasting states: a device's
            # alarms stop, and the operator is told which (logged, counted, written).
            drift = DriftStatus(events=lasting)
        temporal = None if model.temporal is None else model.temporal.stats(evicted)
        result = WindowResult(lm.lane, window, Xs, scores, thr, alarms, report, time.perf_counter() - t0, drift, temporal)
        for obs in self.observers:
            obs.on_window(result)

    def _detections(self, lm: LaneModel, window: Batch, verdict: Verdict, emit: np.ndarray) -> DetectionBatch:
        scores, thr, alarms = verdict.scores, verdict.threshold, verdict.alarms
        idx = np.flatnonzero(emit)
        k = self.settings.output.top_features
        top: list[list[Explanation]] = [[] for _ in idx]
        alarm_pos = np.flatnonzero(alarms[idx])
        if k and len(alarm_pos):
            # Shares over the source features; with temporal context, each with how it behaved.
            explained = lm.model.explain(verdict, idx[alarm_pos], k)
            for j, p in enumerate(alarm_pos):
                top[p] = explained[j]
        return DetectionBatch(
            lane=lm.lane,
            offsets=window.offsets[idx],
            keys=None if window.keys is None else window.keys[idx],
            timestamps=None if window.timestamps is None else window.timestamps[idx],
            scores=scores[idx],
            threshold=thr if isinstance(thr, float) else thr[idx],
            is_anomaly=alarms[idx],
            tail_probability=lm.model.tail_probability(scores[idx], None if window.keys is None else window.keys[idx]),
            top_features=top,
            model=self.model_name,
            model_version=lm.detector.version,
        )

    def tick(self, now: float | None = None) -> None:
        """Close windows that have waited their time limit."""
        now = self.clock() if now is None else now
        for lm in list(self.lanes.values()):
            if lm.buffer.due(now):
                self._process_window(lm, lm.buffer.flush())

    def drain(self, lanes: Iterable[Lane] | None = None) -> None:
        """Process every partial window (end of input, shutdown, partitions revoked)."""
        for lane in list(self.lanes) if lanes is None else list(lanes):
            lm = self.lanes.get(lane)
            if lm is not None and len(lm.buffer):
                self._process_window(lm, lm.buffer.flush())

    def checkpoint(self, lanes: Iterable[Lane] | None = None) -> dict[Lane, int]:
        """Flush sinks, save lane states; return the offsets that are now safe to commit."""
        self.sink.flush()
        if self.rejects is not None:
            self.rejects.flush()
        chosen = [self.lanes[l] for l in (self.lanes if lanes is None else lanes) if l in self.lanes]
        offsets: dict[Lane, int] = {}
        for lm in chosen:
            if self.store is not None and lm.next_offset is not None:
                self.store.save(lm.lane, lm.state_dict())
            off = lm.commit_offset
            if off is not None:
                offsets[lm.lane] = off
        self._last_checkpoint = self.clock()
        for obs in self.observers:
            obs.on_checkpoint([lm.lane for lm in chosen])
        return offsets

    def checkpoint_due(self) -> bool:
        return self.clock() - self._last_checkpoint >= self.settings.state.checkpoint_interval_seconds

    def run(
        self,
        source: Source,
        should_stop: Callable[[], Any] | None = None,
        waiting: Callable[[], AbstractContextManager[Any]] = nullcontext,
        live: bool | None = None,
    ) -> Counts:
        """Drive the pipeline from a source until it ends or ``should_stop()`` is true;
        the last windows are processed and checkpointed before returning.

        ``waiting()`` wraps each wait for the source's next item: a ``KeyboardInterrupt``
        raised there (a signal handler that stops at once while nothing is half done)
        ends the run like ``should_stop``. One raised anywhere else is not caught: the
        run stops at once, without draining. ``live`` (default: the source's own) says
        whether windows may also close by time."""
        live = getattr(source, "live", True) if live is None else live
        stream = iter(source)
        try:
            while True:
                try:
                    with waiting():
                        item = next(stream, _END)
                except KeyboardInterrupt:
                    break
                if item is _END:
                    break
                if item is not None:
                    self.process(item)
                if live:
                    self.tick()
                if self.checkpoint_due():
                    source.commit(self.checkpoint())
                if should_stop is not None and should_stop():
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # a generator stopped early: let it release its file now
        self.drain()
        source.commit(self.checkpoint())
        return self.counts


# -- a DataFrame through the pipeline --------------------------------------------------------


class _Collected:
    """Detection batches and rejects of one run, kept in memory."""

    def __init__(self) -> None:
        self.batches: list[DetectionBatch] = []
        self.rejects: list[Reject] = []

    def write(self, items: Any) -> None:
        if isinstance(items, DetectionBatch):
            self.batches.append(items)
        else:
            self.rejects.extend(items)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def detect(
    data: Any,
    model: Model | None = None,
    window: int | None = None,
    initial_window: int | None = 8,
    key: str | None = None,
    timestamp: str | None = None,
) -> pd.DataFrame:
    """Run ``data`` through a pipeline whose one lane runs ``model`` (default: a new
    ``Model()``, with the temporal stage when ``timestamp`` names event times, as a
    replay would run), prequentially: each window of records is scored by the model as
    it was before the window, then learned: windows of ``window`` records (of a key,
    with keys), ``initial_window`` first and doubling; default the model's
    (``Model.window_size``: 32 for the sensor default, else 256).

    ``data`` is a DataFrame (its numeric columns are the features, or the columns the
    model was first given), an array or a sequence of records. Returns one row per input
    row, in order, with ``score``, ``threshold``, ``is_anomaly``, ``tail_probability``,
    ``top_features`` (name and share; with a temporal stage, also the behaviour and a
    description) and ``rejected`` (why a row with a missing or non-finite value was not
    scored, else None). The model keeps what it learned, so a second call goes on where
    the first ended. ``key`` and ``timestamp`` name a DataFrame's key and event-time
    columns (never features), for a model with a temporal stage
    (``Model(temporal=True)``): each key's history is its own.

    >>> import numpy as np
    >>> X = np.random.default_rng(1).normal(size=(1500, 2))
    >>> X[700, 1] = np.nan
    >>> out = detect(X, Model("gaussian"))
    >>> len(out), out.loc[700, "rejected"]
    (1500, "non-finite value nan in field 'x1'")
    """
    import pandas as pd

    from streamad.sources import ArraySource

    model = Model(temporal=timestamp is not None) if model is None else model
    window = model.window_size if window is None else window

    keys: np.ndarray | None = None
    stamps: np.ndarray | None = None
    if (key is not None or timestamp is not None) and not isinstance(data, pd.DataFrame):
        raise TypeError("key and timestamp name columns of a DataFrame")
    if isinstance(data, pd.DataFrame):
        if key is not None:
            keys = data[key].to_numpy(dtype=object)
        if timestamp is not None:
            col = data[timestamp]
            if pd.api.types.is_numeric_dtype(col):
                stamps = col.to_numpy(dtype=np.float64)
            else:
                stamps = (pd.to_datetime(col, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
        if model.feature_names is None:
            roles = {key, timestamp}
            model.feature_names = tuple(str(c) for c in data.select_dtypes(include="number").columns if c not in roles)
        missing = [c for c in model.feature_names if c not in data.columns]
        if missing:
            raise KeyError(f"column(s) {missing} missing; the model was first given {list(model.feature_names)}")
        X = data[list(model.feature_names)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        index = data.index
    else:
        X = model._matrix(data)
        index = pd.RangeIndex(len(X))
    names = model.feature_names or tuple(f"x{i}" for i in range(X.shape[1] if X.ndim == 2 else 0))
    settings = Settings.model_validate(
        {"window": {"size": window, "initial_size": initial_window}, "drift": {"enabled": False}, "output": {"emit": "all"}}
    )
    out = _Collected()
    source = ArraySource(X, feature_names=names, keys=keys, timestamps=stamps)
    Pipeline(settings, out, feature_names=names, rejects=out, model=lambda lane: model).run(source)
    n = len(X)
    score = np.full(n, np.nan)
    threshold = np.full(n, np.nan)
    alarm = np.zeros(n, dtype=bool)
    tail = np.full(n, np.nan)
    top: list[list[Explanation]] = [[] for _ in range(n)]
    rejected: list[str | None] = [None] * n
    for b in out.batches:
        rows = b.offsets - 1  # ArraySource offsets count from 1
        score[rows] = b.scores
        threshold[rows] = b.threshold
        alarm[rows] = b.is_anomaly
        tail[rows] = b.tail_probability
        for r, feats in zip(rows.tolist(), b.top_features):
            top[r] = list(feats)
    for r in out.rejects:
        rejected[r.offset - 1] = r.reason
    return pd.DataFrame(
        {"score": score, "threshold": threshold, "is_anomaly": alarm, "tail_probability": tail, "top_features": top, "rejected": rejected},
        index=index,
    )
