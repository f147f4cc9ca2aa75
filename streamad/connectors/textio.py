"""Open a text file as a stream of ASCII-compatible bytes, and count its records.

`open_decoded` hides what is not the text itself: compression (gzip, bz2, xz, and
zstd when the ``zstandard`` module or Python's ``compression.zstd`` is importable),
detected by magic bytes and not by the file's extension; a byte-order mark (UTF-8's
is dropped; UTF-16 and UTF-32 text is transcoded to UTF-8); and old Mac line ends
(CR only), turned into LF. The parser then sees UTF-8 (or the caller's
ASCII-compatible encoding) with ``\\n`` line ends.

`RecordCounter` counts records as the bytes stream through it, knowing nothing of
delimiters or quotes: a record is a non-blank line, a blank line being one of ASCII
whitespace only (the same bytes that ``bytes.strip()`` removes). The CSV reader
checks its own result against this count, so that a bug in the parser cannot lose
rows silently.
"""

from __future__ import annotations

import bz2
import codecs
import io
import lzma
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamad.errors import InputError

# ASCII whitespace, as bytes.strip() and the CSV reader's idea of a blank line.
WHITESPACE = b" \t\n\r\x0b\x0c"
WHITESPACE_STR = WHITESPACE.decode("ascii")
# A line between two newlines that holds nothing but whitespace. The lookahead leaves
# the closing newline for the next match, so runs of blank lines all count.
_BLANK_INNER = re.compile(rb"\n[ \t\r\x0b\x0c]*(?=\n)")

