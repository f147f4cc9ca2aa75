from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from streamad.connectors.csv_source import CsvSource
from streamad.connectors.odds import MatSource, load_mat
from streamad.errors import InputError


def test_odds_v5_file(odds_dir):
    X, y = load_mat(odds_dir / "cardio.mat")
    assert X.shape == (1831, 21) and X.dtype == np.float64
    assert int(y.sum()) == 176


def test_odds_v73_hdf5_file_is_transposed(odds_dir):
    X, y = load_mat(odds_dir / "http.mat")
    assert X.shape == (567498, 3)
    assert int(y.sum()) == 2211


def test_v73_layout_written_by_hand_reads_the_same_as_v5(tmp_path):
    X = np.arange(12, dtype=float).reshape(4, 3)
    y = np.array([[0], [1], [0], [0]], dtype=float)
    scipy.io.savemat(tmp_path / "v5.mat", {"X": X, "y": y})
    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as f:
        f["X"] = X.T  # MATLAB v7.3 stores column-major
        f["y"] = y.T
    for name in ("v5.mat", "v73.mat"):
        X2, y2 = load_mat(tmp_path / name)
        assert X2.tolist() == X.tolist() and y2.tolist() == [0, 1, 0, 0]


def test_mat_without_x_or_y(tmp_path):
    scipy.io.savemat(tmp_path / "noX.mat", {"data": np.zeros((3, 2))})
    with pytest.raises(InputError, match=r"has no 'X' array \(found: data\)"):
        load_mat(tmp_path / "noX.mat")
    scipy.io.savemat(tmp_path / "noy.mat", {"X": np.zeros((3, 2))})
    X, y = load_mat(tmp_path / "noy.mat")
    assert y is None and not MatSource(tmp_path / "noy.mat").has_labels


@pytest.mark.parametrize("content, msg", [(b"", "is empty"), (b"not a matlab file at all" * 10, "not a readable MATLAB")])
def test_bad_mat_files(tmp_path, content, msg):
    p = tmp_path / "bad.mat"
    p.write_bytes(content)
    with pytest.raises(InputError, match=msg):
        load_mat(p)


def test_mat_source_protocol_order_and_limit(odds_dir):
    X, y = load_mat(odds_dir / "wbc.mat")
    src = MatSource(odds_dir / "wbc.mat", permutation_seed=1, limit=100)
    order = np.random.default_rng(1).permutation(len(X))[:100]
    got = np.concatenate([b.X for b in src])
    assert np.array_equal(got, X[order])


def test_skab_csv(skab_dir):
    src = CsvSource(skab_dir / "valve1" / "0.csv", chunk_rows=100)
    assert src.delimiter == ";"
    assert src.schema.timestamp == "datetime" and src.schema.label == "anomaly"
    assert "changepoint" not in src.feature_names and len(src.feature_names) == 8
    batches = list(src)
    assert len(batches) > 5  # streamed in chunks, not loaded whole
    n = sum(len(b) for b in batches)
    assert n == sum(1 for _ in open(skab_dir / "valve1" / "0.csv")) - 1
    assert all(np.all(np.diff(b.timestamps) >= 0) for b in batches)


def write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_bad_rows_are_rejected_with_line_numbers(tmp_path):
    p = write(tmp_path, "a,b,label\n1,2,0\n3\n4,x,0\n5,nan,1\n6,,0\n7,8,1,9\n10,11,0\n")
    batches = list(CsvSource(p))
    good = np.concatenate([b.X for b in batches])
    rejects = [r for b in batches for r in b.rejects]
    assert good.tolist() == [[1, 2], [10, 11]]
    assert [(r.offset, r.code) for r in rejects] == [(3, "column_count"), (4, "non_numeric"), (5, "non_finite"), (6, "missing_field"), (7, "column_count")]
    assert rejects[0].reason == "expected 3 fields, got 1"


def test_csv_empty_binary_and_missing(tmp_path):
    with pytest.raises(InputError, match="is empty"):
        CsvSource(write(tmp_path, "", "e.csv"))
    b = tmp_path / "b.csv"
    b.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(InputError, match="binary"):
        CsvSource(b)
    with pytest.raises(InputError, match="cannot read"):
        CsvSource(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="directory"):
        CsvSource(tmp_path)


def test_csv_undecodable_bytes_become_rejects_not_a_crash(tmp_path):
    p = tmp_path / "u.csv"
    p.write_bytes(b"a,b\n1,2\n3,\xff\xfe\n")
    batches = list(CsvSource(p))
    rejects = [r for b in batches for r in b.rejects]
    assert sum(len(b) for b in batches) == 1 and [(r.offset, r.code, r.field) for r in rejects] == [(3, "undecodable", "b")]
