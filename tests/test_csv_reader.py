"""The CSV reader loses no row: each case users reported, through the reader and the CLI.

Every data line of a file ends up scored or rejected with its line number, and the
reader's own tally always equals the byte-level count of records (`records_in_file`).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import re
from pathlib import Path

import numpy as np
import pytest

from streamad.connectors.csv_source import CsvSource
from streamad.connectors.textio import RecordCounter, physical_lines
from streamad.errors import InputError
from streamad.schema import Schema, parse_timestamps
from tests.conftest import run_cli


def read_all(src: CsvSource) -> tuple[np.ndarray, np.ndarray, list]:
    """(X, offsets, rejects) of a whole read, checking the reconciliation on the way."""
    batches = list(src)
    X = np.concatenate([b.X for b in batches]) if batches else np.empty((0, len(src.feature_names)))
    offsets = np.concatenate([b.offsets for b in batches]) if batches else np.empty(0, dtype=np.int64)
    rejects = [r for b in batches for r in b.rejects]
    delivered = len(offsets) + len(rejects)
    assert src.records_delivered == delivered
    assert src.records_in_file == delivered, (src.records_in_file, delivered)
    assert len(set(offsets.tolist()) | {r.offset for r in rejects}) == delivered  # each line once
    return X, offsets, rejects


def sensor_rows(n: int, delimiter: str = ",") -> list[str]:
    """A header and ``n`` rows whose values say their own line number (row i is line i + 2)."""
    return [delimiter.join(["ts", "a", "b"])] + [delimiter.join([str(1_700_000_000 + i), f"{i}.5", str(-i)]) for i in range(n)]


def write_lines(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_bytes((end.join(lines) + end).encode())
    return path


# -- the reported cases ---------------------------------------------------------------------


def unbalanced_quote_file(path: Path) -> Path:
    lines = sensor_rows(3000)
    lines[1000] = '1700000999,"999.5,-999'  # file line 1,001
    return write_lines(path, lines)


def test_an_unbalanced_quote_rejects_its_line_only(tmp_path):
    src = CsvSource(unbalanced_quote_file(tmp_path / "q.csv"))
    X, offsets, rejects = read_all(src)
    assert len(X) == 2999 and src.records_in_file == 3000
    assert [(r.offset, r.code) for r in rejects] == [(1001, "malformed")]
    assert "unbalanced quote" in rejects[0].reason and rejects[0].raw == '1700000999,"999.5,-999'
    # The rows after it are all there, with their own values.
    assert offsets[-1] == 3001 and X[-1].tolist() == [2999.5, -2999.0]
    assert X[999].tolist() == [1000.5, -1000.0] and offsets[999] == 1002


def test_quotes_within_a_line_are_honoured(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('a,note,b\n1,"x, y",2\n"3","say ""hi""",4\n5,"x"y,6\n7,plain"quote,8\n')
    X, offsets, rejects = read_all(CsvSource(p, Schema(features=("a", "b"))))
    assert X.tolist() == [[1, 2], [3, 4], [7, 8]] and offsets.tolist() == [2, 3, 5]
    assert [(r.offset, r.code) for r in rejects] == [(4, "malformed")]


def test_a_field_over_the_old_131072_character_limit_loses_nothing(tmp_path):
    lines = ["a,b,note"] + [f"{i},{i},ok" for i in range(100)]
    lines[10] = "9,9," + "n" * 200_000  # ignored column: the row is fine
    lines[20] = "9," + "7" * 200_000 + ",x"  # a feature: not a number that fits a float
    X, offsets, rejects = read_all(CsvSource(write_lines(tmp_path / "f.csv", lines), Schema(features=("a", "b"))))
    assert len(X) == 99 and 11 in offsets.tolist()
    assert [(r.offset, r.code) for r in rejects] == [(21, "non_finite")]
    assert len(rejects[0].reason) < 200


@pytest.mark.parametrize("at_end", [False, True])
def test_a_line_over_max_line_bytes_is_rejected_and_skipped(tmp_path, at_end):
    lines = sensor_rows(50)
    huge = "1," + "9" * 3_000_000 + ",3"
    if at_end:
        lines.append(huge)
        path = tmp_path / "h.csv"
        path.write_bytes("\n".join(lines).encode())  # no newline after the huge last line
    else:
        lines[20] = huge
        path = write_lines(tmp_path / "h.csv", lines)
    X, offsets, rejects = read_all(CsvSource(path, max_line_bytes=1 << 20))
    assert [(r.offset, r.code) for r in rejects] == [(len(lines) if at_end else 21, "oversized")]
    assert "3,000,004 bytes" in rejects[0].reason and len(rejects[0].raw) <= 1000
    assert len(X) == 50 if at_end else 49


