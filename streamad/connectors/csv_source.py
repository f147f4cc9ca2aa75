"""Stream a delimited text file into batches, without loading it whole, losing no row.

The reader is line-oriented: each physical line is one record, and nothing a line
holds can spoil another. Sensor files essentially never put line breaks inside
quoted fields, and a reader that lets a stray quote run on across lines can swallow
the rest of a file into one field; so quotes are honoured within a line (a quoted
field may hold the delimiter, ``""`` is a quote), and a line whose quotes do not
close is rejected as ``malformed``.

- The first non-blank line names the columns; every non-blank line after it is a
  record, and its offset is its line number in the file (1-based). Blank lines
  (ASCII whitespace only) are not records.
- Every record is scored or rejected with a reason: ``column_count`` (wrong number
  of fields), ``malformed`` (quotes that do not close, or text after a closing
  quote), ``oversized`` (a line longer than ``max_line_bytes``; it is skipped without
  being held in memory), ``undecodable`` (bytes that are not valid in the encoding,
  in a field the model or the output uses; ignored columns may hold anything),
  ``truncated`` (a compressed file cut off inside this line), and the value-level
  codes of `streamad.schema` (``non_numeric``, ``bad_timestamp``...). A NUL byte is
  just a character that makes its field unparseable.
- Compressed files (gzip, bz2, xz, zstd) and byte-order marks are handled by
  `streamad.connectors.textio`; UTF-16 and UTF-32 files with a BOM are read too.
- The file as a whole is refused (`InputError`) only when it is empty, has no
  header, or is binary: NUL bytes in the first line, or more than a tenth of the
  first 64 KiB (and at least 64 bytes) being control bytes.

Reconciliation: `streamad.connectors.textio.RecordCounter` counts the non-blank lines at the
byte level as the bytes stream by, independently of the parsing. After the
iteration ends, ``records_in_file`` holds that count less the header, and
``records_delivered`` what the parser made of it (records in batches + rejects); the
two must be equal, and a replay summary should check that rather than trust the
parser. With ``limit`` the file is not read to its end: then ``records_in_file``
counts the records up to the line of the last one delivered.
"""

from __future__ import annotations

import csv
import re
import stat
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from streamad.connectors.textio import WHITESPACE, WHITESPACE_STR, CountingReader, DecodedStream, count_records, physical_lines
from streamad.errors import InputError
from streamad.records import Batch, Lane, Reject
from streamad.schema import Schema

RAW_CHARS = 1000  # of a rejected line kept in the rejects file
_SURROGATE = re.compile("[\udc80-\udcff]")  # an undecodable byte, after surrogateescape
# Control bytes that do not belong in text (tab, LF, VT, FF and CR do; ESC may in
# coloured text).
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1b") + b"\x7f"


