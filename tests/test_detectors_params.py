"""Detector parameters: typed keyword arguments, checked by name from the signature
(settings, the registry, the constructor alike), documented, and checked without
building a model or importing torch."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from streamad.config import load_settings
from streamad.detectors import available, detector_class, make_detector, validate_params
from streamad.detectors.params import ParamsError
from streamad.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "loe-ae": {
        "lr", "batch_size", "warmup_records", "loe", "alpha", "hidden", "latent", "weights", "lamp", "gauss", "histograms", "tail",
        "train_share", "settled_share", "score_warmup", "device", "seed",
    },
    "loe-ntl": {"lr", "batch_size", "warmup_records", "loe", "alpha", "n_transforms", "hidden", "rep", "weights", "lamp", "train_share", "settled_share", "score_warmup", "device", "seed"},
    "loe-svdd": {"lr", "batch_size", "warmup_records", "loe", "alpha", "hidden", "rep", "weights", "lamp", "train_share", "settled_share", "score_warmup", "device", "seed"},
    "gaussian": {"half_life", "ridge", "warmup", "early", "trim", "seed"},
    "river-hst": {"n_trees", "height", "window_size", "seed"},
}


def settings_error(params: dict[str, object], name: str = "default") -> str:
    with pytest.raises(ConfigError) as e:
        load_settings(overrides={"detector": {"name": name, "params": params}}, env={})
    return str(e.value)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_shipped_detector_has_typed_documented_keyword_parameters(name: str) -> None:
    cls = detector_class(name)
    params = inspect.signature(cls).parameters
    assert set(params) == PUBLIC[name]
    doc = inspect.getdoc(cls) or ""
    assert "Parameters\n----------" in doc and "Examples\n--------" in doc
    for p in params.values():
        assert p.default is not p.empty, p.name  # every parameter has a default
        assert p.annotation is not p.empty, p.name
        assert f"\n{p.name} : " in doc, f"{name}: {p.name} is not documented"
    assert make_detector(name).get_params() == {p.name: p.default for p in params.values()}


def test_settings_name_the_bad_key_and_say_what_is_wrong() -> None:
    assert settings_error({"alpha": 1.5}) == "detector.params.alpha: Input should be less than 1 (got 1.5)"
    assert settings_error({"alpah": 0.2}) == "detector.params.alpah: unknown parameter; did you mean alpha?"
    assert settings_error({"lr": "fast"}) == "detector.params.lr: Input should be a valid number, unable to parse string as a number (got 'fast')"
    assert settings_error({"loe": "maybe"}).startswith("detector.params.loe: Input should be 'hard', 'soft', 'refine' or 'blind'")
    assert settings_error({"n_trees": 0}, "river-hst") == "detector.params.n_trees: Input should be greater than or equal to 1 (got 0)"
    unknown = settings_error({"bogus": 1}, "gaussian")
    assert unknown == "detector.params.bogus: unknown parameter; gaussian takes early, half_life, ridge, seed, trim, warmup"
    both = settings_error({"alpha": -1, "batch_sise": 64})
    assert "detector.params.batch_sise: unknown parameter; did you mean batch_size?" in both and "detector.params.alpha:" in both


def test_settings_convert_values_and_keep_checking_on_assignment() -> None:
    s = load_settings(overrides={"detector": {"params": {"alpha": "0.2", "hidden": 16}}}, env={})
    assert validate_params(s.detector.name, s.detector.params) == {"alpha": 0.2, "hidden": 16}
    with pytest.raises(ValueError, match="alpha"):
        s.detector.params = {"alpha": 2.0}
    with pytest.raises(ValueError, match="unknown parameter"):
        s.detector = {"name": "gaussian", "params": {"alpha": 0.1}}  # type: ignore[assignment]


def test_the_registry_and_the_constructor_check_alike() -> None:
    with pytest.raises(ParamsError, match="alpha: Input should be less than 1"):
        validate_params("loe-ae", {"alpha": 1.0})
    with pytest.raises(ValueError, match="bad parameters for detector 'loe-ae': alpha: Input should be less than 1"):
        make_detector("loe-ae", alpha=1.0)
    with pytest.raises(ValueError, match="train_share: Input should be greater than 0"):
        detector_class("loe-ae")(train_share=0.0)
    with pytest.raises(ValueError, match="ridge"):
        detector_class("gaussian")(ridge=2.0)
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        validate_params("nope", {})
    assert make_detector("loe-ae", lr="0.01").lr == 0.01  # type: ignore[arg-type]


def test_default_is_a_name_for_the_default_detector() -> None:
    assert make_detector("default").name == "loe-ae"
    assert validate_params("default", {"alpha": 0.05}) == {"alpha": 0.05}
    assert "default" not in available()  # an alias, not a second detector


def test_settings_and_validation_never_import_torch_or_build_a_model() -> None:
    code = (
        "import sys\n"
        "import streamad.detectors as d\n"
        "d.validate_params('loe-ae', {'lr': 0.01})\n"
        "from streamad.config import load_settings\n"
        "s = load_settings(overrides={'detector': {'params': {'alpha': 0.2}}}, env={})\n"
        "from streamad.factory import apply_threads, build_detector\n"
        "apply_threads(s)\n"
        "det = build_detector(s)\n"
        "for name in d.available():\n"
        "    d.describe(name)\n"
        "    d.make_detector(name)\n"
        "assert det.trainer is None\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import numpy as np\n"
        "det.learn(np.zeros((8, 3)))  # the first learned window builds the network: torch now\n"
        "import torch\n"
        "assert torch.get_num_threads() == 1\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_tail_sets_how_loe_ae_reads_its_components_scores():
    from streamad.detectors.loe_ae import LoeAE

    assert LoeAE(histograms=False).components().calibration.tail is None  # robust z-scores
    assert LoeAE(histograms=False, tail=0.9).components().calibration.tail == 0.9
    assert LoeAE().components().calibration.tail == 0.99  # with the feature histograms (the default), whatever tail says
    with pytest.raises(ValueError, match="tail"):
        make_detector("loe-ae", tail=1.5)
