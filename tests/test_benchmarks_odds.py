"""The ODDS harness keeps to protocol v1: the same records for every detector, the
seeded permutation and its cap, scikit-learn's metrics on correctly aligned scores,
timeouts reported rather than dropped, and mean ranks computed right."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks import odds
from benchmarks.peers import offline_iforest, river_hst
from streamad.connectors.odds import load_mat


def _write_mat(path, n: int, d: int = 3, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.zeros(n, dtype=np.float64)
    out = rng.choice(n, size=max(2, n // 20), replace=False)
    X[out] += rng.choice([-6.0, 6.0], size=(len(out), d))
    y[out] = 1
    scipy.io.savemat(path, {"X": X, "y": y[:, None]})


LIMIT = 200


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("odds")
    _write_mat(d / "tiny.mat", 300)
    _write_mat(d / "long.mat", 20_000, seed=1)
    return d


@pytest.fixture(scope="module")
def specs():
    return [
        odds.our_spec("river-hst", {"window": {"size": 32}}),
        odds.PEERS["river HST"],
        odds.PEERS["pysad LODA"],
        odds.PEERS["offline IF"],
    ]


@pytest.fixture(scope="module")
def results(data_dir, specs):
    jobs = [odds.Job(s, "tiny", 1) for s in specs] + [odds.Job(specs[0], "tiny", 0)]
    return odds.run_jobs(jobs, data_dir, cap=120, workers=2, limit=LIMIT)


def test_permutation_is_default_rng_of_the_seed_and_the_cap_keeps_its_first_records():
    X = np.arange(50.0).reshape(25, 2)
    y = (np.arange(25) % 5 == 0).astype(np.int8)
    for seed in (0, 1, 2):
        order = np.random.default_rng(seed).permutation(25)
        Xs, ys = odds.protocol_records(X, y, seed, limit=10)
        assert np.array_equal(Xs, X[order[:10]]) and np.array_equal(ys, y[order[:10]])
        Xa, _ = odds.protocol_records(X, y, seed, limit=None)
        assert np.array_equal(Xa, X[order])
    assert not np.array_equal(odds.protocol_records(X, y, 0, 10)[0], odds.protocol_records(X, y, 1, 10)[0])


def test_every_detector_streams_the_same_records(results, specs):
    runs = [results[odds.Job(s, "tiny", 1).key] for s in specs]
    assert all(r["status"] == "ok" for r in runs), runs
    assert {r["records"] for r in runs} == {LIMIT}
    assert len({r["records_sha"] for r in runs}) == 1
    # Another seed, another permutation.
    sha = {results[odds.Job(specs[0], "tiny", seed).key]["records_sha"] for seed in (0, 1)}
    assert len(sha) == 2


def test_metrics_are_scikit_learns_on_scores_aligned_with_the_labels(results, data_dir, specs):
    X, y = load_mat(data_dir / "tiny.mat")
    Xs, ys = odds.protocol_records(X, y, 1, LIMIT)
    ours = specs[0]
    expected = {
        ours.label: odds.run_streamad(Xs, 1, **ours.params)[0],
        "river HST": river_hst(Xs, 1)[0],
        "offline IF": offline_iforest(Xs, 1)[0],
    }
    for label, scores in expected.items():
        r = results[f"{label}|tiny|1"]
        assert r["roc_auc"] == pytest.approx(roc_auc_score(ys, scores), abs=1e-12)
        assert r["ap"] == pytest.approx(average_precision_score(ys, scores), abs=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        odds.metrics(np.array([0, 1]), np.array([0.0, np.nan]))


def test_our_detector_is_scored_window_first_then_learned(data_dir):
    X, y = load_mat(data_dir / "tiny.mat")
    Xs, _ = odds.protocol_records(X, y, 0, limit=None)
    scores, seconds, info = odds.run_streamad(Xs, 0, **odds.our_spec("river-hst", {"window": {"size": 260, "initial_size": None}}).params)
    assert info["window"] == "260" and seconds > 0 and len(scores) == 300
    # Nothing is learned before the first window is scored, so it scores as one; the
    # second window is scored by a model that has learned the first (river's HST needs 250).
    assert len(set(scores[:260].tolist())) == 1 and len(set(scores[260:].tolist())) > 1


def test_a_job_over_the_cap_is_reported_as_a_timeout_and_kept_in_the_tables(data_dir):
    slow = odds.PEERS["pysad RSHash"]
    fast = odds.PEERS["pysad LODA"]
    res = odds.run_jobs([odds.Job(slow, "long", 0), odds.Job(fast, "tiny", 0)], data_dir, cap=0.3, workers=2, limit=None)
    assert res[odds.Job(slow, "long", 0).key]["status"] == "timeout"
    s = odds.summarize([slow, fast], ["long"], [0], res)
    assert s.cells[slow.label, "long"].status == "timeout"
    assert math.isnan(s.mean_over_files(slow.label, "auc")[0])
    meta = {
        "limit": 0, "cap": 0.3, "machine": "test", "cores": 2, "workers": 2, "versions": {}, "date": "-", "commit": "-",
        "command": "-", "provenance": "-", "info": {}, "results": res,
    }  # fmt: skip
    md = odds.render_markdown(s, meta)
    assert "**timeout**" in md and "pysad RSHash on long: timeout" in md


def test_mean_rank_is_one_for_the_best_shares_ties_and_puts_failures_last():
    ranks = odds.mean_ranks({"a": [0.9, 0.5, 0.7], "b": [0.8, math.nan, 0.7], "c": [0.8, 0.7, 0.6]})
    # file 1: a 1, b and c tie at 2.5; file 2: c 1, a 2, b (timeout) 3; file 3: a and b tie at 1.5, c 3
    assert ranks == pytest.approx({"a": (1 + 2 + 1.5) / 3, "b": (2.5 + 3 + 1.5) / 3, "c": (2.5 + 1 + 3) / 3})


def test_summary_means_and_ranks_follow_the_cells():
    spec_a = odds.DetectorSpec("a", "peer", "x:y")
    spec_b = odds.DetectorSpec("b", "peer", "x:y")
    off = odds.DetectorSpec("off", "offline", "x:y")

    def ok(auc: float, ap: float) -> dict:
        return {"status": "ok", "roc_auc": auc, "ap": ap, "records_per_s": 100.0, "records": 10}

    res = {
        "a|f1|0": ok(0.9, 0.5), "a|f1|1": ok(0.7, 0.3), "a|f2|0": ok(0.6, 0.2), "a|f2|1": ok(0.6, 0.2),
        "b|f1|0": ok(0.5, 0.1), "b|f1|1": ok(0.5, 0.1), "b|f2|0": ok(0.9, 0.9), "b|f2|1": {"status": "timeout"},
        "off|f1|0": ok(1.0, 1.0), "off|f1|1": ok(1.0, 1.0), "off|f2|0": ok(1.0, 1.0), "off|f2|1": ok(1.0, 1.0),
    }  # fmt: skip
    s = odds.summarize([spec_a, spec_b, off], ["f1", "f2"], [0, 1], res)
    assert s.cells["a", "f1"].mean("auc") == pytest.approx(0.8)
    assert s.cells["a", "f1"].std("auc") == pytest.approx(np.std([0.9, 0.7], ddof=1))
    assert s.cells["b", "f2"].status == "timeout"
    assert s.mean_over_files("a", "auc") == (pytest.approx(0.7), 2)
    assert s.mean_over_files("b", "auc") == (pytest.approx(0.5), 1)
    # The offline reference is not ranked; b's timeout on f2 ranks it last there.
    assert s.ranks("auc") == {"a": 1.0, "b": 2.0}
    assert s.common_files() == ["f1"]


def test_settings_overrides_parse_like_yaml():
    assert odds.parse_sets(["window.size=64", "detector.params.lr=1e-3", "detector.name=river-hst"]) == {
        "window": {"size": 64},
        "detector": {"params": {"lr": 0.001}, "name": "river-hst"},
    }


def test_the_harness_docstring_examples_run():
    import doctest

    from benchmarks import peers, skab

    for module in (odds, peers, skab):
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert attempted > 0 and failed == 0, module.__name__
