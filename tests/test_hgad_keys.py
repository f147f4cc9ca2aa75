"""Keys in the Detector contract: every record may carry its key (device, tenant); a
detector that ignores keys computes exactly what it computes without them, and the
one-record-at-a-time buffer keeps the keys of the records it holds, in its state too."""

from __future__ import annotations

import numpy as np
import pytest

from streamad import checkpoint
from streamad.detectors import make_detector
from streamad.detectors.gaussian import Gaussian
from streamad.minibatch import MiniBatches

IGNORING = ["loe-ae", "loe-ntl", "loe-svdd", "gaussian", "river-hst"]
FAST = {"loe-ntl": {"n_transforms": 4}}


def stream(n: int, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[::37] += 5.0
    return X


def keys_for(n: int, seed: int = 1) -> list[str | None]:
    rng = np.random.default_rng(seed)
    return [None if k == 3 else f"pump-{k}" for k in rng.integers(0, 4, size=n)]


@pytest.mark.parametrize("name", IGNORING)
def test_a_detector_that_ignores_keys_computes_the_same_with_them(name: str) -> None:
    plain, keyed = make_detector(name, **FAST.get(name, {})), make_detector(name, **FAST.get(name, {}))
    assert not plain.uses_keys
    X = stream(900)
    if name == "river-hst":
        X = np.abs(X) / 6
    for i in range(0, 768, 128):
        W, K = X[i : i + 128], keys_for(128, seed=i)
        assert np.array_equal(plain.score(W), keyed.score(W, K))
        plain.learn(W)
        keyed.learn(W, np.array(K, dtype=object))
    probe, pk = X[768:], keys_for(len(X) - 768)
    assert np.array_equal(plain.score(probe), keyed.score(probe, pk))
    a, b = plain.contributions(probe), keyed.contributions(probe, pk)
    assert (a is None and b is None) or np.array_equal(a, b)
    # one at a time: the key travels through the buffer and is ignored the same way
    for x, k in zip(X[:300], keys_for(300)):
        plain.learn_one(x)
        keyed.learn_one(x, k)
    assert np.array_equal(plain.buffered, keyed.buffered)
    assert plain.score_one(X[5]) == keyed.score_one(X[5], "pump-9")
    assert np.array_equal(plain.score_many(probe), keyed.score_many(probe, pk))


def test_the_buffer_keeps_the_keys_of_its_records_in_order() -> None:
    mb = MiniBatches(first=4)
    assert mb.add_keyed([1.0], limit=16, key="a") is None
    assert mb.add_keyed([2.0], limit=16) is None
    assert mb.add_keyed([3.0], limit=16, key="b") is None
    X, keys = mb.add_keyed([4.0], limit=16, key="a")
    assert X.ravel().tolist() == [1.0, 2.0, 3.0, 4.0] and keys == ["a", None, "b", "a"]
    # a batch without any key hands out None: the keyless path stays keyless
    for v in range(7):
        assert mb.add_keyed([float(v)], limit=16) is None
    X, keys = mb.add_keyed([7.0], limit=16)
    assert len(X) == 8 and keys is None
    # before(): the kept records' keys go in front of the batch's, None filling in
    mb.add_keyed([9.0], limit=16, key="c")
    X, keys = mb.before_keyed(np.array([[10.0], [11.0]]))
    assert X.ravel().tolist() == [9.0, 10.0, 11.0] and keys == ["c", None, None]
    with pytest.raises(ValueError, match="2 keys for 1 records"):
        mb.before_keyed(np.array([[1.0]]), ["a", "b"])


def test_buffered_keys_are_part_of_the_state() -> None:
    det = make_detector("gaussian")
    X, K = stream(20), keys_for(20)
    for x, k in zip(X, K):
        det.learn_one(x, k)
    assert len(det.buffered_keys) == 12 and det.buffered_keys == K[8:]
    back = make_detector("gaussian")
    back.load_state_dict(checkpoint.loads(checkpoint.dumps(det.state_dict())))
    assert back.buffered_keys == K[8:] and np.array_equal(back.buffered, det.buffered)
    # a state written before keys were kept: its records had none
    state = det.state_dict()
    del state["one"]["keys"]
    back.load_state_dict(state)
    assert back.buffered_keys == [None] * 12


class OldStyle(Gaussian):
    """A detector written before keys: score and learn take the records only."""

    def score(self, X: np.ndarray) -> np.ndarray:  # type: ignore[override]
        return super().score(X)

    def learn(self, X: np.ndarray):  # type: ignore[override]
        return super().learn(X)


def test_a_detector_written_before_keys_keeps_working_one_record_at_a_time() -> None:
    det = OldStyle(warmup=0)
    for x in stream(40):
        det.learn_one(x)
    assert det.seen == 24 and np.isfinite(det.score_one(stream(1)[0]))
    det.flush()
    assert det.seen == 40 and np.isfinite(det.score_many(stream(3)).sum())
