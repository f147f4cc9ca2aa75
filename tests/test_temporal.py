"""The temporal stage: per-key context computed window by window, the same as record by
record; only records before a record feed its context; a bounded key table; state that
survives checkpoints; and what it buys: a frozen sensor caught and named."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad import checkpoint
from streamad.app.replay import Recorder
from streamad.config import load_settings
from streamad.connectors.sinks import MemorySink
from streamad.model import Model
from streamad.pipeline import Pipeline, detect
from streamad.records import Lane
from streamad.sources import ArraySource
from streamad.state import StateStore
from streamad.temporal import FLAGGED_WEIGHT, GROUPS, STEP_CLIP, VOL_FLOOR, KeyStates, TemporalFeatures
from tests.conftest import restart_halfway

ALL = ("jump", "diff", "drift", "vol", "run", "gap")


def reference(X, keys, ts, flagged=None, window_starts=(), short=8, long=256, h=5):
    """The definition, one record at a time: what each derived column means."""
    a_s, a_l = 2 / (short + 1), 2 / (long + 1)
    state: dict = {}
    cap_at_window: dict = {}
    starts = set(window_starts) | {0}
    rows = []
    for i, x in enumerate(X):
        if i in starts:  # a step is clipped by its key's usual step as of before the window
            cap_at_window = {k: s["vl"].copy() for k, s in state.items()}
        k = None if keys is None else keys[i]
        s = state.get(k) or dict(
            last=x.copy(), hist=[x.copy()] * h, ml=x.copy(), vs=np.zeros_like(x), vl=np.zeros_like(x),
            run=-np.ones(len(x), dtype=int), ever=np.zeros(len(x), dtype=bool), t=math.nan, gaps=[math.nan] * h,
        )  # fmt: skip
        w = FLAGGED_WEIGHT if flagged is not None and flagged[i] else 1.0
        step = x - s["last"]
        ml = (1 - a_l * w) * s["ml"] + a_l * w * x
        vl = (1 - a_l * w) * s["vl"] + a_l * w * np.abs(step)
        cap = cap_at_window.get(k, np.zeros_like(x))
        vs = (1 - a_s) * s["vs"] + a_s * np.minimum(np.abs(step), np.where(cap > 0, STEP_CLIP * cap, np.inf))
        changed = x != s["last"]
        run = np.where(changed, 0, s["run"] + 1)
        ever = s["ever"] | changed
        with np.errstate(divide="ignore", invalid="ignore"):
            vol = np.where(vl > 0, np.log((vs + VOL_FLOOR * vl) / ((1 + VOL_FLOOR) * vl)), 0.0)
        gap = max(ts[i] - s["t"], 0.0) if math.isfinite(ts[i] - s["t"]) else math.nan
        known = [g for g in s["gaps"] if math.isfinite(g)]
        if math.isnan(gap) or not known:
            gap_ratio = 0.0
        else:
            usual = float(np.median(known))
            gap_ratio = round(math.log((gap + 0.1 * usual + 1e-3) / (1.1 * usual + 1e-3)), 2)
        cols = {
            "jump": x - np.median(np.array(s["hist"]), axis=0),
            "diff": step,
            "drift": np.median(np.array(s["hist"][1:] + [x]), axis=0) - ml,
            "vol": vol,
            "run": np.where(ever, np.log(np.maximum(run, 1)), 0.0),
            "gap": np.array([gap_ratio]),
        }
        rows.append(np.concatenate([x] + [cols[g] for g in ALL]))
        state[k] = dict(last=x.copy(), hist=s["hist"][1:] + [x.copy()], ml=ml, vs=vs, vl=vl, run=run, ever=ever, t=ts[i], gaps=s["gaps"][1:] + [gap])
    return np.array(rows)


def windows_of(n, sizes):
    out, i = [], 0
    for size in sizes:
        if i >= n:
            break
        out.append((i, min(n, i + size)))
        i += size
    if i < n:
        out.append((i, n))
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 700),
    d=st.integers(1, 3),
    n_keys=st.integers(0, 5),
    decimals=st.integers(0, 2),
    sizes=st.lists(st.integers(1, 600), min_size=1, max_size=6),
    flag_share=st.sampled_from([0.0, 0.2]),
    history=st.sampled_from([5, 5, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_windows_compute_what_records_one_at_a_time_define(n, d, n_keys, decimals, sizes, flag_share, history, seed):
    """Window by window, keys interleaved: the same numbers as the per-record
    definition, whatever the windows (rounded values make runs of repeats) and
    however many previous values the medians take (five, the default, has its own
    compiled median)."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, d)), decimals)
    keys = None if n_keys == 0 else np.array([f"k{i}" for i in rng.integers(0, n_keys, n)], dtype=object)
    ts = np.cumsum(rng.exponential(1.0, n))
    ts[rng.random(n) < 0.05] = np.nan  # a missing event time: no gap known
    flagged = rng.random(n) < flag_share
    bounds = windows_of(n, sizes)
    expected = reference(X, keys, ts, flagged, [i for i, _ in bounds], h=history)
    tf = TemporalFeatures(groups=ALL, history=history)
    got = []
    for i, j in bounds:
        ctx = tf.transform(X[i:j], None if keys is None else keys[i:j], ts[i:j], flagged=flagged[i:j])
        got.append(ctx.features)
        tf.commit(ctx)
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=1e-9, atol=1e-9)
    assert tf.n_keys == (1 if keys is None else len(set(keys)))


