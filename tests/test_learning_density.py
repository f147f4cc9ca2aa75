"""The density head: a robust, per-feature-normalised reading of an autoencoder's
residuals that changes the detection score and never the training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamad import checkpoint
from streamad.detectors import make_detector
from streamad.learning.backbones import AutoEncoder, DeepSVDD
from streamad.learning.components import HeadSpec, Optimizer, Schedule
from streamad.learning.density import DensityHead
from streamad.learning.loe import LatentLabeler
from streamad.learning.trainer import WindowTrainer


def test_gaussian_without_normalisation_is_the_mean_squared_error() -> None:
    head = DensityHead(4, 2, nu=0.0, normalize=False, min_weight=1)
    r = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    head.update(r * 3.0, torch.zeros(50, 2))
    assert torch.allclose(head.score(r, torch.zeros(50, 2)), (r * r).mean(dim=1))


def test_residuals_are_measured_against_their_feature_running_variance() -> None:
    head = DensityHead(2, 1, nu=1.0, floor=1e-3, min_weight=10)
    g = torch.Generator().manual_seed(1)
    r = torch.randn(200, 2, generator=g) * torch.tensor([0.1, 2.0])  # feature 0 is always well reconstructed
    head.update(r, torch.zeros(200, 1))
    assert head.ready
    assert np.allclose(head.r2, [0.01, 4.0], rtol=0.3)
    a, b = head.score(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1))
    assert a > 3 * b  # the same residual is 10 sigma on feature 0, half a sigma on feature 1


def test_the_floor_bounds_the_gain_of_a_perfectly_reconstructed_feature() -> None:
    head = DensityHead(2, 1, nu=0.0, floor=0.5, min_weight=1)
    head.update(torch.zeros(20, 2), torch.zeros(20, 1))
    s = head.score(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 1))
    assert float(s) == pytest.approx(1.0 / 0.5 / 2)


def test_student_t_prefers_many_moderate_residuals_to_one_wild_one() -> None:
    r = torch.tensor([[10.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    t = DensityHead(4, 1, nu=1.0).score(r, torch.zeros(2, 1))
    gauss = DensityHead(4, 1, nu=0.0).score(r, torch.zeros(2, 1))
    assert t[1] > t[0] and gauss[0] > gauss[1]


def test_latent_term_scores_a_code_far_from_the_running_latent_mean() -> None:
    head = DensityHead(3, 2, latent_weight=1.0, min_weight=10)
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(2)) * 0.1
    head.update(torch.zeros(100, 3), z)
    near, far = head.score(torch.zeros(2, 3), torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
    assert far > near
    assert float(DensityHead(3, 2, latent_weight=0.0).score(torch.zeros(1, 3), torch.tensor([[5.0, 5.0]]))) == 0.0


def test_not_ready_means_unit_variances_and_no_latent_term() -> None:
    head = DensityHead(2, 1, latent_weight=1.0, min_weight=100)
    head.update(torch.full((10, 2), 0.01), torch.ones(10, 1))
    assert not head.ready
    r = torch.tensor([[1.0, 1.0]])
    assert torch.allclose(head.score(r, torch.zeros(1, 1)), torch.log1p(torch.tensor([1.0])))


def test_score_is_pure_finite_on_extremes_and_state_round_trips() -> None:
    head = DensityHead(3, 2, latent_weight=1.0, min_weight=4)
    g = torch.Generator().manual_seed(3)
    head.update(torch.randn(64, 3, generator=g), torch.randn(64, 2, generator=g))
    state = checkpoint.dumps(head.state_dict())
    r = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    z = torch.tensor([[1e3, 1e3], [0.0, 0.0]])
    s = head.score(r, z)
    assert torch.isfinite(s).all()
    assert checkpoint.dumps(head.state_dict()) == state
    back = DensityHead(3, 2, latent_weight=1.0, min_weight=4)
    back.load_state_dict(checkpoint.loads(state))
    assert torch.equal(back.score(r, z), s)


def test_bad_settings_are_rejected() -> None:
    for kw in ({"nu": -1.0}, {"decay": 0.0}, {"floor": 0.0}, {"latent_weight": -1.0}):
        with pytest.raises(ValueError):
            DensityHead(2, 1, **kw)  # type: ignore[arg-type]


def _trainer(head: DensityHead | None, rank: str = "loss", explicit_backward: bool = True) -> WindowTrainer:
    ae = AutoEncoder(5, generator=torch.Generator().manual_seed(4), explicit_backward=explicit_backward)
    schedule = Schedule(batch_size=32, warmup_records=64, replay=128)
    return WindowTrainer(ae, LatentLabeler(alpha=0.1, mode="hard", rank=rank), head=head, schedule=schedule, optimizer=Optimizer(lr=1e-2))


@pytest.mark.parametrize("autograd", [False, True])
def test_the_head_changes_the_score_never_the_training(autograd: bool) -> None:
    rng = np.random.default_rng(5)
    plain, headed = _trainer(None, explicit_backward=not autograd), _trainer(DensityHead(5, 2, min_weight=16), explicit_backward=not autograd)
    for _ in range(10):
        X = rng.normal(size=(40, 5))
        X[::8] += 5.0
        plain.learn(X)
        headed.learn(X)
    for a, b in zip(plain.backbone.parameters(), headed.backbone.parameters()):
        assert torch.equal(a, b)
    assert headed.head is not None and headed.head.ready
    X = rng.normal(size=(20, 5))
    assert not np.allclose(plain.score(X), headed.score(X))


def test_loe_can_rank_by_the_score_instead() -> None:
    rng = np.random.default_rng(6)
    by_loss, by_score = _trainer(DensityHead(5, 2, min_weight=16)), _trainer(DensityHead(5, 2, min_weight=16), rank="score")
    for _ in range(10):
        X = rng.normal(size=(40, 5)) * np.array([0.1, 0.1, 1.0, 3.0, 3.0])
        by_loss.learn(X)
        by_score.learn(X)
    assert any(not torch.equal(a, b) for a, b in zip(by_loss.backbone.parameters(), by_score.backbone.parameters()))
    with pytest.raises(ValueError, match="rank"):
        _trainer(None, rank="both")


def test_a_backbone_without_residuals_cannot_take_a_head() -> None:
    with pytest.raises(ValueError, match="residuals"):
        WindowTrainer(DeepSVDD(4), LatentLabeler(mode="refine"), head=DensityHead(4, 2))
    with pytest.raises(ValueError, match="residuals"):
        make_detector("loe-svdd").with_components(head=HeadSpec()).check_components()


def test_detector_score_head_switch() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(256, 4))
    on, off = make_detector("loe-ae", seed=1, gauss=False, histograms=False), make_detector("loe-ae", seed=1, gauss=False, histograms=False).with_components(head=None)
    assert on.components().head == HeadSpec() and off.components().head is None
    for det in (on, off):
        for i in range(0, 256, 64):
            det.learn(X[i : i + 64])
    probe = np.r_[np.zeros((1, 4)), np.full((1, 4), 4.0)]
    for det in (on, off):
        normal, odd = det.score(probe)
        assert odd > normal
    assert off.trainer is not None and off.trainer.head is None
    t = off.trainer
    with torch.no_grad():
        assert np.allclose(off.score(probe), t.backbone.score(t.tensor(probe)).double().numpy())


def test_a_keep_mask_folds_in_exactly_the_kept_records() -> None:
    g = torch.Generator().manual_seed(8)
    r, z = torch.randn(30, 3, generator=g), torch.randn(30, 2, generator=g)
    keep = np.arange(30) % 4 != 0
    masked, indexed = DensityHead(3, 2, latent_weight=1.0), DensityHead(3, 2, latent_weight=1.0)
    masked.update(r, z, keep)
    indexed.update(r[torch.from_numpy(keep)], z[torch.from_numpy(keep)])
    assert masked.weight == indexed.weight == keep.sum()
    for a, b in zip(masked.state_dict().values(), indexed.state_dict().values()):
        assert np.allclose(a, b, atol=1e-6)
    masked.update(r, z, np.zeros(30, dtype=bool))  # nothing kept: nothing changes
    assert masked.weight == keep.sum()
