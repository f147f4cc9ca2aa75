"""Windows on a lane of several keys: counted per key, bounded in all, nothing lost."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.config import load_settings
from streamad.connectors.sinks import MemorySink
from streamad.pipeline import Observer, Pipeline
from streamad.records import Batch, Lane
from streamad.window import WindowBuffer


def _cut(buf: WindowBuffer, keys: list[str], parts: list[int]) -> list[Batch]:
    """``keys`` fed in batches of ``parts`` records, then the rest flushed."""
    out: list[Batch] = []
    start = 0
    for n in [*parts, len(keys)]:
        stop = min(len(keys), start + n)
        if stop > start:
            ks = np.array(keys[start:stop], dtype=object)
            out += buf.add(Batch(Lane("s"), np.zeros((stop - start, 1)), np.arange(start, stop), keys=ks))
        start = stop
    if len(buf):
        out.append(buf.flush())
    return out


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=400),
    parts=st.lists(st.integers(1, 60), max_size=20),
    size=st.integers(1, 16),
    initial=st.one_of(st.none(), st.integers(1, 16)),
    max_records=st.one_of(st.none(), st.integers(1, 64)),
)
def test_windows_keep_every_record_and_their_bounds(keys, parts, size, initial, max_records):
    initial = None if initial is None else min(initial, size)
    buf = WindowBuffer(size, initial_size=initial, max_records=max_records)
    windows = _cut(buf, keys, parts)
    # Every record once, in order, whatever the batches were.
    assert np.concatenate([w.offsets for w in windows]).tolist() == list(range(len(keys)))
    cap = max(size, max_records or size)
    for i, w in enumerate(windows):
        per_key = max(np.unique(w.keys, return_counts=True)[1])
        assert per_key <= size and len(w) <= cap
        if i < len(windows) - 1 and initial is None:
            # A window closed before the end: one key reached the size, or it is full.
            assert per_key == size or len(w) == cap


def test_one_key_is_cut_as_records_without_keys():
    keys = ["pump"] * 100
    with_keys = _cut(WindowBuffer(32, initial_size=8, max_records=256), keys, [17])
    without = WindowBuffer(32, initial_size=8).add(Batch(Lane("s"), np.zeros((100, 1)), np.arange(100)))
    assert [len(w) for w in with_keys] == [len(w) for w in without] + [100 - sum(len(w) for w in without)]
    assert [len(w) for w in with_keys][:4] == [8, 16, 32, 32]


class Sizes(Observer):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_window(self, r) -> None:
        self.sizes.append(len(r.window))


def test_a_fleet_is_judged_in_windows_of_many_devices():
    """Forty devices in turn, then one alone: the sensor default's windows hold up to 32
    records of a device and 256 in all, so the fleet's are 256 long (about six records
    of each device) and the lone device's 32, and every record is scored."""
    rng = np.random.default_rng(0)
    n_fleet, n_alone = 40 * 60, 200
    keys = np.array([f"pump-{i % 40}" for i in range(n_fleet)] + ["pump-0"] * n_alone, dtype=object)
    X = rng.normal(size=(len(keys), 3))
    t = 1.7e9 + np.arange(len(keys), dtype=np.float64)
    s = load_settings(overrides={"record": {"key": "device"}}, env={})
    sizes = Sizes()
    p = Pipeline(s, MemorySink(), feature_names=["a", "b", "c"], observers=[sizes])
    p.process(Batch(Lane("fleet"), X, np.arange(len(keys)), keys=keys, timestamps=t))
    p.drain()
    assert p.counts.scored == len(keys)
    assert p.lanes[Lane("fleet")].detector.name == "per-key"
    assert sizes.sizes[:3] == [64, 128, 256]  # 8, 16, 32 records of a device, at most 256
    fleet_windows = [n for n in sizes.sizes if n == 256]
    assert len(fleet_windows) >= (n_fleet - 448) // 256
    assert sizes.sizes[-3:-1] == [32, 32]  # the device alone: its windows of 32
