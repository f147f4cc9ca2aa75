"""streamad's Adam: torch's update and state layout, without torch's compiler."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from streamad.learning.adam import Adam


def net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3), torch.nn.Linear(3, 6))


def groups(m: torch.nn.Sequential) -> list[dict]:
    return [{"params": list(m[0].parameters())}, {"params": [*m[2].parameters(), *m[3].parameters()], "lr": 3e-2, "betas": (0.95, 0.99)}]


def train(m: torch.nn.Sequential, opt: object, X: torch.Tensor, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)  # type: ignore[attr-defined]
        ((m(X) - X) ** 2).mean().backward()
        opt.step()  # type: ignore[attr-defined]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_same_steps_as_torch_adam(weight_decay: float) -> None:
    X = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    ours, ref = net(), net()
    train(ours, Adam(groups(ours), lr=1e-2, weight_decay=weight_decay), X, 50)
    train(ref, torch.optim.Adam(groups(ref), lr=1e-2, weight_decay=weight_decay, foreach=False), X, 50)
    moved = max((a - b).abs().max().item() for a, b in zip(net().parameters(), ours.parameters()))
    assert moved > 1e-2
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_parameter_without_gradient_keeps_its_own_count() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    ra, rb = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    ours, ref = Adam([a, b], lr=0.1), torch.optim.Adam([ra, rb], lr=0.1, foreach=False)
    for i in range(6):
        for opt, (p, q) in ((ours, (a, b)), (ref, (ra, rb))):
            opt.zero_grad()
            loss = (p**2).sum() + ((q**3).sum() if i % 2 else 0.0)
            loss.backward()
            opt.step()
    torch.testing.assert_close(a, ra, rtol=0, atol=1e-7)
    torch.testing.assert_close(b, rb, rtol=0, atol=1e-7)
    assert ours.state[a]["step"] == 6.0 and ours.state[b]["step"] == 3.0


@pytest.mark.parametrize("direction", ["torch to ours", "ours to torch"])
def test_state_moves_between_torch_adam_and_ours(direction: str) -> None:
    X = torch.randn(32, 6, generator=torch.Generator().manual_seed(2))
    first, second = net(), net()
    make_first = (lambda g: torch.optim.Adam(g, lr=1e-2)) if direction == "torch to ours" else (lambda g: Adam(g, lr=1e-2))
    make_second = (lambda g: Adam(g)) if direction == "torch to ours" else (lambda g: torch.optim.Adam(g))
    opt = make_first(groups(first))
    train(first, opt, X, 20)
    second.load_state_dict(first.state_dict())
    resumed = make_second(groups(second))
    resumed.load_state_dict(opt.state_dict())
    train(first, opt, X, 20)
    train(second, resumed, X, 20)
    assert resumed.param_groups[1]["lr"] == 3e-2 and tuple(resumed.param_groups[1]["betas"]) == (0.95, 0.99)
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_mismatched_state_is_refused() -> None:
    m = net()
    opt = Adam(groups(m))
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict(Adam(list(m.parameters())).state_dict())


def test_learning_does_not_import_torchs_compiler() -> None:
    code = (
        "import sys, numpy as np\n"
        "from streamad import Model\n"
        "m = Model()\n"
        "m.learn_many(np.random.default_rng(0).normal(size=(2000, 4)))\n"
        "assert m.detector.trainer.steps > 0\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
