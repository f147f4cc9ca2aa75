"""Detection messages: the event time of every record is the text Python's datetime
gives (the contract's ``event_time``), though computed for a window at once."""

from datetime import datetime, timezone

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.detection import DetectionBatch, event_times
from streamad.records import Lane
from streamad.schema import MAX_TIMESTAMP, MIN_TIMESTAMP


def python_iso(t: float) -> str | None:
    return None if t != t else datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


stamps = st.one_of(
    st.floats(MIN_TIMESTAMP, MAX_TIMESTAMP, exclude_max=True),
    st.integers(0, 4_102_444_800).map(float),  # whole seconds: no fraction printed
    st.integers(0, 4_102_444_800_000).map(lambda ms: ms / 1000.0),  # milliseconds, as CSVs carry them
    st.floats(-1.0, 1.0),  # around the epoch, where the fraction's sign flips
    st.just(float("nan")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(stamps, min_size=1, max_size=40))
def test_event_times_are_pythons_isoformat_of_each_stamp(values):
    assert event_times(np.array(values)) == [python_iso(t) for t in values]


def test_half_microseconds_round_to_even_as_python_does():
    values = [1.5e-6, 2.5e-6, -1.5e-6, 1_700_000_000.0000005, 0.9999995]
    assert event_times(np.array(values)) == [python_iso(t) for t in values]


def test_a_message_carries_the_event_time_and_a_missing_one_is_null():
    d = DetectionBatch(
        lane=Lane("pumps", 0), offsets=np.array([7, 8]), keys=np.array(["a", "b"], dtype=object),
        timestamps=np.array([1_767_225_600.25, np.nan]), scores=np.array([1.0, 2.0]), threshold=float("inf"),
        is_anomaly=np.array([False, True]), tail_probability=np.array([0.5, 1e-5]),
        top_features=[[], [("flow", 1.0)]], model="loe-ae", model_version="3",
    )  # fmt: skip
    first, second = (orjson.loads(m.value) for m in d.messages())
    assert first["event_time"] == "2026-01-01T00:00:00.250000+00:00" and first["timestamp"] == 1_767_225_600.25
    assert second["event_time"] is None and second["timestamp"] is None
    assert first["threshold"] is None and second["features"] == [{"name": "flow", "share": 1.0}]
    assert [m.id for m in d.messages()] == ["pumps/0/7", "pumps/0/8"] and first["key"] == "a"
