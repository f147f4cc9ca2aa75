"""Which fields of a record are features, key, event time and label, and how to parse them.

Parsing is where bad input is caught: every record either becomes a row of a `Batch`
or a `Reject` with a reason naming the field. Labels are parsed for evaluation only.

>>> schema = Schema(features=["a", "b"], label="y")
>>> batch = schema.parse_mappings(
...     [{"a": 1, "b": 2.5, "y": 0}, {"a": "x", "b": 1}, {"a": 3}],
...     offsets=[0, 1, 2], lane=Lane("demo"))
>>> batch.X.tolist(), batch.labels.tolist()
([[1.0, 2.5]], [0])
>>> [r.reason for r in batch.rejects]
["non-numeric value 'x' in field 'a'", "missing field 'b'"]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from streamad.errors import InputError
from streamad.records import NO_LABEL, Batch, Lane, Reject

# Column names recognised without being told, in order of preference.
TIMESTAMP_NAMES = ("timestamp", "datetime", "time", "ts", "event_time", "date")
LABEL_NAMES = ("anomaly", "label", "is_anomaly", "outlier", "y", "target")
# Columns that carry ground truth of some kind and must never become features.
GROUND_TRUTH_NAMES = LABEL_NAMES + ("changepoint", "change_point", "anomaly_type")

_TRUE = {"1", "1.0", "true", "yes", "anomaly", "outlier"}
_FALSE = {"0", "0.0", "false", "no", "normal", "inlier", ""}


@dataclass(frozen=True)
class Schema:
    """Field roles. ``features=None`` means every column not given another role."""

    features: tuple[str, ...] | None = None
    key: str | None = None
    timestamp: str | None = None
    label: str | None = None
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(c for c in (self.key, self.timestamp, self.label) if c)

    def resolve(self, columns: Sequence[str], guess: bool = True) -> Schema:
        """Fix the feature list against the columns of a file or first message.

        With ``guess``, a timestamp or label column with a well-known name is picked
        up, and other ground-truth columns (``changepoint``...) are excluded, so that
        ``streamad replay file.csv`` never feeds a label to the model.
        """
        cols = list(columns)
        dupes = sorted({c for c in cols if cols.count(c) > 1})
        if dupes:
            raise InputError(f"duplicate column names: {', '.join(dupes)}")
        # A column the user named as a feature is never guessed into another role.
        named = set(self.features or ()) | {self.key} | set(self.exclude)
        lower = {c.lower(): c for c in cols if c not in named}
        s = self
        if guess and s.timestamp is None:
            hit = next((lower[n] for n in TIMESTAMP_NAMES if n in lower), None)
            s = replace(s, timestamp=hit)
        if guess and s.label is None:
            hit = next((lower[n] for n in LABEL_NAMES if n in lower), None)
            s = replace(s, label=hit)
        for role, name in (("key", s.key), ("timestamp", s.timestamp), ("label", s.label)):
            if name is not None and name not in cols:
                raise InputError(f"{role} column '{name}' not found; columns are: {', '.join(cols)}")
        missing = [c for c in s.exclude if c not in cols]
        if missing:
            raise InputError(f"excluded column(s) not found: {', '.join(missing)}")
        if s.features is None:
            skip = set(s.roles) | set(s.exclude)
            if guess:
                skip |= {c for c in cols if c.lower() in GROUND_TRUTH_NAMES}
            feats = tuple(c for c in cols if c not in skip)
        else:
            absent = [f for f in s.features if f not in cols]
            if absent:
                raise InputError(f"feature column(s) not found: {', '.join(absent)}; columns are: {', '.join(cols)}")
            clash = [f for f in s.features if f in s.roles]
            if clash:
                raise InputError(f"column(s) used both as feature and as key/timestamp/label: {', '.join(clash)}")
            feats = s.features
        if not feats:
            raise InputError("no feature columns left after removing key, timestamp, label and excluded columns")
        return replace(s, features=feats)

    # -- parsing -------------------------------------------------------------------------

    def parse_columns(
        self,
        columns: Mapping[str, Sequence[str]],
        offsets: Sequence[int] | np.ndarray,
        lane: Lane,
        raws: Sequence[Any] | None = None,
        rejects: list[Reject] | None = None,
        arrival: float = 0.0,
    ) -> Batch:
        """Parse text columns (CSV) into a batch; bad rows become rejects."""
        assert self.features is not None, "resolve() the schema first"
        offsets = np.asarray(offsets, dtype=np.int64)
        n = len(offsets)
        rejects = list(rejects or [])
        bad = np.zeros(n, dtype=bool)
        reasons: dict[int, tuple[str, str, str]] = {}
        X = np.empty((n, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            col = columns[name]
            try:
                X[:, j] = np.asarray(col, dtype=np.float64)
            except ValueError:
                for i, v in enumerate(col):
                    try:
                        X[i, j] = float(v)
                    except ValueError:
                        X[i, j] = np.nan
                        if not bad[i]:
                            bad[i] = True
                            text = str(v).strip()
                            reasons[i] = (
                                ("missing_field", f"missing value in field '{name}'", name)
                                if text == ""
                                else ("non_numeric", f"non-numeric value {text[:40]!r} in field '{name}'", name)
                            )
            nonfinite = ~np.isfinite(X[:, j]) & ~bad
            for i in np.flatnonzero(nonfinite).tolist():
                bad[i] = True
                reasons[i] = ("non_finite", f"non-finite value {str(col[i]).strip()[:40]!r} in field '{name}'", name)
        timestamps = None
        if self.timestamp is not None:
            timestamps, tbad = parse_timestamps(columns[self.timestamp])
            for i in np.flatnonzero(tbad & ~bad).tolist():
                bad[i] = True
                value = str(columns[self.timestamp][i])[:40]
                reasons[i] = ("bad_timestamp", f"unparseable or out-of-range timestamp {value!r} in field '{self.timestamp}'", self.timestamp)
        labels = None if self.label is None else parse_labels(columns[self.label])
        keys = None if self.key is None else np.asarray(columns[self.key], dtype=object)
        for i in sorted(reasons):
            code, reason, fld = reasons[i]
            rejects.append(Reject(lane, int(offsets[i]), code, reason, None if raws is None else raws[i], fld))
        rejects.sort(key=lambda r: r.offset)
        good = ~bad
        return Batch(
            lane=lane,
            X=X[good],
            offsets=offsets[good],
            keys=None if keys is None else keys[good],
            timestamps=None if timestamps is None else timestamps[good],
            labels=None if labels is None else labels[good],
            arrival=arrival,
            rejects=rejects,
        )

    def parse_mappings(
        self,
        records: Iterable[Mapping[str, Any]],
        offsets: Sequence[int] | np.ndarray,
        lane: Lane,
        raws: Sequence[Any] | None = None,
        rejects: list[Reject] | None = None,
        arrival: float = 0.0,
    ) -> Batch:
        """Parse decoded JSON objects into a batch; bad records become rejects."""
        assert self.features is not None, "resolve() the schema first"
        feats = self.features
        rows: list[list[float]] = []
        kept: list[int] = []
        keys: list[Any] = []
        stamps: list[float] = []
        labels: list[int] = []
        rejects = list(rejects or [])
        offsets = np.asarray(offsets, dtype=np.int64)
        good: list[Mapping[str, Any]] = []
        for i, rec in enumerate(records):
            code, reason, fld, row = _parse_mapping(rec, feats)
            if code is not None:
                rejects.append(Reject(lane, int(offsets[i]), code, str(reason), None if raws is None else raws[i], fld))
                continue
            rows.append(row)
            kept.append(i)
            good.append(rec)
        if self.timestamp is not None and good:
            # All the records' times in one parse: a date parser's call costs about a
            # millisecond however few texts it is given.
            times = timestamp_values([rec.get(self.timestamp) for rec in good])
            late = np.isnan(times)
            if late.any():
                for j in np.flatnonzero(late).tolist():
                    i = kept[j]
                    reason = f"missing or unparseable timestamp in field '{self.timestamp}'"
                    rejects.append(Reject(lane, int(offsets[i]), "bad_timestamp", reason, None if raws is None else raws[i], self.timestamp))
                rejects.sort(key=lambda r: r.offset)
                fine = np.flatnonzero(~late).tolist()
                rows, kept, good, times = [rows[j] for j in fine], [kept[j] for j in fine], [good[j] for j in fine], times[~late]
            stamps = times.tolist()
        for rec in good:
            if self.key is not None:
                k = rec.get(self.key)
                keys.append(None if k is None else str(k))
            if self.label is not None:
                labels.append(_label_scalar(rec.get(self.label)))
        idx = np.asarray(kept, dtype=np.int64)
        return Batch(
            lane=lane,
            X=np.asarray(rows, dtype=np.float64).reshape(len(rows), len(feats)),
            offsets=offsets[idx] if len(idx) else np.empty(0, dtype=np.int64),
            keys=np.asarray(keys, dtype=object) if self.key is not None else None,
            timestamps=np.asarray(stamps, dtype=np.float64) if self.timestamp is not None else None,
            labels=np.asarray(labels, dtype=np.int8) if self.label is not None else None,
            arrival=arrival,
            rejects=rejects,
        )


def _parse_mapping(rec: Any, feats: Sequence[str]) -> tuple[str | None, str | None, str | None, list[float]]:
    """(code, reason, field, row); code is None when the record is good."""
    if not isinstance(rec, Mapping):
        return "not_object", f"expected a JSON object, got {type(rec).__name__}", None, []
    # Most records are all finite floats: checked at once (a sum of finite floats that
    # overflows, like any other case, goes through the field by field rules below).
    try:
        vals = [rec[f] for f in feats]
    except KeyError:
        pass
    else:
        if all(type(v) is float for v in vals) and math.isfinite(sum(vals)):
            return None, None, None, vals
    row: list[float] = []
    for f in feats:
        try:
            v = rec[f]
        except KeyError:
            return "missing_field", f"missing field '{f}'", f, row
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if v is None:
                return "missing_field", f"missing value (null) in field '{f}'", f, row
            return "non_numeric", f"non-numeric value {str(v)[:40]!r} in field '{f}'", f, row
        try:
            v = float(v)
        except OverflowError:  # an integer beyond the float range
            return "non_finite", f"value out of range in field '{f}'", f, row
        if not math.isfinite(v):
            return "non_finite", f"non-finite value {v!r} in field '{f}'", f, row
        row.append(v)
    return None, None, None, row


def parse_labels(values: Sequence[Any]) -> np.ndarray:
    """0/1-like values to int8; anything else is -1 (unknown)."""
    out = np.full(len(values), NO_LABEL, dtype=np.int8)
    for i, v in enumerate(values):
        out[i] = _label_scalar(v)
    return out


def _label_scalar(v: Any) -> int:
    if v is None:
        return NO_LABEL
    if isinstance(v, (bool, int, float, np.integer, np.floating)):
        if isinstance(v, float) and math.isnan(v):
            return NO_LABEL
        return 1 if float(v) > 0 else 0
    s = str(v).strip().lower()
    if s in _TRUE:
        return 1
    if s in _FALSE and s != "":
        return 0
    try:
        f = float(s)
    except ValueError:
        return NO_LABEL
    return NO_LABEL if math.isnan(f) else int(f > 0)


# Event times must print as dates (detections carry them in ISO 8601): Python's
# datetime holds years 1 to 9999. Anything outside is a bad timestamp, not a crash.
MIN_TIMESTAMP = -62135596800.0  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP = 253402300800.0  # 10000-01-01T00:00:00Z, excluded

_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[ap]\.?m\.?)?", re.I)
_ZONE = re.compile(r"(?:[+-]\d{2}:?\d{2}|\b(?:z|utc|gmt)\b)", re.I)
_MONTH = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?", re.I)


def parse_timestamps(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the epoch, and a mask of values that could not be parsed.

    Numbers are read as epoch seconds, or milliseconds when larger than 1e11;
    text is read as ISO 8601 (naive times are taken as UTC; a column of one plain
    layout by numpy, the rest by pandas), and other date layouts in the one pandas
    guesses from the first of them (``_other_dates``). Text without a full date
    (``12:30:00``, ``Jan 5``) is not completed with today's date or year 1: it is
    bad, as is any time outside the years 1 to 9999. Never raises on a value.
    """
    # A value with a ':' (a time of day) is no number: only the others go through the
    # number parser, which costs several times the date parser (0.8 µs a value).
    timed = np.fromiter((isinstance(v, str) and ":" in v for v in values), dtype=bool, count=len(values))
    num = np.full(len(values), np.nan)
    rest = np.flatnonzero(~timed)
    days = None
    if len(rest):
        undated = [values[i] for i in rest.tolist()]
        # A column of dates without times (2026-01-01) holds no number: read as dates at
        # once, and pandas' number parser need not be imported for it.
        days = _uniform_iso(undated) if all(type(v) is str for v in undated) else None
        if days is None:
            num[rest] = _numbers(undated)
    out = np.where(np.abs(num) > 1e11, num / 1000.0, num)
    if days is not None:
        out[rest] = days
    # Neither numbers nor days: text to parse as a date (numbers that are inf or out of
    # range stay bad).
    text = np.flatnonzero(np.isnan(out))
    if len(text):
        out[text] = _text_timestamps([v if isinstance(v, str) else str(v) for v in (values[i] for i in text.tolist())])
    with np.errstate(invalid="ignore"):
        bad = ~((out >= MIN_TIMESTAMP) & (out < MAX_TIMESTAMP))
    out[bad] = np.nan
    return out, bad


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """Each value as a float, NaN where it is not a number."""
    try:
        return np.asarray(values, dtype=np.float64).reshape(len(values))
    except (ValueError, TypeError, OverflowError):
        pass
    import pandas as pd

    try:
        num = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        if num.shape == (len(values),):
            return num
    except (ValueError, TypeError, OverflowError):
        pass
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if isinstance(v, bool):
            continue
        try:
            out[i] = float(v)
        except (ValueError, TypeError, OverflowError):
            pass
    return out


