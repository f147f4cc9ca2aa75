"""LOE latent labels: the E-step flags what the model finds most anomalous."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.learning.loe import LatentLabeler, top_share


def planted_window(seed: int = 0, n: int = 200, n_out: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Ranking values of a window: normal records near 0, planted outliers far out."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=n)
    idx = rng.choice(n, n_out, replace=False)
    r[idx] = rng.uniform(6, 10, n_out)
    return r, np.sort(idx)


@pytest.mark.parametrize("mode", ["hard", "soft", "refine"])
def test_window_estep_flags_the_planted_outliers(mode: str) -> None:
    r, planted = planted_window()
    out = LatentLabeler(alpha=0.05, mode=mode).label(r)
    assert np.flatnonzero(out.flagged).tolist() == planted.tolist()
    assert out.flag_rate == pytest.approx(0.05)
    normal = ~out.flagged
    assert (out.normal[normal] == 1).all() and (out.anomalous[normal] == 0).all()
    expected = {"hard": (0.0, 1.0), "soft": (0.5, 0.5), "refine": (0.0, 0.0)}[mode]
    assert (out.normal[out.flagged] == expected[0]).all() and (out.anomalous[out.flagged] == expected[1]).all()


def test_blind_flags_nothing() -> None:
    r, _ = planted_window()
    out = LatentLabeler(alpha=0.1, mode="blind").label(r)
    assert not out.flagged.any() and (out.normal == 1).all() and (out.anomalous == 0).all()


def test_top_share_takes_floor_of_alpha_n() -> None:
    assert top_share(np.arange(19.0), 0.1).sum() == 1
    assert top_share(np.arange(20.0), 0.1).sum() == 2
    assert top_share(np.arange(5.0), 0.1).sum() == 0


def test_running_estep_flags_nothing_in_a_clean_window_and_caps_a_burst() -> None:
    rng = np.random.default_rng(1)
    lab = LatentLabeler(alpha=0.05, mode="soft", estep="running", cap=0.2, decay=1.0)
    for _ in range(20):
        lab.observe(rng.normal(size=256))
    clean = np.clip(rng.normal(size=100), -1.0, 1.0)  # below the running 95% quantile
    assert not lab.label(clean).flagged.any()
    burst = np.r_[rng.normal(size=50), rng.uniform(8, 9, size=50)]
    flagged = lab.label(burst).flagged
    assert flagged.sum() == 20  # capped at 20% of the window ...
    assert flagged[50:].sum() == 20  # ... and all of them from the burst


def test_running_estep_falls_back_to_window_until_ready() -> None:
    r, planted = planted_window()
    lab = LatentLabeler(alpha=0.05, estep="running")
    assert np.flatnonzero(lab.label(r).flagged).tolist() == planted.tolist()


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        LatentLabeler(mode="sometimes")
    with pytest.raises(ValueError, match="estep"):
        LatentLabeler(estep="daily")
    with pytest.raises(ValueError, match="alpha"):
        LatentLabeler(alpha=1.5)
