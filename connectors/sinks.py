"""Where detections and rejected records go when not to Kafka: files and stdout."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import IO, Sequence

import orjson

from streamad.detection import DetectionBatch
from streamad.errors import InputError
from streamad.records import Reject


def _open_for_writing(path: Path) -> IO[bytes]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


class _FileSink:
    def __init__(self, path: str | Path | None, stream: IO[bytes] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._f = stream if stream is not None else _open_for_writing(self.path)  # type: ignore[arg-type]
        self._owns = stream is None
        self.written = 0

    def flush(self) -> None:
        self._f.flush()
        if self._owns:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self.flush()
        if self._owns:
            self._f.close()


class JsonlSink(_FileSink):
    """One detection message (JSON) per line."""

    def write(self, detections: DetectionBatch) -> None:
        self._f.write(b"".join(m.value + b"\n" for m in detections.messages()))
        self.written += len(detections)


class StdoutSink(JsonlSink):
    def __init__(self) -> None:
        super().__init__(None, stream=sys.stdout.buffer)


class CsvSink(_FileSink):
    """One detection per row; top features as ``name:share`` joined by ``;``."""

    COLUMNS = ["id", "stream", "partition", "offset", "key", "timestamp", "score", "threshold", "is_anomaly", "tail_probability", "features", "model"]

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._text = open(self._f.fileno(), "w", newline="", closefd=False, encoding="utf-8")
        self._w = csv.writer(self._text)
        self._w.writerow(self.COLUMNS)

    def write(self, detections: DetectionBatch) -> None:
        for r in detections.records():
            src = r["source"]
            feats = ";".join(f"{f['name']}:{f['share']}" for f in r["features"])
            self._w.writerow(
                [r["id"], src["stream"], src["partition"], src["offset"], r["key"], r["timestamp"], r["score"], r["threshold"], r["is_anomaly"], r["tail_probability"], feats, r["model"]["name"]]
            )
        self.written += len(detections)

    def flush(self) -> None:
        self._text.flush()
        super().flush()


class MemorySink:
    """Keeps detection records in a list (tests, the demo's plot)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, detections: DetectionBatch) -> None:
        self.records.extend(detections.records())

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class NullSink:
    def write(self, detections: DetectionBatch) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class FanoutSink:
    """Writes to several sinks; flush succeeds only when every one of them does."""

    def __init__(self, sinks: Sequence[object]) -> None:
        self.sinks = list(sinks)

    def write(self, detections: DetectionBatch) -> None:
        for s in self.sinks:
            s.write(detections)  # type: ignore[attr-defined]

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()  # type: ignore[attr-defined]

    def close(self) -> None:
        for s in self.sinks:
            s.close()  # type: ignore[attr-defined]


def detection_sink(path: str | Path) -> JsonlSink | CsvSink:
    """A sink chosen by the file's extension: ``.csv`` or JSON lines; ``-`` is stdout."""
    if str(path) == "-":
        return StdoutSink()
    p = Path(path)
    return CsvSink(p) if p.suffix.lower() == ".csv" else JsonlSink(p)


class RejectsFile:
    """Rejected records with where they came from and why: CSV for ``.csv``, else JSON lines."""

    COLUMNS = ["stream", "partition", "offset", "code", "reason", "field", "raw"]

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = _open_for_writing(self.path)
        self._csv = self.path.suffix.lower() == ".csv"
        self.written = 0
        if self._csv:
            self._text = open(self._f.fileno(), "w", newline="", closefd=False, encoding="utf-8", errors="backslashreplace")
            self._w = csv.writer(self._text)
            self._w.writerow(self.COLUMNS)

    @staticmethod
    def _raw(r: Reject) -> str | None:
        if r.raw is None:
            return None
        if isinstance(r.raw, bytes):
            return r.raw.decode("utf-8", errors="backslashreplace")
        return r.raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")

    def write(self, rejects: Sequence[Reject]) -> None:
        for r in rejects:
            row = [r.lane.stream, r.lane.partition, r.offset, r.code, r.reason, r.field, self._raw(r)]
            if self._csv:
                self._w.writerow(row)
            else:
                self._f.write(orjson.dumps(dict(zip(self.COLUMNS, row))) + b"\n")
        self.written += len(rejects)

    def flush(self) -> None:
        if self._csv:
            self._text.flush()
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self.flush()
        self._f.close()