class CsvSource:
    """A CSV (or other delimiter) file as a source of one lane; see the module docstring.

    ``delimiter=None`` sniffs it from the start of the file among ``, ; \\t |``.
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
        max_line_bytes: int = 1 << 20,
        read_size: int = 1 << 20,
    ) -> None:
        self.path = Path(path)
        self.read_size = read_size  # bytes read at a time (tests make it tiny)
        self.chunk_rows = chunk_rows
        self.limit = limit
        self.max_line_bytes = max_line_bytes
        self.lane = Lane(str(self.path))
        self._encoding_arg = encoding
        try:
            self.size = self.path.stat().st_size
        except OSError as e:
            raise InputError(f"cannot read {self.path}: {e.strerror or e}") from None
        s = DecodedStream(self.path, encoding)
        try:
            self.compression = s.compression
            self.bom = s.bom
            self.encoding = s.encoding
            head = s.read(len(s.head))
            # The header may be longer than the head: read on to its end.
            while not _has_first_line(head) and len(head) <= max_line_bytes:
                more = s.read(read_size)
                if not more:
                    break
                head += more
            head_error = s.error
        except BaseException:
            s.close()
            raise
        # A pipe or a device can be read once only: its first iteration goes on from
        # this stream, with what was read of it handed out again.
        self.seekable = self.size > 0 and stat.S_ISREG(self.path.stat().st_mode)
        if self.seekable:
            s.close()
            self._first_stream: DecodedStream | None = None
        else:
            s.unread(head)
            self._first_stream = s
        if not head.strip(WHITESPACE):
            self.close()
            if head_error:
                raise InputError(f"{self.path}: cannot decompress ({head_error})")
            raise InputError(f"{self.path} is empty")
        lines = head.split(b"\n")
        self.header_line = next(i for i, ln in enumerate(lines) if ln.strip(WHITESPACE)) + 1
        header = lines[self.header_line - 1]
        if len(header) > max_line_bytes:
            raise InputError(f"{self.path}: the first line is longer than {max_line_bytes:,} bytes: not a delimited text file with a header?")
        sample = head[: DecodedStream.HEAD]
        control = len(sample) - len(sample.translate(None, _CONTROL))
        if b"\x00" in header or (control > len(sample) / 10 and control >= 64):
            raise InputError(f"{self.path} looks like a binary file, not delimited text" + (" (or UTF-16 text without a byte-order mark)" if b"\x00" in header else ""))
        header_text = header.decode(self.encoding, errors="replace").rstrip("\r")
        data_lines = [ln.decode(self.encoding, errors="replace").rstrip("\r") for ln in lines[self.header_line - 1 : 51]]
        self.delimiter = delimiter or _sniff([ln for ln in data_lines if ln.strip(WHITESPACE_STR)])
        try:
            names = next(csv.reader([header_text], delimiter=self.delimiter, strict=True), [])
        except csv.Error as e:
            raise InputError(f"{self.path}, line {self.header_line}: the column names are not valid CSV ({_csv_error(e)})") from None
        self.columns = [_clean_name(c) for c in names]
        if not any(self.columns):
            raise InputError(f"{self.path}: the first line must name the columns")
        _check_near_misses(schema, self.columns)
        self.schema = schema.resolve(self.columns, guess=guess_roles)
        self.done = 0
        self._stream: DecodedStream | None = None
        # Set when an iteration ends; see the module docstring.
        self.records_in_file: int | None = None
        self.records_delivered = 0
        self.limit_reached = False
        self.read_error: str | None = None  # why a compressed file's data ended early
        self.notes: list[str] = []  # what the run summary should say about the file

    @property
    def feature_names(self) -> tuple[str, ...]:
        assert self.schema.features is not None
        return self.schema.features

    @property
    def progress(self) -> tuple[int, int]:
        return (self._stream.progress if self._stream else 0, self.size)

    def __iter__(self) -> Iterator[Batch]:
        self.records_in_file = None
        self.records_delivered = 0
        self.limit_reached = False
        self.read_error = None
        self.notes = []
        if self._first_stream is not None:
            stream, self._first_stream = self._first_stream, None
        elif not self.seekable and self.records_in_file is not None:
            raise InputError(f"{self.path} is not a regular file: it can be read only once")
        else:
            stream = DecodedStream(self.path, self._encoding_arg)
        self._stream = stream
        reader = CountingReader(stream)
        parser = _LineParser(self)
        emitted = 0
        last_line = 0
        try:
            for start, body, oversized, unterminated in _blocks(reader, self.max_line_bytes, self.header_line, self.read_size):
                # A last line without newline is cut off when the compressed stream broke.
                for p in parser.parse(start, body, oversized, cut_off=unterminated and stream.error is not None):
                    n = len(p)
                    if n == 0:
                        continue
                    if self.limit is not None and emitted + n >= self.limit:
                        p = p.first(self.limit - emitted)
                        n = len(p)
                        self.limit_reached = True
                    batch = parser.batch(p)
                    emitted += n
                    last_line = p.last_line
                    self.done = self.records_delivered = emitted
                    yield batch
                    if self.limit_reached:
                        break
                if self.limit_reached:
                    break
        finally:
            stream.close()
        self.read_error = stream.error
        if stream.error is not None:
            self.notes.append(
                f"{self.path}: the {stream.compression} data is corrupt or cut off ({stream.error}); "
                f"its first {reader.counter.physical_lines:,} lines were replayed, the rest of the file could not be read"
            )
        if self.limit_reached:
            if self.seekable:
                counted = count_records(self.path, self._encoding_arg, upto_line=last_line)
                self.records_in_file = max(counted.nonblank - 1, 0)
        else:
            self.records_in_file = max(reader.counter.nonblank - 1, 0)

    def end_offset(self) -> int:
        """One past the last line number of the file once decompressed and decoded (like
        a Kafka end offset, for lag = end offset - position); reads the file through."""
        return physical_lines(self.path) + 1

    def close(self) -> None:
        """Release a pipe opened to read the header and never iterated."""
        if self._first_stream is not None:
            self._first_stream.close()
            self._first_stream = None

    def commit(self, offsets: object) -> None:
        return None


class _Clipped(Sequence[str]):
    """Lines as the raw text of rejects: clipped only when a reject needs one."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [ln[:RAW_CHARS] for ln in self.lines[i]]
        return self.lines[i][:RAW_CHARS]

    def __len__(self) -> int:
        return len(self.lines)