def _text_timestamps(texts: list[str]) -> np.ndarray:
    """Epoch seconds of date texts, NaN where there is none."""
    same = _uniform_iso(texts)
    if same is not None:
        return same
    out = _to_seconds(texts, "ISO8601")
    rest = np.flatnonzero(np.isnan(out)).tolist()
    if rest:
        out[rest] = _other_dates([texts[i] for i in rest])
    return out


def _other_dates(texts: list[str]) -> np.ndarray:
    """Epoch seconds of dates written otherwise than in ISO 8601.

    A column has one layout: they are read in the one pandas guesses from the first
    (``03/09/2020 10:14:33``: month first, as dateutil reads it), all at once; those
    that do not fit it, each alone by dateutil, which costs about 100 µs a text (a
    column read that way alone took two minutes a million records). A first text
    that can only be day first (``13/09/2020``) makes the column day first, so the
    ``03/10/2020`` after it is 3 October, where dateutil alone would say 10 March."""
    first = next((t for t in texts if _has_date(t)), None)
    layout = None if first is None else _guess_layout(first)
    out = _to_seconds(texts, layout) if layout is not None else np.full(len(texts), np.nan)
    # Text without a full date (12:30, Jan 5) is bad, not completed with today's.
    misfits = [i for i in np.flatnonzero(np.isnan(out)).tolist() if _has_date(texts[i])]
    if misfits:
        out[misfits] = _to_seconds([texts[i] for i in misfits], "mixed")
    return out


