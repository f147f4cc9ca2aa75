"""Replay a finite source through the pipeline and summarise the run.

This is what ``streamad replay`` and ``streamad demo`` run; Kafka runs the same
Pipeline with another source and sink.
"""

from __future__ import annotations

import signal
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamad.app.outputs import default_drift_path, default_output_paths, output_prefix  # noqa: F401 (where they were)
from streamad.config import Settings
from streamad.evaluation import quality
from streamad.judging import PerKeyJudging
from streamad.pipeline import Counts, Observer, ObserverLike, Pipeline, RejectSink, Sink, Source, WindowResult
from streamad.records import Lane


class Recorder(Observer):
    """Keeps, for every scored record, what ``keep`` names: ``ALL`` (offsets, scores,
    thresholds, alarms, labels: for plots and tests) or ``QUALITY``, what the final
    metrics need and only while the stream has labels (the score as float32, the
    label, the alarm: 6 bytes a record, and nothing at all for a stream without labels),
    so that a long replay's memory stays flat (benchmarks/results/soak.md). Labels are
    read here and nowhere upstream."""

    ALL = ("offsets", "scores", "thresholds", "alarms", "labels")
    QUALITY = ("scores", "alarms", "labels")
    #: windows' arrays joined into one block: an array's header (~100 bytes) outweighs a
    #: window of 32 records' 6 bytes each, and held a labelled replay's memory growing
    #: three times as fast (benchmarks/results/soak.md)
    BLOCK = 256

    def __init__(self, keep: tuple[str, ...] = ALL) -> None:
        self.keep = keep
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in self.ALL}
        self._joined: dict[str, int] = dict.fromkeys(self.ALL, 0)  # parts before this index are blocks
        self.has_labels = True
        self._compact = keep == self.QUALITY

    def on_window(self, r: WindowResult) -> None:
        if r.window.labels is None and self.has_labels:
            self.has_labels = False
            if self._compact:  # nothing to compute metrics from: keep nothing
                self._parts = {k: [] for k in self.ALL}
                self._joined = dict.fromkeys(self.ALL, 0)
        if self._compact and not self.has_labels:
            return
        parts = self._parts
        if "offsets" in self.keep:
            parts["offsets"].append(r.window.offsets)
        parts["scores"].append(r.scores.astype(np.float32) if self._compact else r.scores)
        if "thresholds" in self.keep:
            parts["thresholds"].append(np.broadcast_to(r.threshold, len(r.scores)))
        parts["alarms"].append(r.alarms)
        if r.window.labels is not None:
            parts["labels"].append(r.window.labels)
        for k, p in parts.items():
            j = self._joined[k]
            if len(p) - j >= self.BLOCK:
                p[j:] = [np.concatenate(p[j:])]
                self._joined[k] = j + 1

    def array(self, name: str) -> np.ndarray:
        parts = self._parts[name]
        return np.concatenate(parts) if parts else np.empty(0)

    def quality(self) -> dict[str, float] | None:
        if not self.has_labels or not self._parts["labels"]:
            return None
        return quality(self.array("labels"), self.array("scores").astype(np.float64), self.array("alarms"))


