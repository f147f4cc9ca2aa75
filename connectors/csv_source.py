"""Stream a delimited text file into batches, without loading it whole.

Every data line becomes a record or a reject: a wrong number of fields, an empty,
non-numeric or non-finite feature, or a bad timestamp is rejected with its line number.
Undecodable bytes do not stop the replay: they show up in the rejected value.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from streamad.errors import InputError
from streamad.records import Batch, Lane, Reject
from streamad.schema import Schema


class _Counting(io.RawIOBase):
    """A raw file that counts the bytes read through it (for a progress bar)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = self.raw.readinto(b)
        self.count += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


class CsvSource:
    """A CSV (or other delimiter) file as a source of one lane.

    The first line names the columns. ``delimiter=None`` sniffs it from the start of
    the file among ``, ; \\t |``. Offsets are the file's line numbers.
    """

    progress_unit = "B"
    live = False  # all records are at hand: windows close by count, never by the clock

    def __init__(
        self,
        path: str | Path,
        schema: Schema = Schema(),
        delimiter: str | None = None,
        chunk_rows: int = 8192,
        guess_roles: bool = True,
        encoding: str = "utf-8",
        limit: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.chunk_rows = chunk_rows
        self.limit = limit
        self.lane = Lane(str(self.path))
        try:
            self.size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(65536)
        except IsADirectoryError:
            raise InputError(f"{self.path} is a directory, not a file") from None
        except OSError as e:
            raise InputError(f"cannot read {self.path}: {e.strerror or e}") from None
        if not head.strip():
            raise InputError(f"{self.path} is empty")
        if b"\x00" in head:
            raise InputError(f"{self.path} looks like a binary file, not delimited text")
        sample = head.decode(encoding, errors="replace")
        self.delimiter = delimiter or _sniff(sample, self.path)
        header_line = sample.splitlines()[0] if sample.splitlines() else ""
        self.columns = next(csv.reader([header_line], delimiter=self.delimiter))
        self.columns = [c.strip() for c in self.columns]
        if len(self.columns) < 1 or not any(self.columns):
            raise InputError(f"{self.path}: the first line must name the columns")
        self.schema = schema.resolve(self.columns, guess=guess_roles)
        self.done = 0
        self._counter: _Counting | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        assert self.schema.features is not None
        return self.schema.features

    @property
    def progress(self) -> tuple[int, int]:
        return (self._counter.count if self._counter else 0, self.size)

    def __iter__(self) -> Iterator[Batch]:
        ncol = len(self.columns)
        names = self.columns
        wanted = [c for c in names if c in set(self.schema.features or ()) | set(self.schema.roles)]
        col_index = {c: names.index(c) for c in wanted}
        try:
            raw = open(self.path, "rb", buffering=0)
        except OSError as e:
            raise InputError(f"cannot read {self.path}: {e.strerror or e}") from None
        self._counter = _Counting(raw)  # type: ignore[arg-type]
        text = io.TextIOWrapper(io.BufferedReader(self._counter, 1 << 20), encoding=self.encoding, errors="surrogateescape", newline="")
        emitted = 0
        try:
            reader = csv.reader(text, delimiter=self.delimiter)
            next(reader, None)  # header
            while True:
                rows: list[list[str]] = []
                lines: list[int] = []
                rejects: list[Reject] = []
                try:
                    for row in reader:
                        if not row or (len(row) == 1 and not row[0].strip()):
                            continue  # blank line
                        line = reader.line_num
                        if len(row) != ncol:
                            rejects.append(
                                Reject(self.lane, line, "column_count", f"expected {ncol} fields, got {len(row)}", self.delimiter.join(row)[:1000])
                            )
                        else:
                            rows.append(row)
                            lines.append(line)
                        if len(rows) + len(rejects) >= self.chunk_rows:
                            break
                        if self.limit is not None and emitted + len(rows) + len(rejects) >= self.limit:
                            break
                except csv.Error as e:
                    raise InputError(f"{self.path}, line {reader.line_num}: malformed CSV ({e})") from None
                if not rows and not rejects:
                    return
                cols = {c: [r[i] for r in rows] for c, i in col_index.items()}
                raws = [self.delimiter.join(r)[:1000] for r in rows]
                batch = self.schema.parse_columns(cols, np.asarray(lines, dtype=np.int64), self.lane, raws=raws, rejects=rejects, arrival=time.monotonic())
                emitted += len(rows) + len(rejects)
                self.done = emitted
                yield batch
                if self.limit is not None and emitted >= self.limit:
                    return
        finally:
            text.close()

    def commit(self, offsets: object) -> None:
        return None


def _sniff(sample: str, path: Path) -> str:
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if not lines:
        raise InputError(f"{path} is empty")
    # The delimiter is the candidate that splits the header and the following lines
    # into the same number (> 1) of fields most consistently.
    best, best_score = ",", -1.0
    for d in [",", ";", "\t", "|"]:
        counts = [len(next(csv.reader([ln], delimiter=d))) for ln in lines[:20]]
        if counts[0] < 2:
            continue
        score = sum(c == counts[0] for c in counts) / len(counts) + counts[0] * 1e-3
        if score > best_score:
            best, best_score = d, score
    return best
