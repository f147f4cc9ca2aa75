"""hgad end to end: a keyed CSV through the real command line (``--key`` names the
device column, each device a class of one model), and the lane's model checkpointed and
restored without Kafka: it continues exactly, and a key it first meets after the
restore gets a class of its own."""

from __future__ import annotations

import json

import numpy as np

from streamad import checkpoint
from streamad.model import Model
from tests.conftest import run_cli

MEANS = {"pump-a": [2.0, 2.0, 0.0], "pump-b": [-2.0, 0.0, 1.0], "pump-c": [0.0, -2.0, -1.0]}


def pumps(n: int = 6000, seed: int = 0, start: int = 2000, share: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three pumps (pump-c rare: 4% of records) with different normal levels; after
    ``start`` a share of records carry another pump's normal values under their own key:
    normal for the stream as a whole, anomalous for their pump."""
    rng = np.random.default_rng(seed)
    names = list(MEANS)
    dev = rng.choice(3, size=n, p=[0.48, 0.48, 0.04])
    src = dev.copy()
    swap = (np.arange(n) >= start) & (rng.random(n) < share)
    src[swap] = (dev[swap] + rng.integers(1, 3, size=int(swap.sum()))) % 3
    X = np.array([MEANS[k] for k in names])[src] + rng.normal(0.0, 0.3, size=(n, 3))
    return X, swap.astype(int), np.array(names, dtype=object)[dev]


def write_csv(path, X, y, keys) -> None:
    lines = ["device,a,b,c,label"] + [f"{k},{x[0]:.4f},{x[1]:.4f},{x[2]:.4f},{int(l)}" for k, x, l in zip(keys, X, y)]
    path.write_text("\n".join(lines) + "\n")


def test_a_keyed_csv_through_the_command_line(tmp_path):
    X, y, keys = pumps()
    data = tmp_path / "pumps.csv"
    write_csv(data, X, y, keys)
    out, summary = tmp_path / "detections.jsonl", tmp_path / "summary.json"
    r = run_cli(
        "replay", str(data), "--key", "device", "--label", "label", "--detector", "hgad",
        "--out", str(out), "--summary-json", str(summary), "--no-progress", "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["detector"] == "hgad" and s["read"] == s["scored"] == 6000 and s["reconciled"]
    assert "key: device" in " ".join(s["notes"])
    # Another pump's values are anomalies for the pump whose key they carry: only a
    # model that judges each record against its own device's normal sees them.
    assert s["quality"]["roc_auc"] > 0.9
    detections = [json.loads(line) for line in out.read_text().splitlines()]
    assert detections and all(d["model"]["name"] == "hgad" and d["key"] in MEANS for d in detections)
    hits = sum(y[d["source"]["offset"] - 2] for d in detections)  # offsets are line numbers; the header is line 1
    assert hits >= 0.5 * len(detections)


def test_the_settings_file_way_gives_the_same_detections(tmp_path):
    X, y, keys = pumps(n=1500, start=800)
    data = tmp_path / "pumps.csv"
    write_csv(data, X, y, keys)
    settings = tmp_path / "streamad.yaml"
    settings.write_text("record: {key: device}\ndetector: {name: hgad, params: {warmup_records: 256}}\n")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    common = ("--label", "label", "--emit", "all", "--no-progress", "--out-dir", str(tmp_path))
    r1 = run_cli("replay", str(data), "-c", str(settings), "--out", str(a), *common)
    r2 = run_cli("replay", str(data), "--key", "device", "--detector", "hgad", "-p", "warmup_records=256", "--out", str(b), *common)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    da = [json.loads(line) for line in a.read_text().splitlines()]
    db = [json.loads(line) for line in b.read_text().splitlines()]
    assert len(da) == 1500 and [d["score"] for d in da] == [d["score"] for d in db]
    assert [d["key"] for d in da] == list(keys)


def windows(n: int) -> list[slice]:
    """Windows of 8 doubling to 256, as a pipeline lane reads them."""
    out, a, size = [], 0, 8
    while a < n:
        out.append(slice(a, min(a + size, n)))
        a, size = a + size, min(2 * size, 256)
    return out


def test_a_restored_model_continues_exactly_and_a_new_key_gets_its_class():
    X, _, keys = pumps(n=4000, seed=3)
    params = {"warmup_records": 256, "hidden": 32}
    from streamad.detectors import make_detector

    a = Model(make_detector("hgad", **params))
    parts = windows(len(X))
    for w in parts[:12]:
        a.process(X[w], keys[w])
    state = checkpoint.dumps(a.state_dict())
    b = Model(make_detector("hgad", **params))
    b.load_state_dict(checkpoint.loads(state))
    assert b.detector.n_classes == a.detector.n_classes == 3
    assert [b.detector.class_of(k) for k in MEANS] == [a.detector.class_of(k) for k in MEANS]
    # After the restore a fourth pump appears, with a level of its own.
    rng = np.random.default_rng(9)
    X2 = np.r_[X[2000:3000], rng.normal([4.0, 4.0, 4.0], 0.3, size=(64, 3))]
    k2 = np.r_[keys[2000:3000], np.array(["pump-new"] * 64, dtype=object)]
    order = rng.permutation(len(X2))
    X2, k2 = X2[order], k2[order]
    assert a.detector.class_of("pump-new") is None and b.detector.class_of("pump-new") is None
    for w in windows(len(X2)):
        va, ra = a.process(X2[w], k2[w])
        vb, rb = b.process(X2[w], k2[w])
        assert np.array_equal(va.scores, vb.scores) and np.array_equal(va.alarms, vb.alarms) and ra == rb
    assert a.detector.class_of("pump-new") == b.detector.class_of("pump-new") == 3
    assert [b.detector.class_of(k) for k in MEANS] == [0, 1, 2]  # no other key moved
    probe, pk = X[3000:3100], keys[3000:3100]
    assert np.array_equal(a.judge(probe, pk).scores, b.judge(probe, pk).scores)
    assert checkpoint.dumps(a.state_dict()) == checkpoint.dumps(b.state_dict())
    # The new pump is judged against its own level: its values are normal for it, and
    # pump-a's values are not.
    new = rng.normal([4.0, 4.0, 4.0], 0.3, size=(20, 3))
    other = rng.normal(MEANS["pump-a"], 0.3, size=(20, 3))
    s = b.judge(np.r_[new, other], np.array(["pump-new"] * 40, dtype=object)).scores
    assert np.median(s[20:]) > np.median(s[:20]) + 3
