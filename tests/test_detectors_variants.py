"""The research API: every ablation variant (benchmarks/variants.py) builds through it
and streams through the pipeline; the faithfulness check builds the bare trainer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.io

from benchmarks import loe_faithfulness
from benchmarks.ablation import DEFAULT_VARIANTS
from benchmarks.variants import VARIANTS
from streamad.config import load_settings
from streamad.connectors.odds import ArraySource
from streamad.connectors.sinks import NullSink
from streamad.detectors import make_detector
from streamad.detectors.loe_ae import LoeAE
from streamad.learning.components import Components
from streamad.pipeline import Observer, Pipeline, WindowResult


class Scores(Observer):
    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []

    def on_window(self, result: WindowResult) -> None:
        self.scores.append(result.scores)


def stream(n: int = 700, d: int = 4) -> np.ndarray:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, d))
    X[::41] += 6.0
    return X


@pytest.mark.parametrize("key", list(VARIANTS))
def test_every_variant_builds_and_streams_through_the_pipeline(key: str) -> None:
    variant = VARIANTS[key]
    name = variant.detector(key, "loe-ae")
    settings = load_settings(overrides={"detector": {"name": name, "params": dict(variant.params), "seed": 1}}, env={})
    seen = Scores()
    Pipeline(settings, NullSink(), observers=[seen]).run(ArraySource(stream()))
    scores = np.concatenate(seen.scores)
    assert len(scores) == 700 and np.isfinite(scores).all()
    det = make_detector(name, **variant.params)
    assert det.name == name
    assert det.components() == variant.change(LoeAE(**variant.params).components())  # type: ignore[attr-defined]
    det.check_components()  # type: ignore[attr-defined]


def test_the_committed_table_names_known_variants_and_each_changes_one_thing() -> None:
    assert set(DEFAULT_VARIANTS) <= set(VARIANTS)
    base = LoeAE().components()
    for key, v in VARIANTS.items():
        c = v.change(LoeAE(**v.params).components())
        changed = {f.name for f in dataclasses.fields(Components) if getattr(c, f.name) != getattr(base, f.name)}
        assert bool(changed) == (key != "default"), key
    with pytest.raises(TypeError):
        dataclasses.replace(base.labeler, estpe="running")  # a typo fails where the variant is made


def test_the_faithfulness_check_runs_the_bare_trainer(tmp_path, monkeypatch) -> None:
    # A worker pins the whole process to one thread; the test process is shared.
    monkeypatch.setattr(loe_faithfulness, "single_thread", lambda: None)
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(200, 5)), rng.normal(size=(20, 5)) + 4.0]
    y = np.r_[np.zeros(200), np.ones(20)]
    scipy.io.savemat(tmp_path / "tiny.mat", {"X": X, "y": y[:, None]})
    for method, m in loe_faithfulness.METHODS.items():
        job = {
            "method": method, "dataset": "tiny", "seed": 0, "epochs": 2, "batch_size": 32, "weight_decay": 0.0,
            "scaling": "minmax" if m["backbone"] == "ntl" else "standard", "lr": 1e-3, "transforms": 3, "data_dir": str(tmp_path),
        }  # fmt: skip
        r = loe_faithfulness.run_one(job)
        assert 0.0 <= r["f1"] <= 100.0 and r["n_train"] == 112