class _LineParser:
    """Lines of text to fields, rows and rejects (the parsing half of `CsvSource`)."""

    def __init__(self, src: CsvSource) -> None:
        self.src = src
        self.lane = src.lane
        self.d = src.delimiter
        self.ncol = len(src.columns)
        self.encoding = src.encoding
        schema = src.schema
        self.used = {c: src.columns.index(c) for c in src.columns if c in set(schema.features or ()) | set(schema.roles)}
        # A delimiter that is whitespace can make a blank line look like a row of empty
        # fields; a single column makes every blank line a row. Then test each line.
        self.check_blank = self.ncol == 1 or self.d in WHITESPACE_STR

    def parse(self, start: int, body: bytes | None, oversized: tuple[int, bytes, int] | None, cut_off: bool) -> Iterator[_Parsed]:
        """Groups of at most ``chunk_rows`` lines of ``body`` (complete lines, the first
        one being line ``start``) parsed, or the reject of one oversized line."""
        if oversized is not None:
            line, head, length = oversized
            raw = head[:RAW_CHARS].decode(self.encoding, errors="replace")
            reason = f"line of {length:,} bytes or more is longer than the limit of {self.src.max_line_bytes:,}"
            yield _Parsed([], [], [], [Reject(self.lane, line, "oversized", reason, raw)])
            return
        assert body is not None
        try:
            text = body.decode(self.encoding)
            bad_bytes = False
        except UnicodeDecodeError:
            text = body.decode(self.encoding, errors="surrogateescape")
            bad_bytes = True
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if text.endswith("\r"):
                text = text[:-1]
        tlines = text.split("\n")
        size = self.src.chunk_rows
        quotes = '"' in text
        for k in range(0, len(tlines), size):
            yield self._parse_group(start + k, tlines[k : k + size], bad_bytes, cut_off and k + size >= len(tlines), quotes)

    def _parse_group(self, start: int, tlines: list[str], bad_bytes: bool, cut_off: bool, quotes: bool) -> _Parsed:
        d, ncol = self.d, self.ncol
        rows: list[list[str] | None] = [ln.split(d) for ln in tlines]
        rejects: list[Reject] = []
        malformed: dict[int, str] = {}
        if quotes:
            qidx = [i for i, ln in enumerate(tlines) if '"' in ln]
            for i, row in zip(qidx, _parse_quoted([tlines[i] for i in qidx], d)):
                if isinstance(row, str):
                    rows[i] = None
                    malformed[i] = row
                else:
                    rows[i] = row
        if self.check_blank:
            bad = [i for i, r in enumerate(rows) if r is None or len(r) != ncol or not tlines[i].strip(WHITESPACE_STR)]
        else:
            bad = [i for i, r in enumerate(rows) if r is None or len(r) != ncol]
        last = len(rows) - 1
        if cut_off and (not bad or bad[-1] != last):
            bad.append(last)
        if not bad and not bad_bytes:
            return _Parsed(rows, list(range(start, start + len(rows))), tlines, rejects)  # type: ignore[arg-type]
        drop = set()
        for i in bad:
            drop.add(i)
            ln = tlines[i]
            if not ln.strip(WHITESPACE_STR):
                continue  # blank: not a record
            raw = ln[:RAW_CHARS]
            if cut_off and i == last:
                rejects.append(Reject(self.lane, start + i, "truncated", "the compressed data ends inside this line", raw))
            elif i in malformed:
                rejects.append(Reject(self.lane, start + i, "malformed", f"malformed quoting: {malformed[i]}", raw))
            else:
                n = len(rows[i])  # type: ignore[arg-type]
                rejects.append(Reject(self.lane, start + i, "column_count", f"expected {ncol} fields, got {n}", raw))
        if bad_bytes:
            for i, ln in enumerate(tlines):
                if i in drop or not _SURROGATE.search(ln):
                    continue
                fields = rows[i]
                assert fields is not None
                hit = next((c for c, j in self.used.items() if _SURROGATE.search(fields[j])), None)
                if hit is not None:
                    drop.add(i)
                    rejects.append(Reject(self.lane, start + i, "undecodable", f"bytes that are not valid {self.encoding} in field '{hit}'", ln[:RAW_CHARS], hit))
        keep = [i for i in range(len(rows)) if i not in drop]
        rejects.sort(key=lambda r: r.offset)
        return _Parsed([rows[i] for i in keep], [start + i for i in keep], [tlines[i] for i in keep], rejects)  # type: ignore[misc]

    def batch(self, p: _Parsed) -> Batch:
        if p.rows:
            cols_t = list(zip(*p.rows))
            cols = {c: cols_t[j] for c, j in self.used.items()}
        else:
            cols = {c: () for c in self.used}
        offsets = np.asarray(p.offsets, dtype=np.int64)
        return self.src.schema.parse_columns(cols, offsets, self.lane, raws=_Clipped(p.lines), rejects=p.rejects, arrival=time.monotonic())


