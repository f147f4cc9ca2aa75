"""Properties of the CSV reader under random input (hypothesis).

- Random bytes never crash it: the file is refused as a whole (`InputError`) or read
  to the end, and the reader's tally equals the independent byte-level count.
- Random damage to some lines of a valid file (quotes, NULs, invalid UTF-8, huge
  fields, missing or extra delimiters, BOMs, CRLF) never costs an untouched row: it is
  scored with the same values at the same line number, and every non-blank line
  after the header is delivered exactly once, scored or rejected.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streamad.connectors.csv_source import CsvSource
from streamad.connectors.textio import RecordCounter
from streamad.errors import InputError
from streamad.schema import Schema

MAX_LINE = 300  # bytes: small, so that "huge" fields stay cheap to make
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read(data: bytes, **kw) -> tuple[CsvSource, np.ndarray, np.ndarray, np.ndarray | None, list]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.csv"
        p.write_bytes(data)
        src = CsvSource(p, max_line_bytes=MAX_LINE, **kw)
        batches = list(src)
    n = len(src.feature_names)
    X = np.concatenate([b.X for b in batches]) if batches else np.empty((0, n))
    offsets = np.concatenate([b.offsets for b in batches]) if batches else np.empty(0, dtype=np.int64)
    stamps = np.concatenate([b.timestamps for b in batches]) if batches and batches[0].timestamps is not None else None
    rejects = [r for b in batches for r in b.rejects]
    return src, X, offsets, stamps, rejects


def check_reconciled(src: CsvSource, offsets: np.ndarray, rejects: list) -> list[int]:
    """Every record delivered once, in order within each kind, and the tally equals the count."""
    lines = offsets.tolist() + [r.offset for r in rejects]
    assert len(set(lines)) == len(lines), "a line delivered twice"
    assert np.all(np.diff(offsets) > 0)
    assert src.records_delivered == len(lines) == src.records_in_file
    return sorted(lines)


# -- random bytes ---------------------------------------------------------------------------

PREFIXES = [b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"\x1f\x8b", b"a,b\n", b"ts;x;label\r\n", b'"a","b"\n']
CHUNKS = st.sampled_from([b",", b";", b"\t", b"\n", b"\r\n", b"\r", b'"', b"\x00", b"\xff", b"\xef\xbb\xbf", b"1.5", b"-2", b"nan", b" ", b"x", b"2020-01-01", b"\xc3\xa9", b"\xed\xa0\x80"])


@st.composite
def junk(draw) -> bytes:
    prefix = draw(st.sampled_from(PREFIXES))
    if draw(st.booleans()):
        body = draw(st.binary(max_size=600))
    else:
        body = b"".join(draw(st.lists(CHUNKS, max_size=120)))
    return prefix + body


# Bytes read at a time: tiny reads put chunk boundaries everywhere, 1 MiB is the default.
READ_SIZES = st.sampled_from([1, 2, 3, 7, 64, 1 << 20])


@SETTINGS
@given(junk(), READ_SIZES)
def test_random_bytes_never_crash_and_always_reconcile(data, read_size):
    try:
        src, X, offsets, _, rejects = read(data, read_size=read_size)
    except InputError:
        return
    assert np.isfinite(X).all()
    check_reconciled(src, offsets, rejects)


@SETTINGS
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_record_counter_matches_a_plain_split_whatever_the_chunks(data, sizes):
    c = RecordCounter()
    pos, k = 0, 0
    while pos < len(data):
        step = sizes[k % len(sizes)]
        c.feed(data[pos : pos + step])
        pos, k = pos + step, k + 1
    c.finish()
    assert c.nonblank == sum(1 for ln in data.split(b"\n") if ln.strip())
    assert c.physical_lines == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


# -- valid files, damaged -------------------------------------------------------------------

DELIMITERS = [",", ";", "\t", "|"]
MUTATIONS = ["quote", "nul", "bad_utf8", "huge", "long_field", "drop_delimiter", "extra_delimiter", "bom", "crlf", "junk"]


@st.composite
def valid_file(draw) -> dict:
    d = draw(st.sampled_from(DELIMITERS))
    nfeat = draw(st.integers(1, 3))
    n = draw(st.integers(1, 40))
    values = draw(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=nfeat, max_size=nfeat), min_size=n, max_size=n))
    header = d.join(["ts", *(f"f{j}" for j in range(nfeat)), "label"])
    rows = []
    for i, vals in enumerate(values):
        fields = [str(1_600_000_000 + i), *(repr(v) for v in vals), str(i % 2)]
        if draw(st.integers(0, 9)) == 0:  # quoted fields are valid too
            fields = [f'"{f}"' for f in fields]
        rows.append(d.join(fields))
    return {"d": d, "nfeat": nfeat, "header": header, "rows": rows, "values": values}


@st.composite
def damaged(draw) -> dict:
    f = draw(valid_file())
    n = len(f["rows"])
    lines: list[bytes] = [r.encode() for r in f["rows"]]
    touched: set[int] = set()
    for _ in range(draw(st.integers(0, min(n, 12)))):
        i = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(MUTATIONS))
        ln = lines[i]
        pos = draw(st.integers(0, len(ln)))
        d = f["d"].encode()
        if kind == "quote":
            ln = ln[:pos] + b'"' + ln[pos:]
        elif kind == "nul":
            ln = ln[:pos] + b"\x00" + ln[pos:]
        elif kind == "bad_utf8":
            ln = ln[:pos] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + ln[pos:]
        elif kind == "huge":  # a line over max_line_bytes
            ln = ln[:pos] + b"9" * draw(st.integers(MAX_LINE, 3 * MAX_LINE)) + ln[pos:]
        elif kind == "long_field":  # long, but the line stays under the limit
            ln = ln[:pos] + b"7" * 150 + ln[pos:]
        elif kind == "drop_delimiter":
            k = ln.find(d)
            ln = ln if k < 0 else ln[:k] + ln[k + 1 :]
        elif kind == "extra_delimiter":
            ln = ln[:pos] + d + ln[pos:]
        elif kind == "bom":
            ln = ln[:pos] + codecs.BOM_UTF8 + ln[pos:]
        elif kind == "crlf":
            ln = ln + b"\r"  # the line's end becomes CRLF: its values must not change
        else:
            ln = ln[:pos] + draw(st.binary(max_size=8)).replace(b"\n", b"").replace(b"\r", b"") + ln[pos:]
        lines[i] = ln
        if kind != "crlf":
            touched.add(i)
    # Blank lines between rows are not records.
    blanks = draw(st.lists(st.integers(0, n), max_size=3))
    out: list[bytes] = [f["header"].encode()]
    row_line: dict[int, int] = {}
    for i, ln in enumerate(lines):
        if i in blanks:
            out.append(draw(st.sampled_from([b"", b" ", b"\t\r"])))
        out.append(ln)
        row_line[i] = len(out)  # 1-based line number
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = eol.join(out) + (eol if draw(st.booleans()) else b"")
    if draw(st.booleans()):
        data = codecs.BOM_UTF8 + data
    return {**f, "data": data, "touched": touched, "row_line": row_line, "nlines": len(out)}


def expected_records(data: bytes) -> list[int]:
    """Line numbers of the non-blank lines after the first non-blank one (the model)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    lines = data.split(b"\n")
    nonblank = [i + 1 for i, ln in enumerate(lines) if ln.strip()]
    return nonblank[1:]