def _guess_layout(text: str) -> str | None:
    """The strftime layout pandas guesses for a date text, if it names a four-digit
    year, a month and a day (None otherwise)."""
    import warnings

    from pandas.tseries.api import guess_datetime_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Parsing dates in %d/%m/%Y format when dayfirst=False": what we want
        try:
            layout = guess_datetime_format(text)
        except Exception:  # noqa: BLE001 - no guess is an answer
            return None
    # A two-digit year is left to dateutil, whose century (within 50 years of today)
    # differs from strptime's (1969-2068).
    if layout is None or "%Y" not in layout or "%d" not in layout or not any(m in layout for m in ("%m", "%b", "%B")):
        return None
    return layout


# ISO 8601 as machines write it: a date, or a date and a time to the minute, second or
# microsecond, with or without a zone.
_PLAIN_ISO = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(Z|([+-])([01]\d|2[0-3]):?([0-5]\d))?)?")


def _uniform_iso(texts: list[str]) -> np.ndarray | None:
    """Epoch seconds of texts that are all plain ISO 8601 laid out as the first one
    (its length, digits where it has digits, its separators and its zone), as a
    timestamp column of a file or a producer's batch is; None otherwise.

    numpy's parser reads them, about 40 times as fast as pandas' (which the others go
    through, and whose import alone took half a second of every replay), to the same
    microsecond. An impossible date among them (30 February, 24:00) leaves them all to
    pandas, which judges each."""
    if not texts:
        return None
    first = texts[0]
    m = _PLAIN_ISO.fullmatch(first)
    if m is None or set(map(len, texts)) != {len(first)}:
        return None
    try:
        raw = "".join(texts).encode("ascii")
    except UnicodeEncodeError:
        return None
    grid = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), len(first))
    layout = grid[0]
    zone = m.start(1) if m.group(1) else len(first)
    digit = (layout >= ord("0")) & (layout <= ord("9"))
    digit[zone:] = False  # the zone's digits too must be the same in every text
    cells = grid[:, digit]
    if ((cells < ord("0")) | (cells > ord("9"))).any() or (grid[:, ~digit] != layout[~digit]).any():
        return None
    try:
        us = np.array(texts if zone == len(first) else [t[:zone] for t in texts], dtype="datetime64[us]").astype(np.int64)
    except ValueError:
        return None
    if m.group(2):  # local time at an offset east (+) or west (-) of UTC
        us -= (1 if m.group(2) == "+" else -1) * (int(m.group(3)) * 3600 + int(m.group(4)) * 60) * 1_000_000
    return us / 1e6