@dataclass
class _Parsed:
    """Good rows of fields with their line numbers and text, and the rejects."""

    rows: list[list[str]]
    offsets: list[int]
    lines: list[str]
    rejects: list[Reject]

    def __len__(self) -> int:
        return len(self.offsets) + len(self.rejects)

    @property
    def last_line(self) -> int:
        return max(self.offsets[-1] if self.offsets else 0, max((r.offset for r in self.rejects), default=0))

    def first(self, n: int) -> _Parsed:
        """The first ``n`` records (rows and rejects together, in line order)."""
        last = sorted([*self.offsets, *(r.offset for r in self.rejects)])[n - 1]
        k = sum(1 for o in self.offsets if o <= last)  # offsets are increasing
        return _Parsed(self.rows[:k], self.offsets[:k], self.lines[:k], [r for r in self.rejects if r.offset <= last])


Block = tuple[int, "bytes | None", "tuple[int, bytes, int] | None", bool]


def _blocks(reader: CountingReader, max_line: int, header_line: int, read_size: int) -> Iterator[Block]:
    """The lines after the header, in file order: runs of complete lines as (number of
    the first line, the lines' bytes without the last newline, None, unterminated),
    and each line longer than ``max_line`` alone as (its number, None, (its number,
    first bytes, length), unterminated). ``unterminated`` is true for the file's last
    line when it has no newline. An oversized line is skipped as it streams by,
    never held whole."""
    line = 1  # number of the first line in `pending`
    pending = b""
    skipping: list | None = None  # [line, first bytes, length so far] inside an oversized line

    def emit(body: bytes, first: int, unterminated: bool) -> Iterator[Block]:
        if first <= header_line:  # drop the header and the blank lines before it
            pos = -1
            for _ in range(header_line - first + 1):
                pos = body.find(b"\n", pos + 1)
                if pos < 0:
                    return
            body, first = body[pos + 1 :], header_line + 1
        if len(body) <= max_line:
            yield first, body, None, unterminated
            return
        lines = body.split(b"\n")
        run: list[bytes] = []
        for k, ln in enumerate(lines):
            if len(ln) > max_line:
                if run:
                    yield first + k - len(run), b"\n".join(run), None, False
                    run = []
                yield first + k, None, (first + k, ln[:RAW_CHARS], len(ln)), unterminated and k == len(lines) - 1
            else:
                run.append(ln)
        if run:
            yield first + len(lines) - len(run), b"\n".join(run), None, unterminated

    while True:
        data = reader.read(read_size)
        if not data:
            break
        if skipping is not None:
            i = data.find(b"\n")
            if i < 0:
                skipping[2] += len(data)
                continue
            skipping[2] += i
            if skipping[0] > header_line:
                yield skipping[0], None, (skipping[0], skipping[1], skipping[2]), False
            line = skipping[0] + 1
            skipping = None
            data = data[i + 1 :]
        buf = pending + data if pending else data
        cut = buf.rfind(b"\n")
        if cut >= 0:
            body, pending = buf[:cut], buf[cut + 1 :]
            yield from emit(body, line, False)
            line += body.count(b"\n") + 1
        else:
            pending = buf
        if len(pending) > max_line:
            skipping = [line, pending[:RAW_CHARS], len(pending)]
            pending = b""
    if skipping is not None:
        if skipping[0] > header_line:
            yield skipping[0], None, (skipping[0], skipping[1], skipping[2]), True
    elif pending:
        yield from emit(pending, line, True)


