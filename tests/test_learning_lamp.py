"""LAMP loss transforms, and the honest check that a constant factor does ~nothing under Adam."""

from __future__ import annotations

import math

import pytest
import torch

from streamad.learning.lamp import Lamp


def test_transforms() -> None:
    x = torch.tensor([0.0, 0.5, 2.0])
    assert torch.equal(Lamp("none")(x), x)
    assert torch.allclose(Lamp("scale", c=3.0)(x), 3 * x)
    assert torch.allclose(Lamp("power", p=2.0)(x), x**2)
    assert torch.allclose(Lamp("exp", beta=1.0)(x), torch.expm1(x))


def test_exp_is_finite_and_increasing_beyond_its_cap() -> None:
    lamp = Lamp("exp", beta=2.0, cap=10.0)
    x = torch.tensor([4.0, 5.0, 6.0, 1e6])
    y = lamp(x)
    assert torch.isfinite(y).all() and (y.diff() > 0).all()
    assert y[1].item() == pytest.approx(math.expm1(10.0) / 2.0)  # continuous at the cap


def _train(lamp: Lamp, steps: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3, generator=g))
    x = torch.randn(64, 5, generator=g)
    target = torch.randn(64, 3, generator=g)
    opt = torch.optim.Adam([w], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        lamp(((x @ w - target) ** 2).mean(dim=1)).mean().backward()
        opt.step()
    return w.detach()


def test_a_constant_factor_is_nearly_a_no_op_under_adam() -> None:
    plain = _train(Lamp("none"))
    scaled = _train(Lamp("scale", c=100.0))
    powered = _train(Lamp("power", p=2.0))
    assert torch.allclose(plain, scaled, atol=1e-4)  # Adam normalises the gradient scale away
    assert not torch.allclose(plain, powered, atol=1e-2)  # a non-linear transform does change training


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        Lamp("square")
