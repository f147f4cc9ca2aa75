"""A normalizing flow of affine coupling blocks for tabular records (RealNVP-style).

``Flow`` maps a record ``x`` (d features, already scaled) to a latent ``z`` of the same
width and gives ``log |det dz/dx|`` per record, so ``log p(x) = log p_prior(z) + logdet``
for any prior on ``z`` (learning/hgad.py puts a Gaussian mixture there).

- First a per-feature affine map (``ActNorm``: a learned log-scale and shift, from the
  identity), so the flow can set each feature's spread before the couplings.
- Then ``blocks`` affine couplings. Block ``b`` splits the features by a fixed random
  mask (drawn from the seed): the masked half passes unchanged and conditions a small
  network (one hidden layer of ``hidden`` units, ReLU) that gives a log-scale ``s`` and
  a shift ``t`` for the other half: ``y = x * exp(s) + t`` there. ``s`` is soft-clamped
  (``clamp * tanh(s / clamp)``) so no block can scale a feature by more than
  ``exp(±clamp)``: the flow stays trainable on wild records. The networks' last layers
  start at zero, so a new flow is the identity.

Very low-dimensional records are **not padded**. A coupling's mask may be empty: with
one feature, every block is an affine map with learned constants (the network sees only
zeros, its biases give ``s`` and ``t``), and with two or three features each block
transforms the features its mask leaves out given the others. Padding would add
dimensions with no spread (constants, or exact copies of features), whose density is a
point mass: a flow trained by likelihood scales them without bound (up to the clamp in
every block), and their log-determinant would swamp the loss of the real features.

**Live features.** ``live`` (a buffer, 1 per feature, all 1 by default) marks the
features that have varied; the flow passes a dead feature through unchanged (no shift,
no scale, nothing in the log-determinant) and never lets it condition a coupling. A
caller that masks the same features out of its prior (learning/hgad.py does) then gets
a density over the live features alone: a feature that never varied (a constant, scaled
to 0) adds nothing to a score, however the flow's weights move.

``inverse`` undoes the flow (used to bring a latent prototype back to feature space for
attribution). Everything is float32 and built from a ``torch.Generator``, so a seed
fixes every weight.

>>> import torch
>>> flow = Flow(3, blocks=2, hidden=8, generator=torch.Generator().manual_seed(0))
>>> x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
>>> z, logdet = flow(x)
>>> bool(torch.equal(z, x)), bool((logdet == 0).all())  # a new flow is the identity
(True, True)
>>> with torch.no_grad():
...     for p in flow.parameters():
...         _ = p.add_(0.3)
>>> z, logdet = flow(x)
>>> bool(torch.allclose(flow.inverse(z), x, atol=1e-5))
True
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


class ActNorm(nn.Module):
    """Per-feature ``y = x * exp(log_scale) + shift``, starting at the identity."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(d))
        self.shift = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ls = self.log_scale * live
        return x * torch.exp(ls) + self.shift * live, ls.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        return (y - self.shift * live) * torch.exp(-self.log_scale * live)


class Coupling(nn.Module):
    """One affine coupling block; ``mask`` (1 = passes unchanged and conditions)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor, hidden: int, clamp: float, generator: torch.Generator) -> None:
        super().__init__()
        d = len(mask)
        self.register_buffer("mask", mask.float())
        self.clamp = clamp
        self.hidden = nn.Linear(d, hidden)
        self.out = nn.Linear(hidden, 2 * d)
        bound = 1.0 / d**0.5
        with torch.no_grad():
            self.hidden.weight.uniform_(-bound, bound, generator=generator)
            self.hidden.bias.uniform_(-bound, bound, generator=generator)
            self.out.weight.zero_()  # a new block is the identity
            self.out.bias.zero_()

    def _st(self, x: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-scale and shift of the free features that are live, zero elsewhere: the
        conditioning features pass unchanged, and dead ones neither move nor condition."""
        free = (1.0 - self.mask) * live
        s, t = self.out(torch.relu(self.hidden(x * self.mask * live))).chunk(2, dim=1)
        s = self.clamp * torch.tanh(s / self.clamp) * free
        return s, t * free

    def forward(self, x: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x, live)
        return x * torch.exp(s) + t, s.sum(dim=1)

    def inverse(self, y: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        s, t = self._st(y, live)  # the conditioning features are the same on both sides
        return (y - t) * torch.exp(-s)


class Flow(nn.Module):
    """``ActNorm`` then ``blocks`` affine couplings over ``d`` features."""

    def __init__(self, d: int, blocks: int = 4, hidden: int = 64, clamp: float = 2.0, *, generator: torch.Generator) -> None:
        super().__init__()
        if d < 1 or blocks < 1 or hidden < 1:
            raise ValueError("a flow needs at least one feature, one block and one hidden unit")
        self.d = d
        self.norm = ActNorm(d)
        masks = []
        for b in range(blocks):
            # Alternate halves of a random order, so every feature is transformed given
            # different others from block to block (the first half of the order conditions
            # in even blocks, the second half in odd ones).
            if b % 2 == 0:
                order = torch.randperm(d, generator=generator)
            m = torch.zeros(d)
            half = order[: d // 2] if b % 2 == 0 else order[d // 2 :]
            if d > 1:
                m[half] = 1.0
            masks.append(m)
        self.blocks = nn.ModuleList(Coupling(m, hidden, clamp, generator) for m in masks)
        self.register_buffer("live", torch.ones(d))

    live: torch.Tensor  # a buffer (register_buffer), declared for type checkers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent of each record and ``log |det dz/dx|`` (n,)."""
        z, logdet = self.norm(x, self.live)
        for block in self.blocks:
            z, ld = block(z, self.live)
            logdet = logdet + ld
        return z, logdet

    @torch.no_grad()
    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """The records whose latents are ``z``."""
        for block in reversed(self.blocks):
            z = cast(Coupling, block).inverse(z, self.live)
        return self.norm.inverse(z, self.live)