@dataclass
class Summary:
    source: str
    counts: Counts
    seconds: float
    detector: str
    window_size: str
    quality: dict[str, float] | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    drift: dict[str, int] | None = None  # drift alarms by kind; None when drift detection is off
    stop_reason: str | None = None  # why an interrupted replay stopped (Ctrl-C, SIGTERM, stdout closed)
    # The source's own count of its records, made apart from parsing them (a file's
    # non-blank lines less the header), so a reader that drops rows cannot reconcile.
    records_in_source: int | None = None
    limit_reached: bool = False
    read_error: str | None = None  # why the input ended early (a corrupt compressed file)

    @property
    def reconciled(self) -> bool:
        c = self.counts
        return c.read == c.scored + c.rejected + c.skipped and (self.records_in_source is None or self.records_in_source == c.read)

    @property
    def records_per_second(self) -> float:
        return self.counts.read / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "source": self.source,
            "detector": self.detector,
            "window_size": self.window_size,
            "read": c.read,
            "scored": c.scored,
            "rejected": c.rejected,
            "rejected_by_code": dict(c.rejected_by_code),
            "skipped": c.skipped,
            "alarms": c.alarms,
            "seconds": self.seconds,
            "records_per_second": self.records_per_second,
            "quality": self.quality,
            "outputs": self.outputs,
            "notes": self.notes,
            "interrupted": self.interrupted,
            "stop_reason": self.stop_reason,
            "drift": self.drift,
            "records_in_source": self.records_in_source,
            "reconciled": self.reconciled,
            "read_error": self.read_error,
        }

    def render(self) -> str:
        c = self.counts
        rows: list[tuple[str, str]] = [
            ("source", self.source),
            ("detector", f"{self.detector} (windows of {self.window_size})"),
            ("records read", f"{c.read:,}"),
        ]
        if self.records_in_source is not None:
            how = "up to --limit, counted apart from the parser" if self.limit_reached else "counted apart from the parser"
            rows.append(("records in source", f"{self.records_in_source:,} ({how})"))
        rows += [
            ("scored", f"{c.scored:,}"),
            ("rejected", f"{c.rejected:,}" + (f"  ({', '.join(f'{k}: {v:,}' for k, v in sorted(c.rejected_by_code.items()))})" if c.rejected else "")),
        ]
        if c.skipped:
            rows.append(("skipped", f"{c.skipped:,} (learned before a restart)"))
        rows.append(("alarms", f"{c.alarms:,}" + (f"  ({c.alarms / c.scored:.2%} of scored)" if c.scored else "")))
        if self.drift is not None:
            total = sum(self.drift.values())
            rows.append(("drift alarms", f"{total:,}" + (f"  ({', '.join(f'{k}: {v:,}' for k, v in sorted(self.drift.items()) if v)})" if total else "")))
        rows.append(("throughput", f"{self.records_per_second:,.0f} records/s ({self.seconds:.2f} s)"))
        if self.quality:
            q = self.quality
            rows += [
                ("labelled records", f"{q['labelled']:,} ({q['anomalies']:,} anomalies)"),
                ("ROC-AUC", f"{q['roc_auc']:.4f}"),
                ("average precision", f"{q['average_precision']:.4f}"),
                ("alarm precision", f"{q['precision']:.4f}"),
                ("alarm recall", f"{q['recall']:.4f}"),
                ("alarm F1", f"{q['f1']:.4f}"),
            ]
        for name, path in self.outputs.items():
            rows.append((name, path))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        if self.reconciled:
            verdict = "yes: read = scored + rejected" + (" + skipped" if c.skipped else "")
            if self.records_in_source is not None:
                verdict += " = records in source"
        elif c.pending:
            verdict = f"NO: {c.pending:,} records unaccounted for"
        else:
            verdict = f"NO: the source holds {self.records_in_source:,} records, {c.read:,} were read"
        lines.append(f"{'reconciled':<{width}}  {verdict}")
        if self.read_error:
            lines.append(f"{'error':<{width}}  {self.read_error}")
        if self.interrupted:
            why = f" ({self.stop_reason})" if self.stop_reason else ""
            lines.append(f"{'note':<{width}}  interrupted{why}: the summary covers the records read until then")
        for note in self.notes:
            lines.append(f"{'note':<{width}}  {note}")
        return "\n".join(lines)


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM during a replay stop it cleanly, not mid-window.

    The signal is noted, and acted on at once only while the replay waits for its source
    (reading, or pacing) — there a record has not been counted yet, so stopping loses
    nothing. Anywhere else the window being processed is finished first. Either way the
    partial windows are drained, the outputs flushed and the summary written. A second
    signal stops at once (``KeyboardInterrupt``), for a replay that does not stop.

    Handlers are installed only in the main thread (Python allows nothing else), and
    the previous ones restored on exit.
    """

    NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def __init__(self) -> None:
        self.signal: int | None = None
        self._waiting = False
        self._previous: dict[int, Any] = {}

    @property
    def reason(self) -> str | None:
        return None if self.signal is None else self.NAMES.get(self.signal, f"signal {self.signal}")

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in self.NAMES:
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (OSError, ValueError):
                    pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None or self._waiting:
            self.signal = self.signal or signum
            raise KeyboardInterrupt
        self.signal = signum

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A stretch where a signal may interrupt at once: nothing is half done in it."""
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


