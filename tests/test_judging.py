"""Thresholds per key (streamad/judging.py): a lane whose detector keeps a model per key
judges each key's scores against that key's own threshold."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad import Model, detect
from streamad.judging import Judging, PerKeyJudging
from streamad.threshold import SpotThreshold


def steady_and_rough(seed: int, n: int = 3000) -> pd.DataFrame:
    """Two pumps on one stream, pressure following flow: the steady pump's noise is
    Gaussian, the rough pump's heavy-tailed (Student's t, 2 degrees of freedom), so its
    Gaussian's squared distances have a far longer tail. The steady pump's pressure
    jumps by six of its spreads at 20 records after its record 1,500."""
    rng = np.random.default_rng(seed)
    spikes = set(rng.choice(np.arange(1500, n), 20, replace=False).tolist())
    rows = []
    for i in range(n):
        for pump in ("steady", "rough"):
            flow = 5.0 + rng.normal()
            noise = rng.standard_t(2) if pump == "rough" else rng.normal()
            fault = pump == "steady" and i in spikes
            rows.append((1.7e9 + i, pump, flow, flow + 0.3 * noise + (1.8 if fault else 0.0), int(fault)))
    return pd.DataFrame(rows, columns=["ts", "device", "flow", "pressure", "fault"])


def run(df: pd.DataFrame, per_key_thresholds: bool) -> np.ndarray:
    model = Model("per-key", temporal=True)
    if not per_key_thresholds:  # one threshold for the lane, as before thresholds per key
        model.judging = Judging(model.judging.template)
    return detect(df.drop(columns="fault"), model, key="device", timestamp="ts")["is_anomaly"].to_numpy()


def test_a_steady_pump_beside_a_rough_one_is_judged_by_its_own_threshold():
    """One threshold for both is fitted to the rough pump's long tail: the steady pump's
    jumps stay under it (6 of 40 when written). Each with its own, they alarm (25), and
    the false alarms stay few (42 of 12,000 normal records, most in the young estimates)."""
    hits, false = {}, {}
    for own in (True, False):
        hits[own] = false[own] = 0
        for seed in (0, 1):
            df = steady_and_rough(seed)
            alarms = run(df, own)
            y = df["fault"].to_numpy() == 1
            hits[own] += int(alarms[y].sum())
            false[own] += int(alarms[~y].sum())
    assert hits[True] >= 2 * hits[False] + 5, hits  # of 40 jumps
    assert false[True] <= 60, false


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(0, 2**31 - 1))
def test_without_keys_the_keys_thresholds_are_the_lanes_record_for_record(sizes, seed):
    rng = np.random.default_rng(seed)
    one, keyed = Judging(SpotThreshold(min_records=200, skip_first=16)), PerKeyJudging(SpotThreshold(min_records=200, skip_first=16))
    for i, n in enumerate(sizes):
        s = rng.exponential(size=n) * (3.0 if i < 3 else 1.0)
        young = i < 5
        assert np.array_equal(one.alarms(s), keyed.alarms(s))
        assert np.array_equal(one.flagged(s), keyed.flagged(s))
        assert np.allclose(one.tail_probability(s), keyed.tail_probability(s))
        assert np.array_equal(np.broadcast_to(one.values(None, n), n), keyed.values(None, n))
        one.update(s, None, young)
        keyed.update(s, None, young)


def test_keys_thresholds_checkpoint_with_their_pending_scores_and_stay_bounded():
    rng = np.random.default_rng(3)
    keyed = PerKeyJudging(SpotThreshold(min_records=100), max_keys=3)
    keys = np.array(["a", "b", "c", "d"] * 50, dtype=object)
    for i in range(0, 200, 20):
        keyed.update(rng.exponential(size=20), keys[i : i + 20], young=False)
    assert len(keyed.judges) == 3 and keyed.evictions > 0
    state = keyed.state_dict()
    again = PerKeyJudging(SpotThreshold(min_records=100), max_keys=3)
    again.load_state_dict(state)
    assert list(again.judges) == list(keyed.judges) and again.table.pending.keys() == keyed.table.pending.keys()
    s, k = rng.exponential(size=40) * 2, keys[:40]
    for j in (keyed, again):
        j.update(s, k, young=False)
    assert np.array_equal(keyed.values(k, 40), again.values(k, 40))
    assert np.array_equal(keyed.tail_probability(s, k), again.tail_probability(s, k))


def test_a_lane_checkpointed_with_one_threshold_gives_it_to_every_key():
    """A lane of the per-key detector checkpointed before thresholds per key: each key
    starts from the lane's one threshold, so alarms go on through the upgrade."""
    rng = np.random.default_rng(4)
    lane = Judging(SpotThreshold(min_records=200))
    lane.update(rng.exponential(size=2000), None, False)
    keyed = PerKeyJudging(SpotThreshold(min_records=200))
    keyed.load_state_dict(lane.state_dict())
    k = np.array(["new", "other"], dtype=object)
    assert np.array_equal(keyed.values(k, 2), np.full(2, lane.threshold.value))
    assert keyed.alarms(np.array([lane.threshold.value * 2, 0.1]), k).tolist() == [True, False]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abc"), min_size=8, max_size=40), min_size=5, max_size=30), st.integers(0, 2**31 - 1))
