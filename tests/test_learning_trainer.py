"""The window trainer: components compose, and with every one off it is plain training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamad.learning.backbones import AutoEncoder, DeepSVDD, NeuTraL
from streamad.learning.components import Optimizer, Schedule
from streamad.learning.lamp import Lamp
from streamad.learning.loe import LatentLabeler
from streamad.learning.trainer import WindowTrainer
from streamad.learning.weights import ImportanceWeights


def test_everything_off_is_plain_minibatch_training() -> None:
    """Blind LOE, no weights, no LAMP, no warm-up extras, no replay: exactly Adam on
    the mean reconstruction error of consecutive batches."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 5)).astype(np.float32)
    ae = AutoEncoder(5, generator=torch.Generator().manual_seed(3))
    ref = AutoEncoder(5, generator=torch.Generator().manual_seed(3))
    trainer = WindowTrainer(ae, LatentLabeler(mode="blind"), schedule=Schedule(batch_size=64, warmup_records=0, replay=0), optimizer=Optimizer(lr=1e-2))
    for i in range(0, 512, 32):
        trainer.learn(X[i : i + 32])
    ref.observe(np.ones(5, dtype=bool))  # every feature varies: none is masked
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for i in range(0, 512, 64):
        x = torch.from_numpy(X[i : i + 64])
        opt.zero_grad()
        ref.losses(x)[0].mean().backward()
        opt.step()
    assert trainer.steps == 8
    for a, b in zip(ae.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def make(backbone: torch.nn.Module, loe_warmup: int = 128, **kw: object) -> WindowTrainer:
    schedule = dict(batch_size=64, warmup_records=128, warmup_epochs=2.0, warmup_boost=2.0, replay=256)
    schedule.update(kw)
    return WindowTrainer(
        backbone,  # type: ignore[arg-type]
        LatentLabeler(alpha=0.1, mode="soft", warmup=loe_warmup),
        ImportanceWeights(min_count=64),
        Lamp("none"),
        schedule=Schedule(**schedule),  # type: ignore[arg-type]
        optimizer=Optimizer(lr=1e-2),
    )


def contaminated(rng: np.random.Generator, n: int, d: int = 4, share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, d)) * 0.5
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, int(share * n), replace=False)] = True
    X[out] = rng.uniform(3, 5, size=(out.sum(), d)) * rng.choice([-1, 1], size=(out.sum(), d))
    return X, out


def test_loe_flags_mostly_planted_outliers_and_keeps_them_out_of_replay() -> None:
    rng = np.random.default_rng(1)
    t = make(AutoEncoder(4, generator=torch.Generator().manual_seed(0)))
    for _ in range(12):
        X, _ = contaminated(rng, 64)
        t.learn(X)
    assert t.loe_active
    X, out = contaminated(rng, 64)
    ln = t.score(X)
    flagged = t.labeler.label(ln).flagged
    assert flagged.sum() == out.sum() == 6
    assert (out[flagged]).all()
    mem = t.memory[: t.memory_size]
    assert (np.abs(mem).max(axis=1) > 2.9).mean() < 0.05  # outliers stay out of the replay memory


def test_warmup_makes_extra_steps_and_counts_records_once() -> None:
    rng = np.random.default_rng(0)
    t = make(AutoEncoder(4, generator=torch.Generator().manual_seed(0)), warmup_records=64, warmup_epochs=6.0, warmup_boost=2.0)
    reports, warm = t.learn(rng.normal(size=(32, 4)))  # 32 * 6 / 64 + 2 * log2(1 + 32 / 8)
    assert warm and len(reports) == t.warmup_target(32) == 7 and t.n_trained == 32
    reports, warm = t.learn(rng.normal(size=(32, 4)))
    assert warm and t.n_trained == 64
    reports, warm = t.learn(rng.normal(size=(32, 4)))
    assert not warm and reports == [] and t.n_pending == 32  # waits for a full batch of 64
    reports, _ = t.learn(rng.normal(size=(32, 4)))
    assert len(reports) == 1 and t.n_pending == 0


def test_train_share_trains_on_part_of_each_steady_state_batch() -> None:
    rng = np.random.default_rng(0)
    t = make(AutoEncoder(4, generator=torch.Generator().manual_seed(0)), warmup_records=64, train_share=0.25)
    t.learn(rng.normal(size=(64, 4)))  # the warm-up trains on every record
    assert t.n_trained == 64
    reports, warm = t.learn(rng.normal(size=(128, 4)))
    assert not warm and reports == [] and t.n_pending == 128  # a step consumes 4 batches' worth
    reports, _ = t.learn(rng.normal(size=(128, 4)))
    assert len(reports) == 1 and reports[0].n_fresh == 64 and t.n_trained == 128 and t.n_pending == 0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="train_share"):
            make(AutoEncoder(4), train_share=bad)


