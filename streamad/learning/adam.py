"""Adam, without ``torch.optim``.

Any ``torch.optim`` optimiser imports torch's compiler (``torch._dynamo``) the first
time it is built: 0.8 s of every command-line start spent on code we never run. This
is the same update as ``torch.optim.Adam`` with its defaults (L2 weight decay
added to the gradient, no AMSGrad), applied with torch's multi-tensor kernels, and its
``state_dict`` has the layout of ``torch.optim.Adam``'s, so checkpoints written by
either load into the other.

>>> import torch
>>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
>>> opt = Adam([w], lr=0.1)
>>> (w ** 2).sum().backward()
>>> opt.step()
>>> [round(v, 4) for v in w.tolist()]
[0.9, -1.9]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

Group = dict[str, Any]

#: the hyperparameters a group carries, which a loaded state restores (as torch does)
_HYPER = ("lr", "betas", "eps", "weight_decay")


class Adam:
    """Adam over ``params`` (tensors, or groups as dicts with ``params`` and any of
    ``lr``, ``betas``, ``eps``, ``weight_decay`` overriding the defaults given here)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[Group],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        items: list[Any] = list(params)
        groups: list[Group] = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[Group] = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        # Per parameter: step count (a float, as torch keeps it), first and second moments.
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = g["betas"]
            grads: Any = [p.grad for p in params]
            if g["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=g["weight_decay"])
            states = [self._state(p) for p in params]
            for s in states:
                s["step"] += 1.0
            m = [s["exp_avg"] for s in states]
            v = [s["exp_avg_sq"] for s in states]
            torch._foreach_lerp_(m, grads, 1.0 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
            denom = torch._foreach_sqrt(v)
            steps = {s["step"] for s in states}
            if len(steps) == 1:  # as usual: every parameter had a gradient at every step
                (t,) = steps
                torch._foreach_div_(denom, math.sqrt(1.0 - beta2**t))
                torch._foreach_add_(denom, g["eps"])
                torch._foreach_addcdiv_(params, m, denom, value=-g["lr"] / (1.0 - beta1**t))
            else:
                torch._foreach_div_(denom, [math.sqrt(1.0 - beta2 ** s["step"]) for s in states])
                torch._foreach_add_(denom, g["eps"])
                torch._foreach_addcdiv_(params, m, denom, [-g["lr"] / (1.0 - beta1 ** s["step"]) for s in states])

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        s = self.state.get(p)
        if s is None:
            s = {"step": 0.0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            self.state[p] = s
        return s

    # -- state: torch.optim.Adam's layout ----------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        index: dict[torch.Tensor, int] = {}
        groups = []
        for g in self.param_groups:
            ids = [index.setdefault(p, len(index)) for p in g["params"]]
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {
            index[p]: {"step": torch.tensor(s["step"]), "exp_avg": s["exp_avg"].clone(), "exp_avg_sq": s["exp_avg_sq"].clone()}
            for p, s in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state from this class or from ``torch.optim.Adam`` over the same
        parameters in the same groups (keys torch adds beside these are ignored)."""
        saved = state["param_groups"]
        if len(saved) != len(self.param_groups) or any(len(a["params"]) != len(b["params"]) for a, b in zip(saved, self.param_groups)):
            raise ValueError("optimizer state does not match the parameter groups")
        by_id: dict[int, torch.Tensor] = {}
        for mine, theirs in zip(self.param_groups, saved):
            for k in _HYPER:
                if k in theirs:
                    mine[k] = tuple(theirs[k]) if k == "betas" else theirs[k]
            by_id.update(zip(theirs["params"], mine["params"]))
        self.state = {}
        for i, s in state["state"].items():
            p = by_id[int(i)]
            self.state[p] = {
                "step": float(s["step"]),
                "exp_avg": torch.as_tensor(s["exp_avg"]).to(p).clone(),
                "exp_avg_sq": torch.as_tensor(s["exp_avg_sq"]).to(p).clone(),
            }
