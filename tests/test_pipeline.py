import numpy as np
import pytest

from streamad import checkpoint
from streamad.app.replay import Recorder
from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import MemorySink
from streamad.detectors import available
from streamad.pipeline import Observer, Pipeline
from streamad.records import Batch, Lane
from streamad.state import StateStore
from streamad.window import WindowBuffer

DETECTORS = available()


def settings(detector="default", **over):
    o = {"detector": {"name": detector}, "window": {"size": 64, "initial_size": None}, "threshold": {"warmup_records": 200}}
    for k, v in over.items():
        o.setdefault(k, {}).update(v)
    return load_settings(overrides=o, env={})


def stream(n=1500, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[rng.choice(n, 20, replace=False)] += 8.0
    return X


def scores_of(X, s, chunk=97):
    rec = Recorder()
    p = Pipeline(s, MemorySink(), observers=[rec])
    p.run(ArraySource(X, chunk_rows=chunk))
    return rec.array("scores"), rec.array("offsets"), p


@pytest.mark.parametrize("name", DETECTORS)
def test_score_before_learn(name):
    """A record is scored by the model as it was before the record's window: changing
    the record changes no other score in its window or before, and its own score is
    what the model trained on the earlier windows alone gives it."""
    s = settings(name)
    X = stream()
    base, offsets, _ = scores_of(X, s)
    k = 700  # inside the window [640, 704)
    X2 = X.copy()
    X2[k] += 50.0
    changed, _, _ = scores_of(X2, s)
    window_end = (k // 64 + 1) * 64
    others = np.arange(window_end) != k
    assert np.array_equal(base[:window_end][others], changed[:window_end][others])
    assert not np.array_equal(base[window_end:], changed[window_end:])
    _, _, before = scores_of(X2[:640], s)
    lm = next(iter(before.lanes.values()))
    # The same window through the model trained on the earlier windows alone: the same
    # computation, so the same bits (a 1-row product may round differently from a 64-row
    # one, depending on the CPU's kernels, so the record is scored inside its window).
    start = k // 64 * 64
    alone = lm.detector.score(lm.scaler.transform(X2[start:window_end]))[k - start]
    assert alone == changed[k]


@pytest.mark.parametrize("name", DETECTORS)
def test_batching_does_not_change_results(name):
    s = settings(name)
    X = stream()
    a, _, _ = scores_of(X, s, chunk=1)
    b, _, _ = scores_of(X, s, chunk=1000)
    assert np.array_equal(a, b)


def test_counts_reconcile_with_rejects():
    X = stream(500)
    X[[3, 77, 400]] = np.nan
    rec = Recorder()
    p = Pipeline(settings(), MemorySink(), observers=[rec])
    c = p.run(ArraySource(X))
    assert c.read == 500 and c.rejected == 3 and c.scored == 497 and c.pending == 0
    assert c.rejected_by_code == {"non_finite": 3}
    assert set(rec.array("offsets").astype(int)).isdisjoint({4, 78, 401})


@pytest.mark.parametrize("name", DETECTORS)
def test_checkpoint_restore_continues_identically(tmp_path, name):
    s = settings(name)
    X = stream(1200)
    whole, _, _ = scores_of(X, s, chunk=64)

    # Run the first 640 records, checkpoint, then continue in a fresh pipeline.
    store = StateStore(tmp_path)
    names = ["a", "b", "c", "d"]
    rec1 = Recorder()
    p1 = Pipeline(s, MemorySink(), feature_names=names, observers=[rec1], store=store)
    p1.run(ArraySource(X[:640], stream="array", chunk_rows=64))
    rec2 = Recorder()
    p2 = Pipeline(s, MemorySink(), feature_names=names, observers=[rec2], store=store)
    lane = Lane("array")
    assert p2.resume_offset(lane) == 641
    rest = ArraySource(X, stream="array", chunk_rows=64)
    p2.run(rest)  # offsets 1..640 are skipped: already learned
    assert p2.counts.skipped == 640 and p2.counts.scored == 560
    joined = np.concatenate([rec1.array("scores"), rec2.array("scores")])
    assert np.array_equal(joined, whole)


def test_lane_state_survives_the_checkpoint_format():
    s = settings()
    p = Pipeline(s, MemorySink())
    p.run(ArraySource(stream(800), stream="a", chunk_rows=64))
    lm = p.lanes[Lane("a")]
    state = checkpoint.loads(checkpoint.dumps(lm.state_dict()))
    p2 = Pipeline(s, MemorySink())
    lm2 = p2.lane(Lane("a"), 4)
    lm2.load_state_dict(state)
    Xt = np.random.default_rng(5).normal(size=(64, 4))
    assert np.array_equal(lm.detector.score(lm.scaler.transform(Xt)), lm2.detector.score(lm2.scaler.transform(Xt)))
    assert lm2.threshold.value == lm.threshold.value


def test_checkpoint_of_other_features_is_refused(tmp_path):
    s = settings()
    store = StateStore(tmp_path)
    p = Pipeline(s, MemorySink(), feature_names=["a", "b", "c", "d"], store=store)
    p.run(ArraySource(stream(300), stream="x"))
    p2 = Pipeline(s, MemorySink(), feature_names=["a", "b", "c", "e"], store=store)
    with pytest.raises(ValueError, match="features"):
        p2.lane(Lane("x"))


def test_window_closes_by_time_through_the_pipeline():
    now = [0.0]
    rec = Recorder()
    p = Pipeline(settings(window={"size": 100, "max_wait_seconds": 2.0}), MemorySink(), observers=[rec], clock=lambda: now[0])
    p.process(Batch(Lane("s"), np.zeros((10, 2)), np.arange(10), arrival=0.0))
    p.tick()
    assert p.counts.scored == 0
    now[0] = 2.5
    p.tick()
    assert p.counts.scored == 10 and p.counts.windows == 1


def test_window_buffer_count_and_time():
    clock = [0.0]
    buf = WindowBuffer(size=5, max_wait_seconds=1.0, clock=lambda: clock[0])
    out = buf.add(Batch(Lane("s"), np.zeros((12, 1)), np.arange(12), arrival=0.0))
    assert [w.offsets.tolist() for w in out] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert not buf.due(0.9) and buf.due(1.0)
    assert buf.flush().offsets.tolist() == [10, 11] and len(buf) == 0
    with pytest.raises(ValueError):
        WindowBuffer(size=0)


class Spy(Observer):
    def __init__(self):
        self.windows = []

    def on_window(self, r):
        self.windows.append(r)


def test_alarms_come_with_attribution_to_the_planted_feature():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 5))
    X[3000::97, 2] += 12.0  # spikes in feature 2 only
    sink = MemorySink()
    p = Pipeline(settings(threshold={"warmup_records": 1000}), sink, feature_names=list("abcde"))
    p.run(ArraySource(X, chunk_rows=500))
    alarms = [r for r in sink.records if r["is_anomaly"]]
    spikes = {int(o) for o in np.arange(3000, 4000, 97) + 1}
    hits = [r for r in alarms if r["source"]["offset"] in spikes]
    assert hits, "the planted spikes raise alarms"
    assert all(r["features"][0]["name"] == "c" for r in hits)
    assert all(0 <= r["tail_probability"] < 0.01 for r in hits)
    assert all(r["id"] == f"array/0/{r['source']['offset']}" for r in sink.records)