def _has_first_line(head: bytes) -> bool:
    """Whether ``head`` holds its first non-blank line to its end."""
    for ln in head.split(b"\n")[:-1]:
        if ln.strip(WHITESPACE):
            return True
    return False


_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u00a0"


def _clean_name(name: str) -> str:
    return name.strip(WHITESPACE_STR + _INVISIBLE).strip()


def _visible(name: str) -> str:
    """A column name as it looks: without format characters and spaces, case-folded."""
    return "".join(ch for ch in name if unicodedata.category(ch) not in ("Cf", "Cc", "Zs", "Zl", "Zp")).casefold()


def _check_near_misses(schema: Schema, columns: list[str]) -> None:
    """A named column that is missing but looks like one of the file's (they differ
    only in case or invisible characters): say so, since the names print the same."""
    named = [("feature", f) for f in schema.features or ()] + [(r, n) for r, n in (("key", schema.key), ("timestamp", schema.timestamp), ("label", schema.label)) if n]
    named += [("excluded", e) for e in schema.exclude]
    for role, name in named:
        if name in columns:
            continue
        near = [c for c in columns if _visible(c) == _visible(name)]
        if near:
            c = near[0]
            how = "letter case" if c.casefold() == name.casefold() else "invisible characters"
            raise InputError(f"{role} column {name!r} not found; the file has {c!r}, which differs from it only in {how}; columns are: {', '.join(map(repr, columns))}")


def _sniff(lines: list[str]) -> str:
    # The delimiter is the candidate that splits the header and the following lines
    # into the same number (> 1) of fields most consistently.
    best, best_score = ",", -1.0
    for d in [",", ";", "\t", "|"]:
        counts = [_field_count(ln, d) for ln in lines[:20]]
        if not counts or counts[0] < 2:
            continue
        score = sum(c == counts[0] for c in counts) / len(counts) + counts[0] * 1e-3
        if score > best_score:
            best, best_score = d, score
    return best


def _parse_quoted(lines: list[str], d: str) -> list[list[str] | str]:
    """Each line's fields, or what is wrong with its quoting. One csv reader reads all
    the lines; a record it made of more than one line (a quote left open) or could not
    make is parsed again line by line, so that each line stands alone."""
    out: list[list[str] | str] = [""] * len(lines)
    reader = csv.reader(lines, delimiter=d, strict=True)
    done = 0  # lines the reader has consumed
    while done < len(lines):
        try:
            row: list[str] | None = next(reader)
        except StopIteration:
            break
        except csv.Error:
            row = None
        if row is not None and reader.line_num == done + 1:
            out[done] = row
        else:
            for k in range(done, reader.line_num):
                try:
                    out[k] = next(csv.reader((lines[k],), delimiter=d, strict=True))
                except csv.Error as e:
                    out[k] = _csv_error(e)
        done = reader.line_num
    return out


def _csv_error(e: csv.Error) -> str:
    """The csv module's complaint about one line, in the words of this reader."""
    text = str(e)
    if "unexpected end of data" in text:
        return "unbalanced quote"
    if "new-line character" in text:
        return "a carriage return inside an unquoted field"
    return text


def _field_count(line: str, d: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=d), []))
    except csv.Error:
        return line.count(d) + 1
