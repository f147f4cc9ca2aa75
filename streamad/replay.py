"""Replay a finite source through the pipeline and summarise the run.

This is what ``streamad replay`` and ``streamad demo`` run; Kafka runs the same
Pipeline with another source and sink.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from streamad.config import Settings
from streamad.evaluation import quality
from streamad.pipeline import Counts, Observer, Pipeline, RejectSink, Sink, Source, WindowResult


class Recorder(Observer):
    """Keeps every scored record's offset, score, threshold, alarm and label (for the
    final metrics and plots; labels are read here and nowhere upstream)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in ("offsets", "scores", "thresholds", "alarms", "labels")}
        self.has_labels = True

    def on_window(self, r: WindowResult) -> None:
        n = len(r.scores)
        self._parts["offsets"].append(r.window.offsets)
        self._parts["scores"].append(r.scores)
        self._parts["thresholds"].append(np.full(n, r.threshold))
        self._parts["alarms"].append(r.alarms)
        if r.window.labels is None:
            self.has_labels = False
        else:
            self._parts["labels"].append(r.window.labels)

    def array(self, name: str) -> np.ndarray:
        parts = self._parts[name]
        return np.concatenate(parts) if parts else np.empty(0)

    def quality(self) -> dict[str, float] | None:
        if not self.has_labels or not self._parts["labels"]:
            return None
        return quality(self.array("labels"), self.array("scores"), self.array("alarms"))


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
            "drift": self.drift,
        }

    def render(self) -> str:
        c = self.counts
        rows: list[tuple[str, str]] = [
            ("source", self.source),
            ("detector", f"{self.detector} (windows of {self.window_size})"),
            ("records read", f"{c.read:,}"),
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
        reconciled = c.read == c.scored + c.rejected + c.skipped
        lines.append(
            f"{'reconciled':<{width}}  "
            + ("yes: read = scored + rejected" + (" + skipped" if c.skipped else "") if reconciled else f"NO: {c.pending:,} records unaccounted for")
        )
        if self.interrupted:
            lines.append(f"{'note':<{width}}  interrupted: the summary covers the records read until then")
        for note in self.notes:
            lines.append(f"{'note':<{width}}  {note}")
        return "\n".join(lines)


def replay(
    source: Source,
    settings: Settings,
    sink: Sink,
    feature_names: Sequence[str],
    rejects: RejectSink | None = None,
    observers: Iterable[Observer] = (),
    batches: Callable[[Source], Iterable[Any]] | None = None,
    source_name: str = "",
    live: bool | None = None,
) -> tuple[Summary, Recorder]:
    """Run a finite source to its end (or Ctrl-C) and return the summary and the record
    of every score. ``batches`` can wrap the source's iteration (pacing, progress);
    ``live`` (default: the source's own ``live``) says whether windows may also close
    by time, which only a paced replay needs."""
    recorder = Recorder()
    pipeline = Pipeline(settings, sink, feature_names=feature_names, rejects=rejects, observers=[recorder, *observers])
    stream = batches(source) if batches is not None else source
    if live is None:
        live = getattr(source, "live", True)
    interrupted = False
    t0 = time.perf_counter()
    try:
        for item in stream:
            if item is not None:
                pipeline.process(item)
            if live:
                pipeline.tick()
    except KeyboardInterrupt:
        interrupted = True
    pipeline.drain()
    pipeline.checkpoint()
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
        interrupted=interrupted,
        drift=drift,
    )
    summary.notes += warming_notes(pipeline)
    return summary, recorder


def warming_notes(pipeline: Pipeline) -> list[str]:
    """Why a short stream raised no alarm: lanes whose threshold never finished warming up."""
    young = [lm.threshold for lm in pipeline.lanes.values() if lm.threshold.warming_up]
    if not young:
        return []
    seen = min(int(t.hist.n_seen) for t in young)
    need = young[0].min_records
    lanes = "the stream's threshold" if len(pipeline.lanes) == 1 else f"{len(young)} of {len(pipeline.lanes)} lanes' thresholds"
    return [
        f"{lanes} had learned {seen:,} of the {need:,} scores it needs before it raises alarms "
        "(scores count once the detector's warm-up is over): too short a stream for alarms; "
        "--warmup lowers the threshold's part"
    ]


def window_description(settings: Settings) -> str:
    w = settings.window
    grows = w.initial_size is not None and w.initial_size < w.size
    return f"{w.initial_size} doubling to {w.size}" if grows else str(w.size)


def default_output_paths(source: Path, out_dir: Path) -> tuple[Path, Path]:
    stem = source.stem or "stream"
    return out_dir / f"{stem}.detections.jsonl", out_dir / f"{stem}.rejects.csv"


def default_drift_path(source: Path, out_dir: Path) -> Path:
    return out_dir / f"{source.stem or 'stream'}.drift.jsonl"


def end_offset(source: Any, path: Path) -> int:
    """One past the last offset a file source can give, like a Kafka end offset, so that
    lag = end offset − position: the record count + 1 for in-memory and ``.mat`` sources
    (offsets from 1), the line count + 1 for delimited text (offsets are line numbers)."""
    if getattr(source, "progress_unit", None) == "records":
        return int(source.progress[1]) + 1
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (1 if last != b"\n" else 0) + 1