def replay(
    source: Source,
    settings: Settings,
    sink: Sink,
    feature_names: Sequence[str],
    rejects: RejectSink | None = None,
    observers: Iterable[ObserverLike] = (),
    batches: Callable[[Source], Iterable[Any]] | None = None,
    source_name: str = "",
    live: bool | None = None,
    should_stop: Callable[[], str | None] | None = None,
    keep: tuple[str, ...] = Recorder.QUALITY,
) -> tuple[Summary, Recorder]:
    """Run a finite source to its end (or Ctrl-C / SIGTERM) and return the summary and
    the record of the scores (``keep``: what the recorder keeps per record). ``batches`` can wrap the source's iteration (pacing,
    progress); ``live`` (default: the source's own ``live``) says whether windows may
    also close by time, which only a paced replay needs. ``should_stop`` is asked after
    every batch; a reason it returns (say, stdout's reader went away) stops the replay
    like Ctrl-C does."""
    recorder = Recorder(keep)
    timed = event_times(source)
    pipeline = Pipeline(settings, sink, feature_names=feature_names, rejects=rejects, observers=[recorder, *observers], temporal=timed)
    settings = pipeline.settings  # what it runs: detector.name default made concrete for this stream
    stop_reason: str | None = None

    def stop() -> bool:
        nonlocal stop_reason
        if should_stop is not None and stop_reason is None:
            stop_reason = should_stop()
        return signals.signal is not None or stop_reason is not None

    t0 = time.perf_counter()
    with Interrupts() as signals:
        pipeline.run(source if batches is None else _Wrapped(source, batches), should_stop=stop, waiting=signals.waiting, live=live)
        stop_reason = signals.reason or stop_reason
    complete = stop_reason is None
    seconds = time.perf_counter() - t0
    drift: dict[str, int] | None = None
    if settings.drift.enabled:
        drift = {}
        for lm in pipeline.lanes.values():
            if lm.drift is not None:
                for kind, n in lm.drift.counts.items():
                    drift[kind] = drift.get(kind, 0) + n
    summary = Summary(
        source=source_name,
        counts=pipeline.counts,
        seconds=seconds,
        detector=pipeline.model_name,
        window_size=window_description(settings),
        quality=recorder.quality(),
        interrupted=stop_reason is not None,
        drift=drift,
        stop_reason=stop_reason,
    )
    if complete:
        summary.records_in_source = getattr(source, "records_in_file", None)
        summary.limit_reached = bool(getattr(source, "limit_reached", False))
    summary.read_error = getattr(source, "read_error", None)
    summary.notes += list(getattr(source, "notes", ()))
    summary.notes += temporal_notes(settings, pipeline, timed)
    summary.notes += warming_notes(pipeline)
    summary.notes += keys_notes(pipeline)
    return summary, recorder


def event_times(source: Any) -> bool | None:
    """Whether a source's records carry event times: a delimited file with a timestamp
    column, an in-memory source given timestamps (``None``: cannot tell before its
    first batch). ``features.temporal: auto`` turns the temporal stage on for those."""
    inner = getattr(source, "source", source)  # a wrapped source (pacing, progress)
    schema = getattr(inner, "schema", None)
    if schema is not None and hasattr(schema, "timestamp"):
        return schema.timestamp is not None
    if hasattr(inner, "timestamps"):
        return inner.timestamps is not None
    return None


def temporal_notes(settings: Settings, pipeline: Pipeline, timed: bool | None) -> list[str]:
    """Whether the temporal stage ran, and why, when ``auto`` chose."""
    if settings.features.temporal != "auto" or not pipeline.lanes:
        return []
    on = any(lm.model.temporal is not None for lm in pipeline.lanes.values())
    if on:
        return ["temporal features on (features.temporal: auto, and the records carry event times): each record is scored with its key's recent history"]
    why = "the records carry no event times" if timed is False or timed is None else "a checkpoint made without them"
    return [f"temporal features off (features.temporal: auto, and {why}); features.temporal: on scores each record with its recent history"]


def keys_notes(pipeline: Pipeline) -> list[str]:
    """When many keys shared a model that ignores keys, the detectors that do not: on
    SKAB's 35 pumps in one stream one loe-ae (temporal stage on) raises no alarm and ranks
    each pump's anomalies at chance, where a Gaussian per pump (``per-key``, the sensor
    default) finds them (benchmarks/results/hgad_devices.md)."""
    from streamad.detectors.per_key import PerKey

    tables = [lm.detector for lm in pipeline.lanes.values() if isinstance(lm.detector, PerKey)]
    forgot = sum(t.evictions for t in tables)
    if forgot:
        limit = max(t.max_keys for t in tables)
        return [
            f"per-key forgot {forgot:,} keys' models to stay within max_keys={limit:,} (the least recently seen first; a key that "
            "comes back starts afresh): --detector per-key --param max_keys=N keeps more"
        ]
    counts = [lm.model.temporal.n_keys for lm in pipeline.lanes.values() if lm.model.temporal is not None and not lm.detector.uses_keys]
    keys = max(counts, default=0)
    if keys < 2:
        return []
    name = pipeline.model_name
    return [
        f"{keys:,} keys shared one {name} model{' per lane' if len(pipeline.lanes) > 1 else ''}: each key keeps its own recent history, "
        "but every key's records are judged against one normal; when devices run in different regimes, --detector per-key "
        "judges each against its own past, --detector hgad against its own class of one model (README: Many devices on one stream)"
    ]


