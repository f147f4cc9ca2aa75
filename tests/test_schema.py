import datetime as dt
import warnings

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


# -- event times of a whole column, and of a batch of decoded records ----------------------

_LAYOUTS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")
_ZONES = ("", "Z", "+00:00", "+05:30", "-0800", "+14:00", "-23:59")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.datetimes(), min_size=1, max_size=12),
    st.sampled_from(_LAYOUTS),
    st.sampled_from(_ZONES),
    st.sampled_from(["", "3", "123"]),
)
def test_a_uniform_iso_column_reads_as_pandas_reads_each_text(moments, layout, zone, cut) -> None:
    """The column path (numpy's parser) gives each text what pandas gives it alone,
    to the bit, in years 1 to 9999 (a batch through pandas loses those outside
    1677-2262, which it holds in nanoseconds)."""
    from streamad.schema import _to_seconds, _uniform_iso

    texts = [f"{m.year:04d}" + m.strftime(layout[2:]) for m in moments]  # strftime's %Y drops a small year's zeros
    if layout.endswith("%f"):
        texts = [t[: len(t) - len(cut)] for t in texts]  # fewer decimals, all alike
    texts = [t + zone for t in texts]
    got = _uniform_iso(texts)
    if zone and layout == "%Y-%m-%d":
        assert got is None  # a zone needs a time (pandas reads none)
        return
    assert got is not None
    want = np.array([_to_seconds([t], "ISO8601")[0] for t in texts])
    np.testing.assert_array_equal(got, want)
    ts, bad = parse_timestamps(texts)
    np.testing.assert_array_equal(ts[~bad], want[~bad])


def test_a_column_that_is_not_uniform_iso_goes_to_pandas() -> None:
    from streamad.schema import _uniform_iso

    for texts in (
        ["2020-03-09T10:14:33", "2020-03-09 10:14:33"],  # separators differ
        ["2020-03-09T10:14:33+01:00", "2020-03-09T10:14:33+02:00"],  # zones differ
        ["2020-02-30T10:14:33"],  # no such day: pandas judges it
        ["2020-03-09T24:00:00"],
        ["2020-03-09T10:14:33.1234567"],  # beyond microseconds
        ["2020-03-09t10:14:33"],
        [" 2020-03-09T10:14:3"],
        ["2020-03-0910:14:33x"],
        ["now"],
        [],
    ):
        assert _uniform_iso(texts) is None, texts
    ts, bad = parse_timestamps(["2020-03-09T10:14:33", "2020-03-09 10:14:34", "2020-02-30T00:00:00", "2020-03-09T10:14:35+01:00"])
    assert bad.tolist() == [False, False, True, False] and ts[1] - ts[0] == 1.0 and ts[3] - ts[0] == 2.0 - 3600.0


_JSON_TIMES = st.one_of(
    st.sampled_from(["2020-03-09T10:14:33Z", "2020-03-09 10:14:34", "2020-03-09T10:14:35+02:00", "garbage", "", "12:30:00", "1583748873", "Mar 9 2020 12:30"]),
    st.integers(-(10**13), 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_JSON_TIMES, st.sampled_from([1.0, "x", None])), max_size=25))
def test_a_batch_of_records_gets_the_times_each_record_gets_alone(rows) -> None:
    """parse_mappings parses a batch's event times together (one date parser call, not
    one a record): each record is kept or rejected, with the same time and reason,
    as it is alone, and the rejects stay in offset order."""
    s = Schema(features=("a",), timestamp="ts", key="k").resolve(["a", "ts", "k"])
    recs = [{"a": a, "ts": t, "k": f"d{i % 3}"} if t is not None or i % 2 else {"a": a, "k": "d"} for i, (t, a) in enumerate(rows)]
    whole = s.parse_mappings(recs, offsets=list(range(len(recs))), lane=LANE)
    alone = [s.parse_mappings([r], offsets=[i], lane=LANE) for i, r in enumerate(recs)]
    assert whole.offsets.tolist() == [i for i, b in enumerate(alone) if len(b)]
    np.testing.assert_array_equal(whole.timestamps, np.array([b.timestamps[0] for b in alone if len(b)]))
    assert whole.keys.tolist() == [b.keys[0] for b in alone if len(b)]
    assert [(r.offset, r.code, r.reason, r.field) for r in whole.rejects] == [(r.offset, r.code, r.reason, r.field) for b in alone for r in b.rejects]
    assert len(whole) + len(whole.rejects) == len(recs)


_OTHER_LAYOUTS = ("%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%a, %d %b %Y %H:%M:%S", "%b %d %Y %H:%M", "%d %b %Y %H:%M:%S", "%Y/%m/%d %H:%M")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.datetimes(min_value=dt.datetime(1980, 1, 1), max_value=dt.datetime(2100, 1, 1)), min_size=1, max_size=15),
    st.sampled_from(_OTHER_LAYOUTS),
    st.lists(st.sampled_from(["12:30", "Jan 5", "garbage", "2020-03-09T10:14:33"]), max_size=3),
)
def test_dates_in_another_layout_are_read_in_the_columns_layout(moments, layout, odd) -> None:
    """A column of dates that are not ISO 8601 is read in the layout guessed from its
    first text, all at once: each text gets what dateutil gives it alone, but where
    the first text can only be day first, which makes the column day first. Texts
    without a full date stay bad; ISO texts among them are read as ISO."""
    from pandas.tseries.api import guess_datetime_format

    from streamad.schema import _to_seconds

    texts = [m.replace(microsecond=0).strftime(layout) for m in moments]
    texts = texts[:1] + odd + texts[1:]
    got, bad = parse_timestamps(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guess = guess_datetime_format(texts[0]) or ""
    day_first = guess.find("%d") < guess.find("%m") and "%m" in guess
    truth = {t: dt.datetime.strptime(t, layout).replace(tzinfo=dt.timezone.utc).timestamp() for t in texts[:1] + texts[1 + len(odd) :]}
    for t, g, b in zip(texts, got, bad):
        if t in ("12:30", "Jan 5", "garbage"):
            assert b
        elif t == "2020-03-09T10:14:33":
            assert g == 1583748873.0
        elif day_first:
            assert g == truth[t]  # the column's layout
        else:
            alone = _to_seconds([t], "mixed")[0]
            assert g == alone or (np.isnan(alone) and b)
            if "%d/%m" not in layout and "%d.%m" not in layout:
                assert g == truth[t]  # month first, or a month's name: no doubt


def dateutil_year(yy: int) -> int:
    from dateutil.parser import parse

    return parse(f"01/01/{yy:02d}").year


def test_a_column_that_starts_day_first_stays_day_first() -> None:
    ts, bad = parse_timestamps(["13/09/2020 10:00", "03/10/2020 10:00", "garbage", "12:30"])
    assert bad.tolist() == [False, False, True, True]
    assert dt.datetime.fromtimestamp(ts[1], dt.timezone.utc).date() == dt.date(2020, 10, 3)
    ts, _ = parse_timestamps(["03/09/75 10:00", "03/09/20 10:00"])  # two-digit years: dateutil's century, as before
    assert [dt.datetime.fromtimestamp(t, dt.timezone.utc).year for t in ts] == [dateutil_year(75), 2020]
    ts, _ = parse_timestamps(["03/10/2020 10:00", "13/09/2020 10:00"])  # month first, as dateutil reads it, until it cannot be
    assert [dt.datetime.fromtimestamp(t, dt.timezone.utc).date() for t in ts] == [dt.date(2020, 3, 10), dt.date(2020, 9, 13)]