def test_settled_share_trains_less_once_the_loss_settles_and_all_again_when_it_rises() -> None:
    rng = np.random.default_rng(0)
    t = make(AutoEncoder(4, generator=torch.Generator().manual_seed(0)), warmup_records=64, settled_share=0.25, settle_steps=4)
    shares = []
    for _ in range(120):  # a steady stream: the loss stops falling, the share halves twice
        t.learn(rng.normal(size=(64, 4)))
        shares.append(t.share)
    assert shares[0] == 1.0 and min(shares) == 0.25 and shares[-1] == 0.25
    trained = t.n_trained
    t.learn(rng.normal(size=(64, 4)))
    t.learn(rng.normal(size=(64, 4)))
    assert t.n_trained - trained <= 64  # a step now takes a quarter of four batches' records
    state = t.state_dict()
    for _ in range(60):  # the stream moves far away: the loss rises, every record trains again
        t.learn(rng.normal(size=(64, 4)) * 4.0 + 8.0)
        if t.share == 1.0:
            break
    assert t.share == 1.0
    t.load_state_dict(state)  # the share and its running means are part of the state
    assert t.share == 0.25
    t.reopen_warmup()  # drift: the stream is young again
    assert t.share == 1.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="settled_share"):
            make(AutoEncoder(4), settled_share=bad)


def test_a_backbone_without_an_anomalous_loss_cannot_train_loe_hard() -> None:
    with pytest.raises(ValueError, match="anomalous loss"):
        WindowTrainer(AutoEncoder(4, anomalous_loss="none"), LatentLabeler(mode="hard"))
    WindowTrainer(AutoEncoder(4, anomalous_loss="none"), LatentLabeler(mode="refine"))


def test_every_backbone_trains_and_stays_finite() -> None:
    rng = np.random.default_rng(0)
    for bb in (AutoEncoder(6), DeepSVDD(6), NeuTraL(6, n_transforms=4)):
        t = make(bb, loe_warmup=64)
        for _ in range(8):
            X, _ = contaminated(rng, 64, d=6)
            reports, _ = t.learn(X)
            assert all(np.isfinite(r.loss) for r in reports)
        assert np.isfinite(t.score(rng.normal(size=(16, 6)))).all()


def test_reopen_warmup_after_drift() -> None:
    rng = np.random.default_rng(0)
    t = make(AutoEncoder(4), warmup_records=64, loe_warmup=64)
    for _ in range(6):
        t.learn(rng.normal(size=(64, 4)))
    assert not t.in_warmup and t.loe_active and t.hist.n_seen > 0
    t.reopen_warmup()
    assert t.in_warmup and not t.loe_active and t.hist.n_seen == 0



@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
@pytest.mark.parametrize("anomalous", ["complement", "inverse"])
@pytest.mark.parametrize("lamp", [Lamp("none"), Lamp("power", p=1.5), Lamp("exp", beta=0.5, cap=3.0)])
def test_explicit_backward_equals_autograd(activation: str, anomalous: str, lamp: Lamp) -> None:
    g = torch.Generator().manual_seed(0)
    ae = AutoEncoder(6, activation=activation, anomalous_loss=anomalous, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # leave the zero start so every layer gets a gradient
        for p in ae.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    x = torch.randn(40, 6, generator=g) * 2
    x[3] = 200.0  # beyond the loss cap: no gradient
    c_n = torch.rand(40, generator=g)
    c_a = (torch.rand(40, generator=g) > 0.8).float()
    ln, la = ae.losses(x)
    (c_n * lamp(ln) + c_a * la).mean().backward()
    auto = [p.grad.clone() for p in ae.parameters()]
    ae.zero_grad(set_to_none=True)
    ln2, la2, _, cache = ae.forward_cached(x)
    assert torch.allclose(ln.detach(), ln2) and torch.allclose(la.detach(), la2)
    ae.backward_cached(cache, c_n * lamp.grad(ln2) / 40, c_a / 40)
    for a, p in zip(auto, ae.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lamp", [Lamp("none"), Lamp("power", p=1.5)])
def test_the_backbone_computes_its_gradients_either_way(lamp: Lamp) -> None:
    """``explicit_backward=False`` makes the same autoencoder train through autograd: the
    trainer does not know which, and the two runs stay together."""
    rng = np.random.default_rng(2)
    runs = []
    for explicit in (True, False):
        ae = AutoEncoder(5, generator=torch.Generator().manual_seed(3), explicit_backward=explicit)
        assert ae.explicit_backward is explicit
        t = WindowTrainer(ae, LatentLabeler(alpha=0.1, mode="hard"), None, lamp, schedule=Schedule(batch_size=32, warmup_records=64), optimizer=Optimizer(lr=1e-2))
        for i in range(6):
            t.learn(np.random.default_rng(i).normal(size=(32, 5)))
        runs.append(t)
    for a, b in zip(runs[0].backbone.parameters(), runs[1].backbone.parameters()):
        assert torch.allclose(a, b, atol=1e-4)
    X = rng.normal(size=(16, 5))
    assert np.allclose(runs[0].score(X), runs[1].score(X), rtol=1e-3, atol=1e-4)