def test_a_records_context_comes_from_the_records_before_it_only():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    keys = np.array(["a", "b", "c"] * 100, dtype=object)
    tf = TemporalFeatures(groups=GROUPS)
    first = tf.transform(X[:100], keys[:100], np.arange(100.0))
    tf.commit(first)
    before = tf.transform(X[100:], keys[100:], np.arange(100.0, 300.0))
    again = tf.transform(X[100:], keys[100:], np.arange(100.0, 300.0))
    assert np.array_equal(before.features, again.features)  # transform changed nothing
    k = 150
    X2 = X.copy()
    X2[100 + k] += 50.0
    changed = tf.transform(X2[100:], keys[100:], np.arange(100.0, 300.0))
    assert np.array_equal(before.features[:k], changed.features[:k])  # nothing before it moved
    same_key_later = [i for i in range(k + 1, 200) if keys[100 + i] == keys[100 + k]]
    assert not np.array_equal(before.features[same_key_later[0]], changed.features[same_key_later[0]])


def test_the_key_table_is_bounded_and_forgets_the_least_recently_seen():
    tf = TemporalFeatures(max_keys=3)
    for keys in (["a", "b", "c"], ["a", "d"], ["c", "e"]):
        ctx = tf.transform(np.ones((len(keys), 1)) * np.arange(len(keys))[:, None], np.array(keys, dtype=object))
        tf.commit(ctx)
        assert tf.n_keys <= 3
    # b went first (least recently seen when d came), then a (when e came).
    assert set(tf._slots) == {"c", "d", "e"} and tf.evictions == 2
    # More keys in one window than the table holds: the most recent ones stay.
    ctx = tf.transform(np.zeros((5, 1)), np.array(list("vwxyz"), dtype=object))
    tf.commit(ctx)
    assert set(tf._slots) == {"x", "y", "z"} and tf.n_keys == 3


def test_a_forgotten_key_starts_afresh():
    tf = TemporalFeatures(max_keys=1, groups=("jump",))
    tf.commit(tf.transform(np.array([[10.0]]), np.array(["a"], dtype=object)))
    tf.commit(tf.transform(np.array([[0.0]]), np.array(["b"], dtype=object)))
    ctx = tf.transform(np.array([[12.0]]), np.array(["a"], dtype=object))
    assert ctx.features[0, 1] == 0.0  # no memory of a's 10.0: no jump