_MAGIC: list[tuple[str, Callable[[bytes], bool]]] = [
    ("gzip", lambda h: h[:2] == b"\x1f\x8b"),
    # "BZh" + block size, then the magic of a first block or of the end of stream:
    # three letters alone could start a CSV header.
    ("bz2", lambda h: h[:3] == b"BZh" and h[3:4] in b"123456789" and h[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")),
    ("xz", lambda h: h[:6] == b"\xfd7zXZ\x00"),
    ("zstd", lambda h: h[:4] == b"\x28\xb5\x2f\xfd"),
]

_BOMS = [  # longest first: UTF-32-LE's BOM starts with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]

_UNDECODABLE = "streamad.undecodable"


def _mark_undecodable(e: UnicodeError) -> tuple[str, int]:
    # A lone surrogate: encoded back with surrogateescape it becomes the byte 0xff,
    # which is never valid UTF-8, so the line is rejected as undecodable downstream.
    assert isinstance(e, UnicodeDecodeError)
    return "\udcff", e.end


codecs.register_error(_UNDECODABLE, _mark_undecodable)


def decompress_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a decompressor raises on corrupt or cut-off data."""
    errs: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError, ValueError]
    zstd = _zstd_module()
    if zstd is not None and hasattr(zstd, "ZstdError"):
        errs.append(zstd.ZstdError)
    return tuple(errs)


def _zstd_module() -> Any:
    try:
        import zstandard

        return zstandard
    except ImportError:
        pass
    try:  # Python 3.14+
        from compression import zstd

        return zstd
    except ImportError:
        return None


class Counting(io.RawIOBase):
    """A raw file that counts the bytes read through it (for a progress bar)."""

    def __init__(self, raw: io.RawIOBase, prefix: bytes = b"") -> None:
        self.raw = raw
        self.prefix = prefix  # bytes read ahead (to see a file's magic), handed out first
        self.count = len(prefix)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.prefix:
            n = min(len(b), len(self.prefix))
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        n = self.raw.readinto(b)
        self.count += n or 0
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def compression_of(head: bytes) -> str | None:
    """The compression format whose magic bytes start ``head``, or None."""
    return next((name for name, test in _MAGIC if test(head)), None)


class DecodedStream:
    """Bytes of a (possibly compressed, BOM-marked, UTF-16) text file as UTF-8 or the
    caller's ASCII-compatible encoding; see the module docstring.

    ``encoding`` is what the returned bytes are in. ``error`` says why the data
    ended early when a compressed stream turned out corrupt or cut off (reading
    then stops as if at the end of the file). ``progress`` counts the file's own
    (compressed) bytes read so far.
    """

    HEAD = 1 << 16

    def __init__(self, path: Path, encoding: str = "utf-8") -> None:
        self.path = path
        try:
            raw = open(path, "rb", buffering=0)
        except IsADirectoryError:
            raise InputError(f"{path} is a directory, not a file") from None
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            magic = b""
            while len(magic) < 16:  # a pipe may hand out fewer bytes than asked for
                more = raw.read(16 - len(magic))
                if not more:
                    break
                magic += more
        except OSError as e:
            raw.close()
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None
        # No seeking back: a pipe or /dev/stdin can be read only once.
        self._counting = Counting(raw, prefix=magic)
        self.compression = compression_of(magic)
        self._inner: Any = self._open_decompressor(self.compression)
        self.error: str | None = None
        self._errors = decompress_errors() if self.compression else ()
        self._pending = b""
        self._eof = False
        self.cr_newlines = False
        # The byte-order mark decides the encoding; without one the caller's applies.
        first = self._read_inner_exactly(4)
        self.bom: str | None = None
        for bom, name in _BOMS:
            if first.startswith(bom):
                self.bom, first = name, first[len(bom) :]
                break
        source_encoding = self.bom or encoding
        self._transcoder: Any = None
        if _ascii_compatible(source_encoding):
            self.encoding = source_encoding
        else:
            try:
                self._transcoder = codecs.getincrementaldecoder(source_encoding)(errors=_UNDECODABLE)
            except LookupError:
                self.close()
                raise InputError(f"unknown text encoding {source_encoding!r}") from None
            self.encoding = "utf-8"
        # The head: enough to sniff the delimiter and to see the line ends. A file whose
        # head has carriage returns and no line feed uses old Mac line ends.
        head = self._transform(first + self._read_inner_exactly(self.HEAD), final=self._eof)
        self.cr_newlines = b"\n" not in head and b"\r" in head
        if self.cr_newlines:
            head = head.replace(b"\r", b"\n")
        self.head = head
        self._pending = head

    def _open_decompressor(self, kind: str | None) -> Any:
        c = self._counting
        if kind is None:
            return c
        if kind == "zstd" and _zstd_module() is None:
            c.close()
            raise InputError(f"{self.path} is zstd-compressed: install the 'zstandard' package to read it (or decompress it first)")
        return _Inflater(c, kind)

    @property
    def progress(self) -> int:
        return self._counting.count

    def _read_inner(self, n: int) -> bytes:
        if self._eof:
            return b""
        try:
            data = self._inner.read(n)
        except self._errors as e:  # only compressed streams get here: plain files raise
            self.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            data = b""
        if not data:
            self._eof = True
        return data

    def _read_inner_exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            data = self._read_inner(n - len(out))
            if not data:
                break
            out += data
        return out

    def _transform(self, data: bytes, final: bool = False) -> bytes:
        if self._transcoder is not None:
            text = self._transcoder.decode(data, final=final)
            data = text.encode("utf-8", errors="surrogateescape")
        if self.cr_newlines:
            data = data.replace(b"\r", b"\n")
        return data

    def unread(self, data: bytes) -> None:
        """Hand ``data`` (what ``read`` gave last, or since the head) out again first."""
        self._pending = data + self._pending

    def read(self, n: int = 1 << 20) -> bytes:
        """Up to about ``n`` bytes; ``b""`` only at the end of the data."""
        if self._pending:
            out, self._pending = self._pending[:n], self._pending[n:]
            return out
        while not self._eof:
            out = self._transform(self._read_inner(n), final=self._eof)
            if out:
                return out
        return b""

    def close(self) -> None:
        try:
            if self._inner is not self._counting:
                self._inner.close()
        finally:
            self._counting.close()

    def __enter__(self) -> DecodedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Inflater:
    """A compressed stream decompressed step by step with decompressor objects (not
    GzipFile & co., which drop what a read had decoded when the data turns out cut
    off, nor zstandard's stream reader, which does not notice a cut-off frame): every
    byte before a corruption is delivered, then the error is raised. Concatenated
    streams (several gzip members, zstd frames) are read one after another."""

    def __init__(self, raw: Counting, kind: str) -> None:
        self.raw = raw
        self.kind = kind
        # zstandard's decompressor takes no output bound: feed it small steps.
        self.step = 1 << 13 if kind == "zstd" else 1 << 16
        self.d = self._new()
        self.tail = b""  # compressed input not handed to the decompressor yet
        self.started = False  # the current stream has had input

    def _new(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.kind == "bz2":
            return bz2.BZ2Decompressor()
        if self.kind == "xz":
            return lzma.LZMADecompressor()
        zstd = _zstd_module()
        if hasattr(zstd.ZstdDecompressor(), "decompressobj"):
            return zstd.ZstdDecompressor().decompressobj()  # zstandard
        return zstd.ZstdDecompressor()  # compression.zstd: like lzma's

    def _input(self) -> bytes:
        data, self.tail = self.tail or self.raw.read(self.step), b""
        if data:
            self.started = True
        return data

    def read(self, n: int) -> bytes:
        while True:
            d = self.d
            if self.kind == "gzip":
                data = d.unconsumed_tail or self._input()
                if not data:
                    return self._end()
                out = d.decompress(data, n)
            elif hasattr(d, "needs_input"):  # bz2, xz, compression.zstd
                data = self._input() if d.needs_input else b""
                if d.needs_input and not data:
                    return self._end()
                out = d.decompress(data, n)
            else:  # zstandard: no output bound, no needs_input
                data = self._input()
                if not data:
                    return self._end()
                out = d.decompress(data)
            if d.eof:
                rest = d.unused_data  # (zlib's unconsumed_tail repeats it at the end)
                # Padding of NUL bytes after the last stream is allowed (gzip's tools do).
                if rest.strip(b"\x00"):
                    self.tail = rest
                self.d, self.started = self._new(), False
            if out:
                return out

    def _end(self) -> bytes:
        if self.started:
            raise EOFError("the compressed data ends before its end-of-stream marker")
        return b""

    def close(self) -> None:
        self.raw.close()


def _ascii_compatible(encoding: str) -> bool:
    try:
        probe = "\n\r,;\t|\" az09."
        return probe.encode(encoding) == probe.encode("ascii")
    except (LookupError, UnicodeError):
        return False


class RecordCounter:
    """Counts non-blank lines in bytes fed to it, chunk by chunk, whatever the chunk
    boundaries; `finish` counts a last line that has no newline."""

    def __init__(self) -> None:
        self.nonblank = 0  # complete non-blank lines so far (all of them after finish())
        self.newlines = 0
        self._open_nonblank = False  # the current, unterminated line has content
        self._open_empty = True  # ... or has no byte at all yet
        self.finished = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        first = data.find(b"\n")
        if first < 0:
            self._open_empty = False
            if not self._open_nonblank and data.strip(WHITESPACE):
                self._open_nonblank = True
            return
        last = data.rfind(b"\n")
        nl = data.count(b"\n")
        if self._open_nonblank or data[:first].strip(WHITESPACE):
            self.nonblank += 1
        blanks = len(_BLANK_INNER.findall(data, first, last + 1))
        self.nonblank += nl - 1 - blanks
        self.newlines += nl
        tail = data[last + 1 :]
        self._open_nonblank = bool(tail.strip(WHITESPACE))
        self._open_empty = not tail

    def finish(self) -> None:
        if not self.finished and self._open_nonblank:
            self.nonblank += 1
        self.finished = True

    @property
    def physical_lines(self) -> int:
        """Lines of the file, a last one without newline included (after finish())."""
        return self.newlines + (0 if self._open_empty else 1)


class CountingReader:
    """Passes a `DecodedStream` through, counting its records on the way."""

    def __init__(self, stream: DecodedStream) -> None:
        self.stream = stream
        self.counter = RecordCounter()

    def read(self, n: int = 1 << 20) -> bytes:
        data = self.stream.read(n)
        if data:
            self.counter.feed(data)
        else:
            self.counter.finish()
        return data


def count_records(path: Path, encoding: str = "utf-8", upto_line: int | None = None) -> RecordCounter:
    """Count the non-blank lines of a file (through `open_decoded`), all of them or
    those among its first ``upto_line`` lines."""
    counter = RecordCounter()
    with DecodedStream(path, encoding) as s:
        while True:
            data = s.read(1 << 20)
            if not data:
                break
            if upto_line is not None:
                want = upto_line - counter.newlines
                if data.count(b"\n") >= want:
                    cut = -1
                    for _ in range(want):
                        cut = data.index(b"\n", cut + 1)
                    counter.feed(data[: cut + 1])
                    break
            counter.feed(data)
    counter.finish()
    return counter


def physical_lines(path: str | Path) -> int:
    """How many lines a text file has once decompressed and decoded (a last line
    without newline counts); for a lag's end offset, where offsets are line numbers."""
    return count_records(Path(path)).physical_lines