def test_invalid_utf8_rejects_the_row_only_when_a_used_field_holds_it(tmp_path):
    p = tmp_path / "u.csv"
    p.write_bytes(b"a,b,comment\n1,2,caf\xe9\n3,\xff4,x\n5,6,ok\n")
    X, offsets, rejects = read_all(CsvSource(p, Schema(features=("a", "b"))))
    assert X.tolist() == [[1, 2], [5, 6]] and offsets.tolist() == [2, 4]
    assert [(r.offset, r.code, r.field) for r in rejects] == [(3, "undecodable", "b")]


def test_a_nul_byte_spoils_its_row_not_the_file(tmp_path):
    p = tmp_path / "n.csv"
    p.write_bytes(b"a,b\n1,2\n3,\x004\n5,6\n")
    X, offsets, rejects = read_all(CsvSource(p))
    assert X.tolist() == [[1, 2], [5, 6]] and [(r.offset, r.code) for r in rejects] == [(3, "non_numeric")]


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(200),
        b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4,
        "a,b\n1,2\n".encode("utf-16-le"),  # UTF-16 without its byte-order mark
        b"a,b\n" + bytes(range(1, 9)) * 200,  # mostly control bytes after a text header
    ],
)
def test_binary_files_are_refused_as_a_whole(tmp_path, content):
    p = tmp_path / "bin.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match="looks like a binary file"):
        CsvSource(p)