def test_state_survives_the_checkpoint_format():
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(500, 3)), 1)
    keys = np.array([f"pump-{i % 7}" for i in range(500)], dtype=object)
    ts = 1.7e9 + np.arange(500.0)
    tf = TemporalFeatures(groups=GROUPS)
    ctx = tf.transform(X[:300], keys[:300], ts[:300])
    tf.learn_scale(ctx.features[:, 3:])
    tf.commit(ctx)
    back = TemporalFeatures(groups=GROUPS)
    back.load_state_dict(checkpoint.loads(checkpoint.dumps(tf.state_dict())))
    a = tf.transform(X[300:], keys[300:], ts[300:])
    b = back.transform(X[300:], keys[300:], ts[300:])
    assert np.array_equal(a.features, b.features) and back.names == tf.names
    assert np.array_equal(tf.scale(a.features[:, 3:]), back.scale(b.features[:, 3:]))
    with pytest.raises(ValueError, match="made with"):
        TemporalFeatures(max_keys=5).load_state_dict(tf.state_dict())


# -- through the pipeline ----------------------------------------------------------------------


def pipeline_settings(temporal="on", **over):
    # Windows of 64 records whatever their keys (the restart tests cut between two).
    o = {"features": {"temporal": temporal}, "window": {"size": 64, "initial_size": None, "max_records": None}, "threshold": {"warmup_records": 200}}
    for k, v in over.items():
        o.setdefault(k, {}).update(v)
    return load_settings(overrides=o, env={})


def devices(n=1200, seed=0):
    """Three pumps interleaved on one lane, each its own level, one record a second each."""
    rng = np.random.default_rng(seed)
    keys = np.array([f"pump-{i % 3}" for i in range(n)], dtype=object)
    level = np.array([int(k[-1]) * 10.0 for k in keys])
    X = np.column_stack([level + rng.normal(size=n), 0.5 * level + rng.normal(size=n)])
    return X, keys, 1.7e9 + np.arange(n) // 3


def test_checkpoint_and_restart_continue_identically_with_temporal_state(tmp_path):
    """The lane's key table is checkpointed with the offset learned through: a restart
    skips what was learned and scores the rest exactly as one uninterrupted run."""
    X, keys, ts = devices()
    whole, joined, resumed = restart_halfway(pipeline_settings(), X, keys, ts, ["flow", "pressure"], tmp_path)
    temporal = resumed.lanes[Lane("array")].model.temporal
    assert temporal is not None and temporal.n_keys == 3
    assert resumed.counts.skipped == 640 and resumed.counts.scored == 560
    assert np.array_equal(joined, whole)


def test_auto_is_on_for_records_with_event_times_and_a_checkpoint_keeps_its_choice(tmp_path):
    X, keys, ts = devices(300)
    timed = Pipeline(pipeline_settings("auto"), MemorySink())
    timed.run(ArraySource(X, timestamps=ts))
    untimed = Pipeline(pipeline_settings("auto"), MemorySink())
    untimed.run(ArraySource(X))
    assert timed.lanes[Lane("array")].model.temporal is not None
    assert untimed.lanes[Lane("array")].model.temporal is None
    off = Pipeline(pipeline_settings("off"), MemorySink())
    off.run(ArraySource(X, timestamps=ts))
    assert off.lanes[Lane("array")].model.temporal is None
    # A checkpoint made without the stage: auto keeps it off, "on" refuses it by name.
    store = StateStore(tmp_path)
    Pipeline(pipeline_settings("auto"), MemorySink(), store=store).run(ArraySource(X[:100]))
    resumed = Pipeline(pipeline_settings("auto"), MemorySink(), store=store, temporal=True)
    resumed.run(ArraySource(X, timestamps=ts))
    assert resumed.lanes[Lane("array")].model.temporal is None
    with pytest.raises(ValueError, match="temporal features off"):
        Pipeline(pipeline_settings("on"), MemorySink(), store=store).resume_offset(Lane("array"))


def test_the_replay_notes_point_many_keys_in_one_model_to_hgad():
    from streamad.app.replay import keys_notes

    X, keys, ts = devices(600)
    shared = Pipeline(pipeline_settings("on", detector={"name": "gaussian"}), MemorySink())
    shared.run(ArraySource(X, keys=keys, timestamps=ts))
    (note,) = keys_notes(shared)
    assert note.startswith("3 keys shared one gaussian model") and "--detector per-key" in note and "--detector hgad" in note
    one = Pipeline(pipeline_settings("on", detector={"name": "gaussian"}), MemorySink())
    one.run(ArraySource(X, timestamps=ts))
    assert keys_notes(one) == []  # one device: nothing to say
    for name in ("hgad", "per-key"):
        per_key = Pipeline(pipeline_settings("on", detector={"name": name}), MemorySink())
        per_key.run(ArraySource(X, keys=keys, timestamps=ts))
        assert keys_notes(per_key) == []  # a detector that judges each key by its own