def test_windows_grow_from_their_initial_size_and_the_size_survives_a_checkpoint(tmp_path):
    s = settings(window={"size": 64, "initial_size": 4})
    spy = Spy()
    store = StateStore(tmp_path)
    p = Pipeline(s, MemorySink(), feature_names=list("abcd"), observers=[spy], store=store)
    p.run(ArraySource(stream(200), stream="g"))
    sizes = [len(r.window) for r in spy.windows]
    assert sizes[:6] == [4, 8, 16, 32, 64, 64] and sum(sizes) == 200
    spy2 = Spy()
    p2 = Pipeline(s, MemorySink(), feature_names=list("abcd"), observers=[spy2], store=store)
    p2.run(ArraySource(stream(400), stream="g"))
    assert [len(r.window) for r in spy2.windows][:2] == [64, 64]  # grown already: no restart at 4


def test_the_recorder_joins_small_windows_into_blocks_and_keeps_every_record():
    # Windows of 8: one array per window would cost more in headers than in records.
    class Unjoined(Recorder):
        BLOCK = 10**9

    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(6000, 3)), (rng.random(6000) < 0.01).astype(int)
    joined, plain = Recorder(Recorder.QUALITY), Unjoined(Recorder.QUALITY)
    s = load_settings(overrides={"window": {"size": 8}, "detector": {"name": "gaussian"}}, env={})
    Pipeline(s, MemorySink(), observers=[joined, plain]).run(ArraySource(X, y))
    assert len(plain._parts["scores"]) == 750 and len(joined._parts["scores"]) < 256 + 750 // 256 + 1
    for k in Recorder.QUALITY:
        np.testing.assert_array_equal(joined.array(k), plain.array(k))
    assert joined.quality() == plain.quality() and len(joined.array("labels")) == 6000