class _Wrapped:
    """A source whose iteration goes through ``batches`` (pacing, a progress bar)."""

    def __init__(self, source: Source, batches: Callable[[Source], Iterable[Any]]) -> None:
        self.source = source
        self.batches = batches
        self.live = getattr(source, "live", True)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches(self.source))

    def commit(self, offsets: Mapping[Lane, int]) -> None:
        self.source.commit(offsets)


def warming_notes(pipeline: Pipeline) -> list[str]:
    """What held alarms back on a short stream, naming the setting that changes it:
    lanes whose threshold never had the scores it needs (``threshold.warmup_records``),
    lanes that ended on its small-sample estimate, and lanes that ended within the
    detector's own warm-up (its ``score_warmup``), whose alarms came from the
    provisional threshold."""
    lanes = list(pipeline.lanes.values())
    notes = []
    young = [lm for lm in lanes if lm.threshold.warming_up]
    if young:
        seen = min(lm.threshold.learned for lm in young)
        need = young[0].threshold.min_records
        skip = young[0].threshold.skip_first
        skipped = f" (it does not learn the windows that begin within a lane's first {skip:,} records: threshold.skip_first_records)" if skip else ""
        notes.append(
            f"{_which(young, lanes)} had learned {seen:,} of the {need:,} scores it needs before it may raise an alarm{skipped}: "
            "too short a stream for alarms; --warmup (threshold.warmup_records) sets that number"
        )
    early = [lm for lm in lanes if lm.threshold.early]
    if early:
        th = early[0].threshold
        seen, need = min(lm.threshold.learned for lm in early), th.min_records
        level = getattr(th, "level", None)
        # With its scores in, the tail fit may still lack excesses above its level.
        count = (
            f"{seen:,} of the {need:,} scores the threshold proper needs"
            if seen < need or level is None
            else f"{seen:,} scores, too few of them yet above their {level:.0%} quantile for the threshold proper's tail"
        )
        notes.append(
            f"{_which(early, lanes)} was still the small-sample estimate at the end ({count}), "
            "high while the model is young: only what stands far out raised alarms; --warmup (threshold.warmup_records) sets that number"
        )
    provisional = [lm for lm in lanes if not lm.threshold.warming_up and not lm.threshold.early and lm.threshold.provisional]
    if provisional:
        det = provisional[0].detector
        setting = det.warmup_setting()
        span = f" ({setting[0]:,} records)" if setting else ""
        how = f"--detector {det.name} --param {setting[1]} ({setting[2]}) shortens that warm-up" if setting else "a detector with a shorter warm-up alarms sooner"
        notes.append(
            f"{_which(provisional, lanes)} was still the provisional one at the end, fitted to the scores of a detector in its warm-up{span}, "
            f"which run high (fewer alarms): {how}"
        )
    return notes


def _which(some: list[Any], lanes: list[Any]) -> str:
    # A lane with a threshold per key (the sensor default) is described by its most
    # advanced key's (``PerKeyJudging.threshold``): every key's is at most as far.
    judging = some[0].model.judging
    keyed = isinstance(judging, PerKeyJudging) and len(judging.judges) > 1
    if len(lanes) == 1:
        return "every key's threshold" if keyed else "the stream's threshold"
    return f"{len(some)} of {len(lanes)} lanes' thresholds" + (" (every key's)" if keyed else "")


def window_description(settings: Settings) -> str:
    w = settings.window
    grows = w.initial_size is not None and w.initial_size < w.size
    size = f"{w.initial_size} doubling to {w.size}" if grows else str(w.size)
    if settings.record.key is not None and w.keyed_max > w.size:
        # streamad/window.py: records with keys are counted per key.
        return f"{size} records of a key, at most {w.keyed_max} in all"
    return size


def end_offset(source: Any, path: Path) -> int | None:
    """One past the last offset a file source can give, like a Kafka end offset, so that
    lag = end offset − position: the record count + 1 for in-memory and ``.mat`` sources
    (offsets from 1), the line count + 1 for delimited text (offsets are line numbers).
    ``None`` when it cannot be known without consuming the input (a pipe, a device)
    or without decompressing it."""
    if getattr(source, "progress_unit", None) == "records":
        return int(source.progress[1]) + 1
    if getattr(source, "compression", None):
        return None
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
        lines, last = 0, b"\n"
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    return lines + (1 if last != b"\n" else 0) + 1