def _to_seconds(texts: list[str], fmt: str) -> np.ndarray:
    import pandas as pd

    def convert(items: list[str]) -> np.ndarray:
        parsed = pd.to_datetime(pd.Series(items, dtype=object), errors="coerce", utc=True, format=fmt)
        ok = ~parsed.isna().to_numpy()
        res = np.full(len(items), np.nan)
        if ok.any():
            # Microseconds, whatever unit pandas chose: nanoseconds cannot hold every year.
            us = parsed[ok].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
            res[ok] = us / 1e6
        return res

    # The parser's failure on a text is that text's failure, whatever the exception:
    # one bad value can fail the whole column (out of bounds...), so go one by one.
    try:
        return convert(texts)
    except Exception:
        pass
    res = np.full(len(texts), np.nan)
    for i, t in enumerate(texts):
        try:
            res[i] = convert([t])[0]
        except Exception:
            pass
    return res


def _has_date(text: str) -> bool:
    """Whether a text names a day and a year, once its time of day and zone are set
    aside: three numbers, or two and a month name (``2020-03-09``, ``9/3/20``,
    ``Mar 9 2020``), or a compact ``20200309``."""
    rest = _ZONE.sub(" ", _TIME_OF_DAY.sub(" ", text))
    numbers = re.findall(r"\d+", rest)
    if any(len(n) >= 6 for n in numbers):
        return True
    return len(numbers) + len(_MONTH.findall(rest)) >= 3


