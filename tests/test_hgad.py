"""The hgad detector: keys as classes in one normalizing flow (streamad/detectors/hgad.py).

Contract (score changes nothing, checkpoints continue exactly, keys map to classes as
documented, more keys than classes, records without a key) and behaviour on a stream
of several devices whose normal regimes differ: another device's normal values on a
device are anomalies there, which one flow with one Gaussian cannot see."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from streamad import checkpoint
from streamad.detectors import available, describe, make_detector, validate_params
from streamad.scaling import StandardScaler

SMALL = {"warmup_records": 256, "hidden": 32}


def regimes(n_dev: int = 4, d: int = 5, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each device's mean and covariance factor: different levels and correlations."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 2.0, size=(n_dev, d))
    factors = []
    for _ in range(n_dev):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        c = a @ a.T * 0.5 + 0.05 * np.eye(d)
        factors.append(np.linalg.cholesky(c))
    return means, factors


def devices(n: int, *, seed: int = 0, n_dev: int = 4, d: int = 5, rare: float = 0.04, anomalies: float = 0.0, start: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """A stream of ``n_dev`` devices (the last one rare); after ``start``, a share
    ``anomalies`` of records carry another device's normal values under their own key."""
    means, factors = regimes(n_dev, d, seed=0)
    rng = np.random.default_rng(seed + 100)
    p = np.r_[np.full(n_dev - 1, (1 - rare) / (n_dev - 1)), rare]
    dev = rng.choice(n_dev, size=n, p=p)
    src = dev.copy()
    y = np.zeros(n, dtype=int)
    swap = (np.arange(n) >= start) & (rng.random(n) < anomalies)
    src[swap] = (dev[swap] + rng.integers(1, n_dev, size=int(swap.sum()))) % n_dev
    y[swap] = 1
    noise = rng.normal(size=(n, d))
    X = means[src] + np.einsum("nij,nj->ni", np.stack(factors)[src], noise)
    return X, y, [f"pump-{k}" for k in dev], dev


def prequential(det, X: np.ndarray, keys: list[str] | None, window: int = 256) -> np.ndarray:
    """Score each window with the state from before it, then learn it, behind an online
    standard scaler, as the pipeline does."""
    sc = StandardScaler()
    out = np.empty(len(X))
    for i in range(0, len(X), window):
        W, K = X[i : i + window], None if keys is None else keys[i : i + window]
        out[i : i + window] = det.score(sc.transform(W), K)
        sc.learn(W)
        det.learn(sc.transform(W), K)
    return out


def test_registered_lazily_with_typed_parameters() -> None:
    assert "hgad" in available()
    assert describe("hgad").startswith("v2: HGAD: one normalizing flow for many devices")
    assert validate_params("hgad", {"max_classes": "8", "mi_weight": 2}) == {"max_classes": 8, "mi_weight": 2.0}
    with pytest.raises(ValueError, match="max_classes: Input should be greater than or equal to 1"):
        make_detector("hgad", max_classes=0)
    with pytest.raises(ValueError, match="loe: Input should be 'refine' or 'blind'"):
        make_detector("hgad", loe="hard")
    code = "import sys, streamad.detectors as d; d.make_detector('hgad', max_classes=3); d.validate_params('hgad', {}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # built and checked without importing torch


def test_score_changes_nothing() -> None:
    X, _, keys, _ = devices(900)
    det = make_detector("hgad", **SMALL)
    before = det.score(X[:100], keys[:100])
    assert det.trainer is None and det.n_classes == 0  # scoring before learning builds nothing
    assert np.array_equal(before, det.score(X[:100], keys[:100]))
    for i in range(0, 768, 128):
        det.learn(X[i : i + 128], keys[i : i + 128])
    state = checkpoint.dumps(det.state_dict())
    probe_keys = keys[768:-1] + ["never seen"]
    a = det.score(X[768:], probe_keys)
    assert np.array_equal(a, det.score(X[768:], probe_keys))
    assert det.contributions(X[768:], probe_keys) is not None
    assert checkpoint.dumps(det.state_dict()) == state  # not even the unseen key joined
    assert det.class_of("never seen") is None


def test_learn_reports_warmup_steps_and_classes() -> None:
    X, _, keys, _ = devices(1536)
    det = make_detector("hgad", score_warmup=512, **SMALL)
    first = det.learn(X[:256], keys[:256])
    assert first.warmup and first.n_learned == 256 and first.loss is not None and np.isfinite(first.loss)
    assert first.extra["steps"] > 1 and first.extra["classes"] == 4  # the young stream trains harder
    for i in range(256, 1536, 256):
        r = det.learn(X[i : i + 256], keys[i : i + 256])
    assert not r.warmup and r.extra["steps"] >= 1 and r.loe_flag_rate == pytest.approx(0.03, abs=0.01)


