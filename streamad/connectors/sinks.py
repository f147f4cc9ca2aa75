"""Where detections and rejected records go when not to Kafka: files and stdout.

Outputs may be regular files, devices (``/dev/null``) or FIFOs: only regular files
are fsynced (a device or a pipe has nothing to sync and fails the call). A write that
fails (a full disk, ``/dev/full``) stops the run with one line naming the file; a
reader of stdout that goes away (``| head``) is not an error: `StdoutSink` notes it
in ``reader_gone`` and drops what follows, and the replay stops there.
"""

from __future__ import annotations

import csv
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

import orjson

from streamad.detection import DetectionBatch
from streamad.errors import InputError
from streamad.records import Reject


def _blocker(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists but is not a directory, if any."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def _open_for_writing(path: Path, append: bool = False) -> IO[bytes]:
    if str(path) in ("", "."):
        raise InputError("an output path is empty")
    blocker = _blocker(path)
    if blocker is not None:
        raise InputError(f"cannot write {path}: {blocker} is not a directory")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab" if append else "wb")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def is_regular(f: IO[Any]) -> bool:
    """Whether an open file is a regular file (not a device, pipe, socket or terminal)."""
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _guarded(path: Path | None, what: Callable[[], None]) -> None:
    """Run a write or flush; turn an OS error into one line naming the file."""
    try:
        what()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise InputError(f"cannot write {path if path is not None else 'stdout'}: {e.strerror or e}") from None


class _FileSink:
    def __init__(self, path: str | Path | None, stream: IO[bytes] | None = None, append: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self._f = stream if stream is not None else _open_for_writing(self.path, append)  # type: ignore[arg-type]
        self._owns = stream is None
        self._sync = self._owns and is_regular(self._f)
        self._failed = False
        self.written = 0

    def _write(self, data: bytes) -> None:
        self._do(lambda: self._f.write(data))

    def _do(self, what: Callable[[], Any]) -> None:
        try:
            _guarded(self.path, what)
        except Exception:
            self._failed = True
            raise

    def flush(self) -> None:
        if self._failed:
            return
        self._do(self._f.flush)
        if self._sync:
            self._do(lambda: os.fsync(self._f.fileno()))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._owns and not self._f.closed:
                try:
                    self._f.close()
                except OSError:
                    pass  # a failed write was reported already; the buffer cannot be saved


class JsonlSink(_FileSink):
    """One detection message (JSON) per line."""

    def write(self, detections: DetectionBatch) -> None:
        # The records' JSON straight away: no message objects and no copies of orjson's
        # result (which a Kafka producer's buffer needs) for a file.
        self._write(b"".join([orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in detections.records()]))
        self.written += len(detections)


class StdoutSink(JsonlSink):
    """Detections on stdout, nothing else there. When the reader goes away (``| head``)
    further detections are dropped and ``reader_gone`` says so: the caller stops."""

    def __init__(self) -> None:
        super().__init__(None, stream=sys.stdout.buffer)
        self.reader_gone = False
        self.delivered = 0  # detections handed to stdout before the reader went away

    def _do(self, what: Callable[[], Any]) -> None:
        if self.reader_gone:
            return
        try:
            super()._do(what)
        except BrokenPipeError:
            self.reader_gone = True
            self._failed = False  # not a failure of ours: nothing more to say
            _silence_stdout()

    def write(self, detections: DetectionBatch) -> None:
        if self.reader_gone:
            return
        super().write(detections)
        if not self.reader_gone:
            self.delivered = self.written

    def flush(self) -> None:
        if not self.reader_gone:
            super().flush()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not complain
    about the pipe the reader closed."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class CsvSink(_FileSink):
    """One detection per row; top features as ``name:share`` joined by ``;``."""

    COLUMNS = ["id", "stream", "partition", "offset", "key", "timestamp", "score", "threshold", "is_anomaly", "tail_probability", "features", "model"]

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._text = open(self._f.fileno(), "w", newline="", closefd=False, encoding="utf-8")
        self._w = csv.writer(self._text)
        self._do(lambda: self._w.writerow(self.COLUMNS))

    def write(self, detections: DetectionBatch) -> None:
        def rows() -> None:
            for r in detections.records():
                src = r["source"]
                feats = ";".join(f"{f['name']}:{f['share']}" for f in r["features"])
                self._w.writerow(
                    [r["id"], src["stream"], src["partition"], src["offset"], r["key"], r["timestamp"], r["score"], r["threshold"], r["is_anomaly"], r["tail_probability"], feats, r["model"]["name"]]
                )

        self._do(rows)
        self.written += len(detections)

    def flush(self) -> None:
        if not self._failed:
            self._do(self._text.flush)
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


_Item = TypeVar("_Item")
_Item_contra = TypeVar("_Item_contra", contravariant=True)


class _Writer(Protocol[_Item_contra]):
    def write(self, items: _Item_contra, /) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class FanoutSink(Generic[_Item]):
    """Writes to several sinks; flush succeeds only when every one of them does."""

    def __init__(self, sinks: Sequence[_Writer[_Item]]) -> None:
        self.sinks = list(sinks)

    def write(self, items: _Item) -> None:
        for s in self.sinks:
            s.write(items)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def detection_sink(path: str | Path) -> JsonlSink | CsvSink:
    """A sink chosen by the file's extension: ``.csv`` or JSON lines; ``-`` is stdout."""
    if str(path) == "-":
        return StdoutSink()
    p = Path(path)
    return CsvSink(p) if p.suffix.lower() == ".csv" else JsonlSink(p)


class DriftEventsFile(_FileSink):
    """Drift events as JSON lines: a replay's file holds that replay's events only; a
    long-running worker appends (``append=True``), so a restart keeps the earlier ones."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        super().__init__(path, append=append)

    def write(self, events: Sequence[Any]) -> None:
        self._write(b"".join(e.to_json() + b"\n" for e in events))
        self.written += len(events)


class RejectsFile(_FileSink):
    """Rejected records with where they came from and why: CSV for ``.csv``, else JSON lines."""

    COLUMNS = ["stream", "partition", "offset", "code", "reason", "field", "raw"]

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        assert self.path is not None
        self._csv = self.path.suffix.lower() == ".csv"
        if self._csv:
            self._text = open(self._f.fileno(), "w", newline="", closefd=False, encoding="utf-8", errors="backslashreplace")
            self._w = csv.writer(self._text)
            self._do(lambda: self._w.writerow(self.COLUMNS))

    @staticmethod
    def _raw(r: Reject) -> str | None:
        if r.raw is None:
            return None
        if isinstance(r.raw, bytes):
            return r.raw.decode("utf-8", errors="backslashreplace")
        return r.raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")

    def write(self, rejects: Sequence[Reject]) -> None:
        rows = [[r.lane.stream, r.lane.partition, r.offset, r.code, r.reason, r.field, self._raw(r)] for r in rejects]
        if self._csv:
            self._do(lambda: self._w.writerows(rows))
        else:
            self._write(b"".join(orjson.dumps(dict(zip(self.COLUMNS, row))) + b"\n" for row in rows))
        self.written += len(rejects)

    def flush(self) -> None:
        if self._csv and not self._failed:
            self._do(self._text.flush)
        super().flush()
