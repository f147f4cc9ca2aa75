import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.errors import InputError
from streamad.records import Lane
from streamad.schema import Schema, parse_timestamps

LANE = Lane("t")


def test_resolve_guesses_roles_and_excludes_ground_truth():
    s = Schema().resolve(["datetime", "a", "b", "anomaly", "changepoint"])
    assert s.timestamp == "datetime" and s.label == "anomaly"
    assert s.features == ("a", "b")


def test_resolve_without_guessing_keeps_every_column():
    s = Schema().resolve(["a", "anomaly"], guess=False)
    assert s.features == ("a", "anomaly") and s.label is None


@pytest.mark.parametrize(
    "schema, cols, msg",
    [
        (Schema(features=("a", "zz")), ["a", "b"], "feature column(s) not found: zz"),
        (Schema(label="nope"), ["a"], "label column 'nope' not found"),
        (Schema(exclude=("q",)), ["a"], "excluded column(s) not found: q"),
        (Schema(features=("a",), label="a"), ["a"], "both as feature and as key/timestamp/label"),
        (Schema(), ["a", "a"], "duplicate column names: a"),
        (Schema(exclude=("a",)), ["a"], "no feature columns left"),
    ],
)
def test_resolve_errors_are_clear(schema, cols, msg):
    with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        schema.resolve(cols)


def test_parse_columns_rejects_each_kind_of_bad_value_with_its_row():
    s = Schema(features=("a", "b")).resolve(["a", "b"])
    cols = {"a": ["1", "", "x", "nan", "2", "inf"], "b": ["1", "1", "1", "1", "-3e2", "1"]}
    b = s.parse_columns(cols, offsets=[2, 3, 4, 5, 6, 7], lane=LANE)
    assert b.X.tolist() == [[1.0, 1.0], [2.0, -300.0]]
    assert b.offsets.tolist() == [2, 6]
    got = [(r.offset, r.code) for r in b.rejects]
    assert got == [(3, "missing_field"), (4, "non_numeric"), (5, "non_finite"), (7, "non_finite")]
    assert "non-numeric value 'x' in field 'a'" in b.rejects[1].reason


def test_parse_mappings_every_reject_code():
    s = Schema(features=("a",), timestamp="ts").resolve(["a", "ts"])
    recs = [{"a": 1, "ts": 10}, [1], {"ts": 1}, {"a": None, "ts": 1}, {"a": "7", "ts": 1}, {"a": True, "ts": 1}, {"a": float("inf"), "ts": 1}, {"a": 1, "ts": "soon"}]
    b = s.parse_mappings(recs, offsets=range(8), lane=LANE)
    assert len(b) == 1 and b.timestamps.tolist() == [10.0]
    assert [r.code for r in b.rejects] == ["not_object", "missing_field", "missing_field", "non_numeric", "non_numeric", "non_finite", "bad_timestamp"]
    assert len(b) + len(b.rejects) == len(recs)


def test_labels_are_parsed_leniently_and_never_reject():
    s = Schema(features=("a",), label="y").resolve(["a", "y"])
    b = s.parse_columns({"a": ["1", "2", "3", "4"], "y": ["1", "0", "", "maybe"]}, [1, 2, 3, 4], LANE)
    assert b.labels.tolist() == [1, 0, -1, -1] and not b.rejects


def test_timestamps_iso_and_epoch_units():
    ts, bad = parse_timestamps(["2020-03-09 10:14:33", "2020-03-09T10:14:34Z", "garbage"])
    assert ts[1] - ts[0] == 1.0 and bad.tolist() == [False, False, True]
    assert abs(ts[0] - 1583748873.0) < 1e-6
    ms, _ = parse_timestamps([1583748873000, 1583748874000])
    assert ms.tolist() == [1583748873.0, 1583748874.0]


def test_explicit_features_are_never_guessed_into_another_role():
    s = Schema(features=("y", "time")).resolve(["y", "time", "anomaly"])
    assert s.features == ("y", "time") and s.label == "anomaly" and s.timestamp is None


def test_integers_beyond_the_float_range_are_rejected_not_fatal():
    s = Schema(features=("a",)).resolve(["a"])
    b = s.parse_mappings([{"a": 10**400}, {"a": 1}], offsets=[0, 1], lane=LANE)
    assert len(b) == 1 and b.rejects[0].code == "non_finite" and "out of range" in b.rejects[0].reason


_STAMPS = st.one_of(
    st.sampled_from(["2020-03-09 10:14:33", "2020-03-09T10:14:34Z", "12:30:00", "1:2", ":", "1e9:", "2020-03-09", "Mar 9 2020 12:30", "", "nan", "inf", "1583748873", "1583748873000", "-1"]),
    st.integers(-(10**13), 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="0123456789:-.eT ", max_size=20),
    st.none(),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_STAMPS, max_size=30))
def test_timestamps_with_a_colon_skip_the_number_parser_and_mean_the_same(values: list) -> None:
    """parse_timestamps sends values with a ':' (times of day) straight to the date
    parser: safe because the number parser never reads one as a number, and a batch
    gives each value what it gets among its own kind."""
    from streamad.schema import _numbers

    colon = np.array([isinstance(v, str) and ":" in v for v in values], dtype=bool)
    assert np.isnan(_numbers(values)[colon]).all()
    got, bad = parse_timestamps(values)
    for part in (colon, ~colon):
        alone, alone_bad = parse_timestamps([v for v, k in zip(values, part) if k])
        np.testing.assert_array_equal(got[part], alone)
        assert np.array_equal(bad[part], alone_bad)
