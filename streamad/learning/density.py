"""A density reading of an autoencoder's outputs: the detection score as a negative
log-likelihood of the residuals instead of their mean square (ours).

The plain score ``mean_j r_j^2`` has two weaknesses on tabular streams:

- every feature counts alike, so the features that are always hard to reconstruct
  dominate it;
- one wild feature outweighs a record that is off in many features at once. Early in a
  stream the scaler has seen a handful of records, and a feature that happened to be
  nearly constant in them scales any new value to its clip: under a squared error,
  such normal records outrank every anomaly of the stream.

A Student-t noise model per feature answers both: each feature's residual is measured
against that feature's running residual variance ``v_j``, and contributes
``log(1 + r_j^2 / (nu v_j))``, which grows with the size of the residual but only
logarithmically for a wild one. With ``nu = 0`` the noise is Gaussian and the
contribution is ``r_j^2 / v_j``. Optionally (``latent_weight > 0``), the position of
the record on the learned manifold adds the same transform of the Mahalanobis distance
of its latent code ``z`` from the running latent mean (the second term of a
probabilistic PCA likelihood)::

    score = ( sum_j rho(r_j^2 / v_j) + latent_weight * rho((z - mu)' P (z - mu)) ) / d
    rho(u) = log(1 + u / nu)   (nu > 0)   or   u   (nu = 0)

- ``v_j``: the running mean of ``r_j^2`` over LOE-normal records (``normalize``; 1
  otherwise), floored at ``floor`` so a feature reconstructed almost perfectly cannot
  make every small residual an alarm;
- ``mu``, ``P``: running mean and precision of the latent codes (ridge-regularised).

Statistics are exponentially weighted, ``decay`` per update (the trainer updates once
per optimiser step, from the LOE-normal records of the batch, so they follow the
network as it learns). Until ``min_weight`` records have been folded in, ``v_j = 1``
and the latent term is off: an untrained network's residual variance is about 1 per
scaled feature, so the statistics then take over smoothly. Only the detection score
changes; the training loss is still the mean squared error.

>>> import torch
>>> head = DensityHead(2, 1, nu=0.0, min_weight=4)
>>> r = torch.tensor([[0.1, 1.0], [-0.1, -1.0], [0.1, 1.0], [-0.1, -1.0]])
>>> head.update(r, torch.zeros(4, 1))
>>> s = head.score(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1))
>>> bool(s[0] > 3 * s[1])  # the same error counts more where errors are usually small
True
>>> t = DensityHead(3, 1, nu=1.0).score(torch.tensor([[10.0, 0.0, 0.0], [2.0, 2.0, 2.0]]), torch.zeros(2, 1))
>>> bool(t[1] > t[0])  # off in every feature beats wild in one
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from streamad.learning.gaussian import symmetric_inverse


class DensityHead:
    """Running residual variances and latent Gaussian; a robust score from them."""

    def __init__(
        self,
        n_features: int,
        n_latent: int,
        nu: float = 1.0,
        normalize: bool = True,
        floor: float = 0.3,
        latent_weight: float = 0.0,
        decay: float = 0.9,
        min_weight: float = 32.0,
        ridge: float = 1e-3,
    ) -> None:
        if nu < 0:
            raise ValueError("score nu must be non-negative (0: Gaussian noise)")
        if not 0.0 < decay <= 1.0:
            raise ValueError("score decay must be in (0, 1]")
        if floor <= 0 or ridge <= 0:
            raise ValueError("score floor and ridge must be positive")
        if latent_weight < 0:
            raise ValueError("score latent weight must be non-negative")
        self.d = n_features
        self.k = n_latent
        self.nu = nu
        self.normalize = normalize
        self.floor = floor
        self.latent_weight = latent_weight
        self.decay = decay
        self.min_weight = min_weight
        self.ridge = ridge
        self.reset()

    def reset(self) -> None:
        self.weight = 0.0
        self.r2 = np.ones(self.d)
        self.z1 = np.zeros(self.k)
        self.z2 = np.zeros((self.k, self.k))
        self._derive()

    @property
    def ready(self) -> bool:
        return self.weight >= self.min_weight

    def update(self, r: torch.Tensor, z: torch.Tensor, keep: np.ndarray | None = None) -> None:
        """Fold in the residuals ``r`` (n x d) and latent codes ``z`` (n x k) of the
        records marked in ``keep`` (the LOE-normal ones; all when None)."""
        if keep is None:
            n = len(r)
            w = torch.full((1, n), 1.0 / max(n, 1), dtype=r.dtype, device=r.device)
        else:
            n = int(keep.sum())
            w = torch.as_tensor(keep / max(n, 1), dtype=r.dtype, device=r.device).unsqueeze(0)
        if n == 0:
            return
        self.weight = self.decay * self.weight + n
        a = n / self.weight
        # Weighted means in torch, converting only the small results: once per step.
        self.r2 += a * ((w @ (r * r))[0].double().cpu().numpy() - self.r2)
        if self.latent_weight > 0:
            z64 = z.detach().double().cpu().numpy()
            wk = w[0].double().cpu().numpy()
            self.z1 += a * (wk @ z64 - self.z1)
            self.z2 += a * ((z64 * wk[:, None]).T @ z64 - self.z2)
        self._derive()

    def _derive(self) -> None:
        # What score() reads, derived once per update so that score() only computes.
        ready = self.ready
        var = np.maximum(self.r2, self.floor) if self.normalize and ready else np.ones(self.d)
        self._inv_var64 = 1.0 / var
        self._inv_var = torch.from_numpy(self._inv_var64).float()
        self._latent = ready and self.latent_weight > 0 and self.k > 0
        if self._latent:
            cov = self.z2 - np.outer(self.z1, self.z1)
            cov = (cov + cov.T) / 2 + self.ridge * np.eye(self.k)
            self._mu64 = self.z1.copy()
            self._prec64 = symmetric_inverse(cov)
            self._mu = torch.as_tensor(self._mu64, dtype=torch.float32)
            self._prec = torch.as_tensor(self._prec64, dtype=torch.float32)

    def _rho(self, u: torch.Tensor) -> torch.Tensor:
        return torch.log1p(u / self.nu) if self.nu > 0 else u

    def score(self, r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Per-record score (n,), float32; no state changes."""
        u = (r * r) * self._inv_var.to(r.device)
        s = self._rho(u).sum(dim=1)
        if self._latent:
            dz = z - self._mu.to(z.device)
            s = s + self.latent_weight * self._rho(((dz @ self._prec.to(z.device)) * dz).sum(dim=1))
        return s / self.d

    def score_numpy(self, r: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``score`` in float64 numpy, from a numpy copy of the network's outputs."""
        u = (r * r) * self._inv_var64
        s = (np.log1p(u / self.nu) if self.nu > 0 else u).sum(axis=1)
        if self._latent:
            dz = z - self._mu64
            m = ((dz @ self._prec64) * dz).sum(axis=1)
            s = s + self.latent_weight * (np.log1p(m / self.nu) if self.nu > 0 else m)
        return s / self.d

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "r2": self.r2.copy(), "z1": self.z1.copy(), "z2": self.z2.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.weight = float(state["weight"])
        self.r2 = np.asarray(state["r2"], dtype=np.float64).reshape(self.d).copy()
        self.z1 = np.asarray(state["z1"], dtype=np.float64).reshape(self.k).copy()
        self.z2 = np.asarray(state["z2"], dtype=np.float64).reshape(self.k, self.k).copy()
        self._derive()