def test_each_key_gets_a_class_in_order_and_keeps_it() -> None:
    X, _, keys, _ = devices(600)
    det = make_detector("hgad", **SMALL)
    det.learn(X[:300], keys[:300])
    order = list(dict.fromkeys(keys[:300]))
    assert [det.class_of(k) for k in order] == list(range(len(order)))
    assert det.class_of("pump-9") is None
    # a key never seen before gets a class of its own when learned, and no other moves
    det.learn(X[300:310], ["pump-9"] * 10)
    assert det.class_of("pump-9") == len(order) and [det.class_of(k) for k in order] == list(range(len(order)))
    # records without a key share one class: the key None
    det.learn(X[310:320])
    det.learn(X[320:330], [None] * 10)
    assert det.class_of(None) == len(order) + 1 and det.n_classes == len(order) + 2


def test_a_new_centre_sits_at_its_first_records_and_leaves_the_others() -> None:
    import torch

    X, _, keys, _ = devices(1200)
    det = make_detector("hgad", **SMALL)
    prequential(det, X, keys)
    t = det.trainer
    before = t.prior.mu[: t.n_classes].detach().clone()
    new = np.random.default_rng(5).normal(3.0, 0.2, size=(20, X.shape[1]))
    with torch.no_grad():
        z = t.flow(t.tensor(new))[0]
    t.classes_for(new.astype(np.float32), ["pump-new"] * 20, assign=True)
    c = det.class_of("pump-new")
    assert torch.allclose(t.prior.mu[c], z.mean(dim=0))
    assert torch.equal(t.prior.mu[:c], before)


def test_more_keys_than_classes_join_the_class_they_resemble() -> None:
    X, _, keys, dev = devices(2000, n_dev=3, rare=0.33)
    det = make_detector("hgad", max_classes=3, **SMALL)
    prequential(det, X, keys)
    assert det.n_classes == 3
    # three new keys, each behaving as one of the known pumps, find every class taken
    Xn, _, kn, devn = devices(300, n_dev=3, rare=0.33, seed=9)
    sc = StandardScaler()
    sc.learn(X)
    for k in range(3):
        m = devn == k
        det.learn(sc.transform(Xn[m]), [f"clone-of-{k}"] * int(m.sum()))
    assert det.n_classes == 3
    assert [det.class_of(f"clone-of-{k}") for k in range(3)] == [det.class_of(f"pump-{k}") for k in range(3)]


def test_one_class_ignores_keys() -> None:
    X, _, keys, _ = devices(800)
    a = make_detector("hgad", max_classes=1, centres_per_class=1, **SMALL)
    b = make_detector("hgad", max_classes=1, centres_per_class=1, **SMALL)
    assert np.array_equal(prequential(a, X, keys), prequential(b, X, None))
    assert a.class_of("anything") == 0 and a.n_classes == 1


@pytest.mark.parametrize("d", [1, 2, 3])
def test_very_low_dimensional_records(d: int) -> None:
    rng = np.random.default_rng(d)
    keys = ["a", "b"] * 300
    X = rng.normal(size=(600, d)) * 0.3 + np.where(np.array(keys)[:, None] == "a", 1.0, -1.0)
    det = make_detector("hgad", **SMALL)
    prequential(det, X, keys)
    normal, odd = det.score(np.r_[np.full((1, d), -1.0), np.full((1, d), 1.0)], ["b", "b"])
    assert np.isfinite([normal, odd]).all() and odd > normal + 2


def test_checkpoint_continues_exactly_like_an_uninterrupted_run() -> None:
    X, _, keys, _ = devices(2400, seed=3)
    kw = {**SMALL, "max_classes": 3}  # five keys: two of them join a class
    a, b = make_detector("hgad", **kw), make_detector("hgad", **kw)
    for i in range(0, 1280, 256):
        a.learn(X[i : i + 256], keys[i : i + 256])
        b.learn(X[i : i + 256], keys[i : i + 256])
    for x, k in zip(X[1280:1300], keys[1280:1300]):  # records buffered by learn_one, keys with them
        a.learn_one(x, k)
        b.learn_one(x, k)
    restored = make_detector("hgad", **kw)
    restored.load_state_dict(checkpoint.loads(checkpoint.dumps(b.state_dict())))
    assert restored.buffered_keys == a.buffered_keys and len(a.buffered_keys) == 12
    for i in range(1300, 2200, 150):
        ra = a.learn(X[i : i + 150], keys[i : i + 150])
        rb = restored.learn(X[i : i + 150], keys[i : i + 150])
        assert ra == rb
    probe = slice(2200, 2400)
    assert np.array_equal(a.score(X[probe], keys[probe]), restored.score(X[probe], keys[probe]))
    assert np.array_equal(a.contributions(X[probe], keys[probe]), restored.contributions(X[probe], keys[probe]))
    with pytest.raises(ValueError, match="max_classes=3 \\(configured: 4\\)"):
        make_detector("hgad", **{**kw, "max_classes": 4}).load_state_dict(a.state_dict())


