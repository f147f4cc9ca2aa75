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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # tensors only: this module must import without torch
    import torch

KINDS = ("none", "scale", "power", "exp")


@dataclass(frozen=True)
class Lamp:
    """A loss transform; a frozen value, so one instance may serve many trainers."""

    kind: Literal["none", "scale", "power", "exp"] = "none"
    c: float = 1.0
    p: float = 2.0
    beta: float = 1.0
    cap: float = 20.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LAMP kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.c <= 0 or self.p <= 0 or self.beta <= 0 or self.cap <= 0:
            raise ValueError("LAMP c, p, beta and cap must be positive")

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return loss
        if self.kind == "scale":
            return self.c * loss
        if self.kind == "power":
            return loss.clamp_min(0.0) ** self.p
        b, cap = self.beta, self.cap / self.beta
        inside = (b * loss.clamp(max=cap)).expm1() / b
        slope = math.exp(b * cap)
        return (math.expm1(b * cap) / b + slope * (loss - cap)).where(loss > cap, inside)

    def grad(self, loss: torch.Tensor) -> torch.Tensor:
        """The derivative of the transform at ``loss`` (for explicit backward passes)."""
        if self.kind == "none":
            return loss.new_ones(loss.shape)
        if self.kind == "scale":
            return loss.new_full(loss.shape, self.c)
        if self.kind == "power":
            return self.p * loss.clamp_min(1e-12) ** (self.p - 1.0)
        return (self.beta * loss.clamp(max=self.cap / self.beta)).exp()
