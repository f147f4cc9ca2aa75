"""The Detector contract.

A detector scores a whole window with the state it had before the window, then learns
from it. ``score`` never changes state, so a record is always judged by a model that
has not yet seen it. ``score_one``/``learn_one`` give the river-style per-record API
on top of the window API.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np


@dataclass
class LearnReport:
    """What one ``learn`` call did; metrics and the CLI read it."""

    n_learned: int
    loss: float | None = None
    loe_flag_rate: float | None = None  # share of the window LOE labelled anomalous
    ess: float | None = None  # effective sample size of the importance weights, as a share of the window
    warmup: bool = False
    extra: dict[str, float] = field(default_factory=dict)


class Detector(abc.ABC):
    """Base class for every detector.

    Subclasses implement ``score``, ``learn``, ``state_dict`` and ``load_state_dict``.
    Scores are floats where higher means more anomalous; their scale is the
    detector's own (thresholds are learned on top of them).
    """

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "1"
    #: The scaler the pipeline puts in front of this detector unless told otherwise.
    preferred_scaler: ClassVar[str] = "standard"

    _feature_order: tuple[str, ...] | None = None

    @abc.abstractmethod
    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of the records of ``X`` (n × d), without changing any state."""

    @abc.abstractmethod
    def learn(self, X: np.ndarray) -> LearnReport:
        """Learn from the records of ``X`` (n × d)."""

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        """Per-feature, non-negative contributions to each record's score (n × d), if the
        detector can tell; ``None`` lets the pipeline fall back to scaled deviations."""
        return None

    def on_drift(self, kind: str) -> None:
        """Called when a drift detector fires; detectors that keep warm-up state may reopen it."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this detector is now."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state produced by ``state_dict``."""

    # -- river-style, one record at a time ---------------------------------------------

    def score_one(self, x: Mapping[str, float] | Sequence[float] | np.ndarray) -> float:
        return float(self.score(self._row(x))[0])

    def learn_one(self, x: Mapping[str, float] | Sequence[float] | np.ndarray) -> None:
        self.learn(self._row(x))

    def _row(self, x: Mapping[str, float] | Sequence[float] | np.ndarray) -> np.ndarray:
        if isinstance(x, Mapping):
            if self._feature_order is None:
                self._feature_order = tuple(x)
            try:
                return np.array([[float(x[k]) for k in self._feature_order]])
            except KeyError as e:
                raise KeyError(f"feature {e.args[0]!r} missing; this detector was first given {list(self._feature_order)}") from None
        return np.asarray(x, dtype=np.float64).reshape(1, -1)