def test_utf8_bom_is_stripped_from_the_first_column_name(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(codecs.BOM_UTF8 + b"ts,val\n1700000000,1\n1700000001,2\n")
    src = CsvSource(p, Schema(timestamp="ts"))
    assert src.columns == ["ts", "val"] and src.bom == "utf-8"
    X, _, rejects = read_all(src)
    assert X.tolist() == [[1], [2]] and not rejects


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_bom_read_like_utf8(tmp_path, encoding):
    text = "ts,température\n1700000000,1.5\n1700000001,2.5\n"
    data = text.encode(encoding)
    if not data.startswith((codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        data = (codecs.BOM_UTF16_BE if encoding == "utf-16-be" else b"") + data
    p = tmp_path / "w.csv"
    p.write_bytes(data)
    src = CsvSource(p)
    assert src.columns == ["ts", "température"] and src.schema.timestamp == "ts"
    X, offsets, rejects = read_all(src)
    assert X.tolist() == [[1.5], [2.5]] and offsets.tolist() == [2, 3] and not rejects


@pytest.mark.parametrize(
    "wanted, header, hint",
    [("TS", "ts,val", "letter case"), ("ts", "t\u200bs,val", "invisible characters"), ("val", "ts,val\u00a0x", None)],
)
def test_a_column_that_only_looks_like_the_named_one_is_pointed_out(tmp_path, wanted, header, hint):
    p = tmp_path / "c.csv"
    p.write_text(f"{header}\n1,2\n")
    with pytest.raises(InputError) as e:
        CsvSource(p, Schema(timestamp=wanted) if wanted != "val" else Schema(features=("val",)))
    msg = str(e.value)
    assert "not found" in msg
    if hint:
        assert f"differs from it only in {hint}" in msg
        assert repr(header.split(",")[0]) in msg  # the invisible character shows, escaped
    else:
        assert "differs" not in msg


def test_a_skab_file_saved_with_a_bom_reads_like_the_original(skab_dir, tmp_path):
    original = skab_dir / "valve1" / "0.csv"
    p = tmp_path / "0.csv"
    p.write_bytes(codecs.BOM_UTF8 + original.read_bytes())
    src = CsvSource(p)
    assert src.schema.timestamp == "datetime" and src.schema.label == "anomaly"
    X, _, rejects = read_all(src)
    assert len(X) == 1147 and not rejects
    X0, _, _ = read_all(CsvSource(original))
    assert np.array_equal(X, X0)


# -- timestamps -----------------------------------------------------------------------------


def test_timestamps_never_raise_and_bad_ones_are_rejected_per_row(tmp_path):
    values = ["2020-03-09 10:14:33", "12:30:00", "NaT", "1e30", "-5", "01/02/2020", "1583748873", "Jan 5", "3000-01-01", "10000-01-01", "", "1583748873000", "99999999999999999999999", "nan"]
    ts, bad = parse_timestamps(values)
    assert bad.tolist() == [False, True, True, True, False, False, False, True, False, True, True, False, True, True]
    assert ts[0] == 1583748873.0 and ts[4] == -5.0 and ts[11] == 1583748873.0
    p = tmp_path / "t.csv"
    p.write_text("ts,a\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values)))
    X, offsets, rejects = read_all(CsvSource(p, Schema(timestamp="ts")))
    assert {r.offset - 2 for r in rejects} == {i for i, b in enumerate(bad) if b}
    assert all(r.code == "bad_timestamp" for r in rejects)


def test_a_time_of_day_is_never_completed_with_todays_date():
    ts, bad = parse_timestamps(["12:30:00", "12:30", "12:30:00+05:00", "2020-03-09 12:30:00", "Mar 9 2020 12:30"])
    assert bad.tolist() == [True, True, True, False, False]
    assert ts[3] == ts[4] == 1583757000.0


# -- compression ----------------------------------------------------------------------------

COMPRESSORS = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
@pytest.mark.parametrize("name", ["data.csv.gz", "data.csv"])
def test_compressed_files_read_like_plain_ones_whatever_their_name(tmp_path, kind, name):
    plain = write_lines(tmp_path / "plain.csv", sensor_rows(20_000))
    p = tmp_path / name
    p.write_bytes(COMPRESSORS[kind](plain.read_bytes()))
    src = CsvSource(p, chunk_rows=1000)
    assert src.compression == kind
    X, offsets, rejects = read_all(src)
    X0, offsets0, _ = read_all(CsvSource(plain))
    assert np.array_equal(X, X0) and np.array_equal(offsets, offsets0) and not rejects
    assert src.progress == (p.stat().st_size, p.stat().st_size)  # over the compressed bytes
    assert physical_lines(p) == 20_001 and src.end_offset() == 20_002


def test_a_plain_file_named_gz_is_read_as_plain(tmp_path):
    X, _, _ = read_all(CsvSource(write_lines(tmp_path / "x.csv.gz", sensor_rows(5))))
    assert len(X) == 5


def test_zstd(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    plain = write_lines(tmp_path / "plain.csv", sensor_rows(50_000)).read_bytes()
    p = tmp_path / "x.csv.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(plain))
    src = CsvSource(p)
    assert src.compression == "zstd"
    X, _, _ = read_all(src)
    assert len(X) == 50_000
    # Cut off: the last, partial line is not taken for a whole one.
    p.write_bytes(zstandard.ZstdCompressor().compress(plain)[:-100])
    src = CsvSource(p)
    X, _, rejects = read_all(src)
    assert src.read_error and [r.code for r in rejects] == ["truncated"]
    assert X[-1].tolist() == [len(X) - 1 + 0.5, -(len(X) - 1)]


def test_a_cut_off_gzip_keeps_what_came_before_and_says_so(tmp_path):
    data = gzip.compress(write_lines(tmp_path / "plain.csv", sensor_rows(20_000)).read_bytes())
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(data[: len(data) * 2 // 3])
    src = CsvSource(p)
    X, offsets, rejects = read_all(src)
    assert 10_000 < len(X) < 20_000
    assert X[-1].tolist() == [offsets[-1] - 2 + 0.5, -(offsets[-1] - 2)]  # rows are whole
    assert [r.code for r in rejects] in ([], ["truncated"])
    assert src.read_error is not None and "could not be read" in src.notes[0]


def test_a_corrupt_head_is_one_clear_error(tmp_path):
    p = tmp_path / "bad.csv.gz"
    p.write_bytes(gzip.compress(b"a,b\n1,2\n")[:6])
    with pytest.raises(InputError, match="cannot decompress"):
        CsvSource(p)


# -- lines and counts -----------------------------------------------------------------------


def test_blank_lines_crlf_and_a_last_line_without_newline(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(b"\r\n  \na,b\r\n1,2\r\n\r\n \t\r\n3,4\r\n5,6")
    src = CsvSource(p)
    assert src.columns == ["a", "b"]
    X, offsets, _ = read_all(src)
    assert X.tolist() == [[1, 2], [3, 4], [5, 6]] and offsets.tolist() == [4, 7, 8]
    assert physical_lines(p) == 8


def test_old_mac_line_ends(tmp_path):
    p = tmp_path / "cr.csv"
    p.write_bytes(b"a,b\r1,2\r3,4\r")
    X, offsets, _ = read_all(CsvSource(p))
    assert X.tolist() == [[1, 2], [3, 4]] and offsets.tolist() == [2, 3]


def test_single_column_and_tab_delimited_blank_lines(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("a\n1\n\n \n2\n")
    X, offsets, _ = read_all(CsvSource(p))
    assert X.tolist() == [[1], [2]] and offsets.tolist() == [2, 5]
    p = tmp_path / "tab.tsv"
    p.write_text("a\tb\n1\t2\n\t\n3\t4\n")  # a line of one tab is blank, not two empty fields
    X, offsets, _ = read_all(CsvSource(p))
    assert X.tolist() == [[1, 2], [3, 4]] and offsets.tolist() == [2, 4]


def test_limit_counts_the_records_it_stopped_at(tmp_path):
    src = CsvSource(unbalanced_quote_file(tmp_path / "q.csv"), limit=1500, chunk_rows=700)
    X, offsets, rejects = read_all(src)
    assert src.limit_reached and len(X) + len(rejects) == 1500 == src.records_in_file
    assert offsets[-1] == 1501
    src = CsvSource(tmp_path / "q.csv", limit=10_000)
    read_all(src)
    assert not src.limit_reached and src.records_in_file == 3000


def test_small_chunks_give_the_same_batches_in_order(tmp_path):
    p = unbalanced_quote_file(tmp_path / "q.csv")
    X1, o1, r1 = read_all(CsvSource(p, chunk_rows=7))
    X2, o2, r2 = read_all(CsvSource(p))
    assert np.array_equal(X1, X2) and np.array_equal(o1, o2) and r1 == r2
    assert np.all(np.diff(o1) > 0)


def test_record_counter_is_blind_to_chunk_boundaries():
    data = b"h\n\n 1\n\t\r\n2\n  \n\n3"
    expected = sum(1 for ln in data.split(b"\n") if ln.strip())
    for size in range(1, len(data) + 1):
        c = RecordCounter()
        for k in range(0, len(data), size):
            c.feed(data[k : k + size])
        c.finish()
        assert (c.nonblank, c.physical_lines) == (expected, 8), size


def test_a_header_only_file_has_no_records_and_empty_files_are_refused(tmp_path):
    X, _, _ = read_all(CsvSource(write_lines(tmp_path / "h.csv", ["a,b"])))
    assert len(X) == 0
    for content in (b"", b"\n \n", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"\r\n"):
        (tmp_path / "e.csv").write_bytes(content)
        with pytest.raises(InputError, match="is empty"):
            CsvSource(tmp_path / "e.csv")


def test_a_header_with_a_bad_quote_is_one_clear_error(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text('a,"b\n1,2\n')
    with pytest.raises(InputError, match="column names are not valid CSV"):
        CsvSource(p)


# -- through the command line ---------------------------------------------------------------


def summary_value(out: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}\s+(.+)$", out, re.M)
    assert m, f"{name!r} missing from summary:\n{out}"
    return m.group(1)


def replay(path: Path, tmp_path: Path, *args: str) -> tuple[str, dict]:
    r = run_cli("replay", str(path), "--out-dir", str(tmp_path / "out"), "--summary-json", str(tmp_path / "s.json"), "--no-progress", *args)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert summary_value(r.stdout, "reconciled").startswith("yes")
    return r.stdout, json.loads((tmp_path / "s.json").read_text())


def test_cli_unbalanced_quote(tmp_path):
    out, s = replay(unbalanced_quote_file(tmp_path / "q.csv"), tmp_path, "--timestamp", "ts", "--rejects", str(tmp_path / "rejects.csv"))
    assert summary_value(out, "records read") == "3,000"
    assert summary_value(out, "scored") == "2,999"
    assert summary_value(out, "rejected") == "1  (malformed: 1)"
    rejects = (tmp_path / "rejects.csv").read_text().splitlines()
    assert len(rejects) == 2 and rejects[1].split(",")[2:4] == ["1001", "malformed"]


def test_cli_oversized_field(tmp_path):
    lines = sensor_rows(3000)
    lines[500] = "1700000499,499.5," + "9" * 200_000  # a feature far over the old field limit
    lines[1500] = "1700001499,1499.5,-1499," + "x" * 2_000_000  # a line over 1 MiB
    out, s = replay(write_lines(tmp_path / "big.csv", lines), tmp_path)
    assert (s["read"], s["scored"], s["rejected"]) == (3000, 2998, 2)
    assert s["rejected_by_code"] == {"non_finite": 1, "oversized": 1}


def test_cli_skab_file_with_a_bom(skab_dir, tmp_path):
    p = tmp_path / "valve.csv"
    p.write_bytes(codecs.BOM_UTF8 + (skab_dir / "valve1" / "0.csv").read_bytes())
    out, s = replay(p, tmp_path)
    assert (s["read"], s["scored"], s["rejected"]) == (1147, 1147, 0)
    assert "timestamp: datetime, label: anomaly; delimiter ';'" in out


def test_cli_gzip(tmp_path):
    p = tmp_path / "g.csv.gz"
    p.write_bytes(gzip.compress(write_lines(tmp_path / "plain.csv", sensor_rows(2500)).read_bytes()))
    out, s = replay(p, tmp_path, "--timestamp", "ts")
    assert (s["read"], s["scored"], s["rejected"]) == (2500, 2500, 0)