def test_a_constant_stream_with_event_times_raises_no_alarm():
    X = np.tile([1.5, 2.0, -3.0], (3000, 1))
    sink = MemorySink()
    counts = Pipeline(load_settings(overrides={"features": {"temporal": "on"}}, env={}), sink).run(ArraySource(X, timestamps=1.7e9 + np.arange(3000.0)))
    assert counts.scored == 3000 and counts.alarms == 0 and sink.records == []


def frozen_sensor(n=5000, seed=1, start=4000, length=120):
    """Flow drives pressure and current; the flow sensor freezes while the pump goes on."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    flow = 50 + 5 * np.sin(2 * np.pi * t / 700) + np.cumsum(rng.normal(0, 0.3, n)) * 0.05 + rng.normal(0, 0.5, n)
    X = np.column_stack([flow, 1 + 0.04 * flow + rng.normal(0, 0.05, n), 4 + 0.12 * flow + rng.normal(0, 0.1, n)])
    X[start : start + length, 0] = X[start, 0]
    return X, 1.7e9 + t


def test_a_sensor_that_freezes_after_varying_is_caught_and_named_stuck():
    """The flow sensor's values always changed, so its run length never moved; once it
    freezes, the run length (and the step ratio) make the frozen records score high,
    and the alarms say which sensor and how it behaves."""
    X, ts = frozen_sensor()
    names = ("flow", "pressure", "current")
    rec, sink = Recorder(), MemorySink()
    p = Pipeline(load_settings(overrides={"features": {"temporal": "on"}}, env={}), sink, feature_names=names, observers=[rec])
    p.run(ArraySource(X, timestamps=ts, feature_names=names))
    scores, offsets = rec.array("scores"), rec.array("offsets").astype(int) - 1
    frozen = (offsets >= 4010) & (offsets < 4120)
    normal = (offsets >= 2000) & (offsets < 4000)
    assert np.median(scores[frozen]) > np.quantile(scores[normal], 0.999)
    alarms = [r for r in sink.records if 4000 <= r["source"]["offset"] - 1 < 4120]
    assert len(alarms) > 50
    top = [r["features"][0] for r in alarms]
    assert all(f["name"] == "flow" and f["behaviour"] == "stuck" for f in top[5:])
    assert top[-1]["description"].startswith("flow: stuck at ") and top[-1]["description"].endswith(" records")
    # Elsewhere alarms stay rare (how rare is the threshold's calibration: its first fit,
    # on a young model's scores, stands for 2,048 records).
    before = [r for r in sink.records if r["source"]["offset"] - 1 < 4000]
    assert len(before) < 0.03 * 4000


def test_without_the_stage_a_frozen_sensor_goes_unseen():
    """What the stage adds: the same stream, the stage off (the model judges each record alone)."""
    X, ts = frozen_sensor()
    sink = MemorySink()
    Pipeline(load_settings(overrides={"features": {"temporal": "off"}}, env={}), sink).run(ArraySource(X, timestamps=ts))
    assert not [r for r in sink.records if 4000 <= r["source"]["offset"] - 1 < 4120]
    assert all(set(f) == {"name", "share"} for r in sink.records for f in r["features"])  # entries as before


# -- the Python API ------------------------------------------------------------------------------


def test_model_with_the_stage_one_record_at_a_time():
    X, _ = frozen_sensor(3000, start=2500, length=100)
    model = Model(temporal=True)
    names = ("flow", "pressure", "current")
    for x in X[:2600]:
        model.learn_one(dict(zip(names, x)))
    assert model.columns is not None and "flow.run" in model.columns and "flow.jump" in model.columns
    stuck = dict(zip(names, X[2599]))  # frozen since 2500: its context goes on from the records learned
    top = model.explain_one(stuck)
    assert top[0][:3] == ("flow", top[0][1], "stuck") and top[0][3].endswith("for 100 records")
    assert model.score_one(stuck) > model.score_one(dict(zip(names, X[2400])))


def held_then(model: Model, x: np.ndarray) -> np.ndarray:
    """The records the model's learn_one holds, then ``x``: one window of them."""
    rows = model._batches.rows
    return np.concatenate([np.stack(rows), x.reshape(1, -1)]) if rows else x.reshape(1, -1)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 300),
    d=st.integers(1, 3),
    decimals=st.integers(0, 2),
    cuts=st.lists(st.integers(1, 299), max_size=5),
    history=st.sampled_from([5, 2]),
    committed=st.integers(0, 200),
    seed=st.integers(0, 2**16),
)
def test_a_window_continued_piece_by_piece_is_the_window(n, d, decimals, cuts, history, committed, seed):
    """transform(after=ctx) continues a keyless window: cut anywhere, each piece
    continuing the one before, the columns, the run lengths, the gaps and the states
    after it are those of the whole window (after a committed past or none)."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(committed + n, d)), decimals)
    X[committed + n // 3 :] *= 20.0  # a wild step inside the window: its later steps are clipped as before it
    ts = np.cumsum(rng.exponential(1.0, committed + n))
    ts[rng.random(committed + n) < 0.05] = np.nan
    tf = TemporalFeatures(groups=ALL, history=history)
    if committed:
        tf.commit(tf.transform(X[:committed], None, ts[:committed]))
    W, T = X[committed:], ts[committed:]
    whole = tf.transform(W, None, T, ("a", "b", "c")[:d])
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    ctx = None
    for i, j in zip(bounds, bounds[1:]):
        ctx = tf.transform(W[i:j], None, T[i:j], after=ctx)
        assert np.array_equal(ctx.features, whole.features[i:j])
        assert np.array_equal(ctx.run, whole.run[i:j])
        assert ctx.gap is not None and whole.gap is not None and np.array_equal(ctx.gap, whole.gap[i:j])
    assert ctx is not None
    for f in KeyStates.FIELDS:
        np.testing.assert_array_equal(getattr(ctx.after, f), getattr(whole.after, f))
    with pytest.raises(ValueError, match="without keys"):
        tf.transform(W[:1], np.array(["k"], dtype=object), T[:1], after=ctx)


@pytest.mark.parametrize("detector", ["default", "loe-ae"])
def test_score_one_sees_the_held_records_as_one_window_would(detector: str):
    """score_one extends the context of the records learn_one holds one record at a
    time; the record's context, and so its score, is what one window of the held
    records and it gives (its steps clipped by the usual step from before the window),
    through the buffer's batches, a flush and a checkpoint's load. Scaled one record at
    a time as the window's are (the sensor default scales only the derived columns,
    ``loe-ae`` all of them)."""
    X, _ = frozen_sensor(1400, start=900, length=120)
    X[700] += 40.0  # a wild step: later steps of its window are clipped as before it
    model = Model(detector, temporal=True)
    checks = 0
    for i, x in enumerate(X):
        if i % 7 == 0 or 700 <= i <= 705 or i == 1301:
            held = held_then(model, x)
            ctx = model.temporal.transform(held) if model.temporal.columns is not None else None
            one = model._scaled_one(x)
            if ctx is not None:
                assert np.array_equal(one, model._scale(ctx.features[-1:], X.shape[1])[0])
                checks += 1
        if i == 1300:  # scored with nothing held, then a batch learned before it: its context moved on
            model.flush()
            model.score_one(x)
            model.learn_many(X[1300:1301] + 1.0)
        model.learn_one(x)
        if i == 1000:
            model.flush()
        if i == 1100:
            back = Model(detector, temporal=True)
            back.load_state_dict(checkpoint.loads(checkpoint.dumps(model.state_dict())))
            assert back.score_one(X[1101]) == model.score_one(X[1101])
            model = back
    assert checks > 150


def test_explain_one_words_a_record_as_a_judged_window_does():
    X, _ = frozen_sensor(1500, start=1200, length=150)
    names = ("flow", "pressure", "current")
    model = Model(temporal=True)
    for i, x in enumerate(X):
        if i >= 1100 and i % 37 == 0:
            held = held_then(model, x)
            verdict = model.judge(held)
            assert model.explain_one(dict(zip(names, x))) == model.explain(verdict, np.array([len(held) - 1]))[0]
        model.learn_one(dict(zip(names, x)))


def test_score_one_then_learning_another_record_in_the_same_array():
    """A caller that scores a record, then fills the same array with the next one and
    learns that: the record learned is the one in the array then."""
    X, _ = frozen_sensor(600, start=400, length=50)
    model, ref = Model(temporal=True), Model(temporal=True)
    buf = np.empty(X.shape[1])
    for i in range(len(X) - 1):
        buf[:] = X[i]
        model.score_one(buf)
        buf[:] = X[i + 1]  # learned without being scored
        model.learn_one(buf)
        ref.learn_one(X[i + 1])
    assert model.score_one(X[0]) == ref.score_one(X[0])


def test_detect_takes_key_and_timestamp_columns():
    X, keys, ts = devices(900)
    df = pd.DataFrame({"device": keys, "ts": pd.to_datetime(ts, unit="s", utc=True), "flow": X[:, 0], "pressure": X[:, 1]})
    out = detect(df, Model(temporal=True), key="device", timestamp="ts")
    assert len(out) == 900 and out["score"].notna().all()
    with pytest.raises(TypeError, match="DataFrame"):
        detect(X, Model(temporal=True), key="device")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 3), st.integers(1, 6), st.floats(0.0, 1.0), st.sampled_from([1, 4, 256]), st.integers(0, 2**31))
def test_reweighing_a_judged_window_commits_what_transforming_it_with_flags_does(n, d, n_keys, flag_share, long_span, seed):
    """Model.learn commits the flagged long means without transforming the window again."""
    rng = np.random.default_rng(seed)
    tf = TemporalFeatures(long_span=long_span)
    names = tuple(f"x{i}" for i in range(d))
    # some keys already known, some met in the window
    X0, k0 = np.round(rng.normal(size=(50, d)), 1), rng.integers(0, max(1, n_keys // 2), 50).astype(str)
    tf.commit(tf.transform(X0, k0, 1e9 + np.arange(50.0), names))
    X, keys = np.round(rng.normal(size=(n, d)), 1), rng.integers(0, n_keys, n).astype(str)
    ts = 1e9 + 50 + np.arange(float(n))
    flagged = rng.random(n) < flag_share
    judged = tf.transform(X, keys, ts, names)
    fast, slow = tf.reweigh(judged, X, flagged), tf.transform(X, keys, ts, names, flagged=flagged)
    assert fast.keys == slow.keys
    for f in KeyStates.FIELDS:
        a, b = getattr(fast.after, f), getattr(slow.after, f)
        if f in ("ml", "vl"):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 8), st.integers(0, 30), st.floats(0.5, 20.0), st.integers(0, 2**31))
def test_the_model_columns_compiled_scaling_is_numpys(n, d, derived, clip, seed):
    """Model._scale's one compiled pass gives numpy's (F - center) / divisor, clipped,
    value for value: the same float64 numbers, NaN where numpy's NaN, 0 for a constant
    column's infinite divisor."""
    from streamad.temporal_kernel import scale_columns

    rng = np.random.default_rng(seed)
    m = d + derived
    F = rng.normal(size=(n, m)) * rng.choice([1e-3, 1.0, 1e3], size=(n, m))
    F[rng.random((n, m)) < 0.05] = np.nan
    center, divisor = rng.normal(size=m), np.abs(rng.normal(size=m)) + 1e-6
    divisor[rng.random(m) < 0.2] = np.inf
    want = (F - center) / divisor
    np.minimum(want, clip, out=want)
    np.maximum(want, -clip, out=want)
    got = scale_columns(F, center[:d], divisor[:d], center[d:], divisor[d:], clip)
    assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True)