def timestamp_values(values: Sequence[Any]) -> np.ndarray:
    """Event times of decoded values (JSON's): epoch seconds, NaN where a value is
    missing, unparseable or out of range. Numbers are read each alone, as
    ``parse_timestamps`` reads them but for booleans, which are no time; texts go
    through ``parse_timestamps`` together."""
    out = np.empty(len(values))
    texts: list[int] = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            texts.append(i)
        else:
            out[i] = _timestamp_scalar(v)
    if texts:
        ts, bad = parse_timestamps([values[i] for i in texts])
        out[texts] = np.where(bad, np.nan, ts)
    return out


def _timestamp_scalar(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return math.nan
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:
            return math.nan
        f = f / 1000.0 if abs(f) > 1e11 else f
        return f if MIN_TIMESTAMP <= f < MAX_TIMESTAMP else math.nan
    arr, bad = parse_timestamps([v])
    return math.nan if bad[0] else float(arr[0])


def split_nonfinite(batch: Batch, names: Sequence[str]) -> Batch:
    """Move rows of an array batch holding NaN or inf into its rejects."""
    finite = np.isfinite(batch.X)
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    if len(bad_rows) == 0:
        return batch
    rejects = list(batch.rejects)
    for i in bad_rows:
        j = int(np.flatnonzero(~finite[i])[0])
        rejects.append(
            Reject(batch.lane, int(batch.offsets[i]), "non_finite", f"non-finite value {float(batch.X[i, j])!r} in field '{names[j]}'", None, names[j])
        )
    good = finite.all(axis=1)
    out = batch.select(good)
    out.rejects = sorted(rejects, key=lambda r: r.offset)
    return out