def test_clear_errors() -> None:
    det = make_detector("hgad", **SMALL)
    with pytest.raises(ValueError, match="2 keys for 3 records"):
        det.score(np.zeros((3, 4)), ["a", "b"])
    det.learn(np.random.default_rng(0).normal(size=(64, 4)), ["a"] * 64)
    with pytest.raises(ValueError, match="records have 3 features, the model was built for 4"):
        det.learn(np.zeros((5, 3)), ["a"] * 5)


def test_contributions_point_at_the_feature_that_left_its_device() -> None:
    X, _, keys, dev = devices(3000)
    sc = StandardScaler()
    det = make_detector("hgad", **SMALL)
    for i in range(0, len(X), 256):
        sc.learn(X[i : i + 256])
        det.learn(sc.transform(X[i : i + 256]), keys[i : i + 256])
    x = sc.transform(X[dev == 0][-20:])
    hits = 0
    for j in range(x.shape[1]):
        odd = x.copy()
        odd[:, j] += 4.0
        c = det.contributions(odd, ["pump-0"] * len(odd))
        assert c.shape == odd.shape and (c >= 0).all()
        hits += int((c.argmax(axis=1) == j).sum())
    assert hits >= 0.8 * x.size


def test_another_devices_values_are_anomalies_a_single_gaussian_flow_misses() -> None:
    """Four pumps (one rare) with different normal regimes; 3% of records after the
    warm-up carry another pump's normal values under their own key: normal for the
    stream as a whole, anomalous for their device."""
    X, y, keys, dev = devices(10_000, anomalies=0.03, start=2000)
    m = np.arange(len(X)) >= 2000
    hgad = prequential(make_detector("hgad"), X, keys)
    single = prequential(make_detector("hgad", max_classes=1, centres_per_class=1), X, keys)
    auc_h, auc_s = roc_auc_score(y[m], hgad[m]), roc_auc_score(y[m], single[m])
    assert auc_h > 0.9 and auc_h > auc_s + 0.1, (auc_h, auc_s)
    rare = m & (dev == 3)
    assert roc_auc_score(y[rare], hgad[rare]) > 0.75  # the rare pump is judged against its own regime too


def test_a_key_never_seen_is_scored_as_the_class_it_resembles() -> None:
    X, _, keys, dev = devices(3000)
    sc = StandardScaler()
    det = make_detector("hgad", **SMALL)
    for i in range(0, len(X), 256):
        sc.learn(X[i : i + 256])
        det.learn(sc.transform(X[i : i + 256]), keys[i : i + 256])
    like_b = sc.transform(X[dev == 1][-40:])
    as_known = det.score(like_b, ["pump-1"] * 40)
    as_new = det.score(like_b, ["pump-new"] * 40)  # nearest class: pump-1's, on the stream's statistics
    far = det.score(like_b + 4.0, ["pump-new"] * 40)
    assert np.median(far) > np.median(as_new) + 3 and abs(np.median(as_new) - np.median(as_known)) < 2
    assert det.class_of("pump-new") is None  # scoring never joins it


def test_importance_weights_switch_on_and_checkpoint() -> None:
    X, _, keys, _ = devices(1800, seed=4)
    kw = {**SMALL, "weights": True}
    a, b = make_detector("hgad", **kw), make_detector("hgad", **kw)
    for i in range(0, 1280, 256):
        a.learn(X[i : i + 256], keys[i : i + 256])
    b.load_state_dict(checkpoint.loads(checkpoint.dumps(a.state_dict())))
    assert a.trainer.iw_hist.n_seen > 256  # the weights read a histogram that fills
    for i in range(1280, 1800, 260):
        assert a.learn(X[i : i + 260], keys[i : i + 260]) == b.learn(X[i : i + 260], keys[i : i + 260])
    assert np.array_equal(a.score(X[:100], keys[:100]), b.score(X[:100], keys[:100]))
    plain = make_detector("hgad", **SMALL)
    for i in range(0, 1800, 256):
        plain.learn(X[i : i + 256], keys[i : i + 256])
    assert not np.array_equal(plain.score(X[:100], keys[:100]), a.score(X[:100], keys[:100]))