def test_the_keys_verdicts_are_each_keys_own_thresholds(windows, seed):
    """Alarms, flags and thresholds worked out per record equal each key's own judge's
    on its records (Threshold.alarms' rule for a young estimate included)."""
    from streamad.minibatch import key_groups

    rng = np.random.default_rng(seed)
    keyed = PerKeyJudging(SpotThreshold(min_records=300, skip_first=16))
    for i, w in enumerate(windows):
        keys = np.array(w, dtype=object)
        # now and then a window that moved as a whole: the young estimate's rule
        s = rng.exponential(size=len(keys)) * np.where(keys == "a", 5.0, 1.0) * (50.0 if i >= 4 and rng.random() < 0.4 else 1.0)
        alarms, flagged, values = keyed.alarms(s, keys), keyed.flagged(s, keys), keyed.values(keys, len(keys))
        for k, rows in key_groups(keys, len(keys)):
            judge = keyed._judge(k)
            assert np.array_equal(alarms[rows], judge.alarms(s[rows]))
            assert np.array_equal(flagged[rows], judge.flagged(s[rows]))
            assert np.array_equal(values[rows], np.full(len(rows), judge.threshold.value))
        keyed.update(s, keys, young=i < 4)


def test_a_short_replay_of_several_devices_says_every_keys_threshold_was_young(tmp_path):
    from tests.conftest import run_cli
    from tests.test_short_streams import pump

    one = pump(3, anomalies=True)
    both = pd.concat([one.assign(dev="a"), one.assign(dev="b")]).sort_values("ts", kind="stable")
    both.to_csv(tmp_path / "two.csv", index=False)
    r = run_cli("replay", str(tmp_path / "two.csv"), "--timestamp", "ts", "--key", "dev", "--out", str(tmp_path / "d.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "every key's threshold was still the small-sample estimate at the end" in r.stdout


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 60), st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=60),
    st.integers(1, 400),
    st.integers(0, 2**31 - 1),
)
def test_a_state_is_adopted_after_so_many_records_flagged_in_a_row_and_only_then(batches, adopt_after, seed):
    """The run counts the records of batches more than half flagged (at the level in force
    before each batch is learned) and restarts at any other batch or a young one; from
    ``adopt_after`` on nothing is flagged, and ``update`` names the lane once, when the
    run crosses it. A key's judge counts as the lane's."""
    rng = np.random.default_rng(seed)
    one = Judging(SpotThreshold(min_records=50), adopt_after=adopt_after)
    keyed = PerKeyJudging(SpotThreshold(min_records=50), adopt_after=adopt_after)
    keys = None
    run, adopting = 0, False
    first = rng.exponential(size=300)
    one.update(first)
    keyed.update(first, keys)
    for n, share, young in batches:
        level = one._flag_level()
        high = rng.random(n) < share
        s = np.where(high, level + 1.0 + rng.exponential(size=n), rng.uniform(0.0, level, size=n) if np.isfinite(level) else 0.0)
        flagged = one.flagged(s)
        assert np.array_equal(flagged, keyed.flagged(s, keys))
        assert not flagged.any() if adopting else np.array_equal(flagged, s > level)
        lasting = not young and 2 * int((s > level).sum()) > n
        run = run + n if lasting else 0
        began = run >= adopt_after and not adopting
        adopting = run >= adopt_after
        assert one.update(s, None, young) == ([None] if began else [])
        assert keyed.update(s, keys, young) == ([None] if began else [])
        assert one.run == keyed.flagged_run(None) == run and one.adopting == adopting
