"""LAMP, loss amplification (after Park et al., 2023): a transform of the per-record
training loss of LOE-normal records, applied after the importance weights.

A reconstruction model that fits its normal data tightly fails harder on unseen
patterns; amplifying the training loss sharpens that fit. The exact function of the
paper is not public; these are ours:

- ``none``:        ``l``
- ``scale``:       ``c l`` (nearly a no-op under Adam, which is invariant to a constant
  factor of the loss; kept so the ablation can show it)
- ``power``:       ``l ** p`` (p > 1 puts more weight on the records fitted worst)
- ``exp``:         ``(exp(beta l) - 1) / beta``, continued linearly beyond ``cap`` so a
  wild record cannot overflow the loss

The detection score is never transformed.

>>> import torch
>>> Lamp("power", p=2.0)(torch.tensor([0.5, 2.0])).tolist()
[0.25, 4.0]
>>> Lamp("none")(torch.tensor([3.0])).tolist()
[3.0]
"""

from __future__ import annotations

import math

import torch

KINDS = ("none", "scale", "power", "exp")


class Lamp:
    def __init__(self, kind: str = "none", c: float = 1.0, p: float = 2.0, beta: float = 1.0, cap: float = 20.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"LAMP kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if c <= 0 or p <= 0 or beta <= 0 or cap <= 0:
            raise ValueError("LAMP c, p, beta and cap must be positive")
        self.kind = kind
        self.c = c
        self.p = p
        self.beta = beta
        self.cap = cap

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return loss
        if self.kind == "scale":
            return self.c * loss
        if self.kind == "power":
            return loss.clamp_min(0.0) ** self.p
        b, cap = self.beta, self.cap / self.beta
        inside = torch.expm1(b * loss.clamp(max=cap)) / b
        slope = math.exp(b * cap)
        return torch.where(loss > cap, math.expm1(b * cap) / b + slope * (loss - cap), inside)

    def grad(self, loss: torch.Tensor) -> torch.Tensor:
        """The derivative of the transform at ``loss`` (for explicit backward passes)."""
        if self.kind == "none":
            return torch.ones_like(loss)
        if self.kind == "scale":
            return torch.full_like(loss, self.c)
        if self.kind == "power":
            return self.p * loss.clamp_min(1e-12) ** (self.p - 1.0)
        return torch.exp(self.beta * loss.clamp(max=self.cap / self.beta))