def check_damaged(f: dict, src: CsvSource, X: np.ndarray, offsets: np.ndarray, stamps: np.ndarray, rejects: list, plain: bytes) -> None:
    assert check_reconciled(src, offsets, rejects) == expected_records(plain)
    got = {int(o): (X[k], stamps[k]) for k, o in enumerate(offsets)}
    for i, vals in enumerate(f["values"]):
        if i in f["touched"]:
            continue
        line = f["row_line"][i]
        assert line in got, f"untouched row {i} (line {line}) lost: {[(r.offset, r.code, r.reason) for r in rejects if r.offset == line]}"
        x, ts = got[line]
        assert x.tolist() == [float(v) for v in vals] and ts == 1_600_000_000 + i


@SETTINGS
@given(damaged(), READ_SIZES, st.integers(1, 50))
def test_damage_never_costs_an_untouched_row(f, read_size, chunk_rows):
    src, X, offsets, stamps, rejects = read(f["data"], delimiter=f["d"], schema=Schema(timestamp="ts", label="label"), read_size=read_size, chunk_rows=chunk_rows)
    check_damaged(f, src, X, offsets, stamps, rejects, f["data"])


@settings(max_examples=60, deadline=None)
@given(damaged(), st.integers(1, 60), READ_SIZES)
def test_a_limit_delivers_the_first_records_and_counts_them(f, limit, read_size):
    src, X, offsets, _, rejects = read(f["data"], delimiter=f["d"], limit=limit, read_size=read_size, chunk_rows=7)
    expected = expected_records(f["data"])
    assert check_reconciled(src, offsets, rejects) == expected[:limit]
    assert src.limit_reached == (limit <= len(expected))


@settings(max_examples=40, deadline=None)
@given(damaged(), st.sampled_from(["gzip", "bz2", "xz"]), st.integers(1, 50))
def test_damage_in_compressed_files_reads_like_plain(f, kind, chunk_rows):
    packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](f["data"])
    src, X, offsets, stamps, rejects = read(packed, delimiter=f["d"], schema=Schema(timestamp="ts", label="label"), chunk_rows=chunk_rows)
    assert src.compression == kind
    check_damaged(f, src, X, offsets, stamps, rejects, f["data"])


@settings(max_examples=80, deadline=None)
@given(damaged())
def test_damage_with_a_sniffed_delimiter_still_reconciles(f):
    try:
        src, X, offsets, _, rejects = read(f["data"])
    except InputError:
        # Only the schema can object (e.g. damage made the sniffer pick another delimiter).
        return
    assume(src.delimiter == f["d"])
    assert check_reconciled(src, offsets, rejects) == expected_records(f["data"])
