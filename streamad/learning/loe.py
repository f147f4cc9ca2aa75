"""Latent Outlier Exposure (Qiu et al., ICML 2022): latent labels for a contaminated batch.

Each record of a training batch gets a weight on its "normal" loss ``L_n`` and one on
its "anomalous" loss ``L_a``. The E-step ranks the batch by ``L_n - L_a`` under the
current model and flags the top ``alpha`` share:

- ``blind``:  nobody is flagged, every record trains on ``L_n`` (the plain baseline);
- ``hard``:   flagged records train on ``L_a`` alone;
- ``soft``:   flagged records train on ``0.5 L_n + 0.5 L_a`` (the paper's safer default);
- ``refine``: flagged records are dropped from the batch.

Which records are flagged (``estep``):

- ``window``:  the top ``floor(alpha B)`` of each batch, as in the paper;
- ``running``: those above the running ``1 - alpha`` quantile of a decayed histogram of
  past ranking values, at most ``cap`` of the batch (ours). It flags nothing in a clean
  batch and more in a burst; until the histogram is ready it falls back to ``window``.

The trainer reads two more settings of the labeller: ``warmup``, the records it trains
blind before the first E-step, and ``rank``, what the E-step ranks by (``loss``: the
training losses ``L_n - L_a``; ``score``: the detection score of a density head).

>>> import numpy as np
>>> lab = LatentLabeler(alpha=0.1, mode="soft")
>>> r = np.r_[np.zeros(18), 5.0, 7.0]
>>> out = lab.label(r)
>>> out.flagged.nonzero()[0].tolist(), out.normal[18:].tolist(), out.anomalous[18:].tolist()
([18, 19], [0.5, 0.5], [0.5, 0.5])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamad.histogram import DecayedHistogram

MODES = ("blind", "hard", "soft", "refine")
ESTEPS = ("window", "running")
RANKS = ("loss", "score")


@dataclass
class LatentLabels:
    """Per-record loss weights from one E-step."""

    normal: np.ndarray  # weight on L_n
    anomalous: np.ndarray  # weight on L_a
    flagged: np.ndarray  # bool: LOE says anomalous

    @property
    def flag_rate(self) -> float:
        return float(self.flagged.mean()) if len(self.flagged) else 0.0


def top_share(ranking: np.ndarray, share: float) -> np.ndarray:
    """Mask of the ``floor(share * n)`` largest values (ties broken by position).

    >>> top_share(np.array([0.1, 3.0, 0.2, 2.0]), 0.5).tolist()
    [False, True, False, True]
    """
    n = len(ranking)
    k = int(np.floor(share * n + 1e-9))
    mask = np.zeros(n, dtype=bool)
    if k > 0:
        mask[np.argpartition(-ranking, k - 1)[:k]] = True
    return mask


class LatentLabeler:
    """The E-step, per batch; with ``estep="running"`` it keeps a decayed histogram."""

    def __init__(
        self,
        alpha: float = 0.1,
        mode: str = "soft",
        estep: str = "window",
        cap: float | None = None,
        decay: float = 0.99,
        bins: int = 64,
        warmup: int = 0,
        rank: str = "loss",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"LOE mode must be one of {', '.join(MODES)}, not {mode!r}")
        if estep not in ESTEPS:
            raise ValueError(f"LOE estep must be one of {', '.join(ESTEPS)}, not {estep!r}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError("LOE alpha must be in [0, 1)")
        if warmup < 0:
            raise ValueError("LOE warmup must be non-negative")
        if rank not in RANKS:
            raise ValueError(f"LOE rank must be 'loss' or 'score', not {rank!r}")
        self.warmup = warmup
        self.rank = rank
        self.alpha = alpha
        self.mode = mode
        self.estep = estep
        self.cap = min(1.0, 2.0 * alpha) if cap is None else cap
        self.hist = DecayedHistogram(bins=bins, decay=decay, min_init=256)

    def flags(self, ranking: np.ndarray) -> np.ndarray:
        """Which records of the batch are flagged, without changing state."""
        ranking = np.asarray(ranking, dtype=np.float64)
        if self.mode == "blind" or self.alpha == 0.0 or len(ranking) == 0:
            return np.zeros(len(ranking), dtype=bool)
        if self.estep == "window" or not self.hist.ready:
            return top_share(ranking, self.alpha)
        above = ranking > float(self.hist.quantile(1.0 - self.alpha))
        limit = int(np.floor(self.cap * len(ranking) + 1e-9))
        if above.sum() > limit:
            above = top_share(np.where(above, ranking, -np.inf), self.cap)
        return above

    def label(self, ranking: np.ndarray, update: bool = False) -> LatentLabels:
        """Loss weights for a batch ranked by ``L_n - L_a``; ``update`` feeds the running
        histogram (pass the ranking values of fresh records only, once)."""
        flagged = self.flags(ranking)
        normal = np.ones(len(flagged))
        anomalous = np.zeros(len(flagged))
        if self.mode == "hard":
            normal[flagged], anomalous[flagged] = 0.0, 1.0
        elif self.mode == "soft":
            normal[flagged], anomalous[flagged] = 0.5, 0.5
        elif self.mode == "refine":
            normal[flagged] = 0.0
        if update:
            self.observe(ranking)
        return LatentLabels(normal, anomalous, flagged)

    def observe(self, ranking: np.ndarray) -> None:
        if self.estep == "running" and self.mode != "blind":
            self.hist.update(ranking)

    def reset(self) -> None:
        self.hist.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"hist": self.hist.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.hist.load_state_dict(state["hist"])
