"""What a window trainer is built from, as values: the research API of the learning core.

A neural detector describes its trainer by one ``Components`` value: the LOE labeller,
importance weights, LAMP, the density head, the Gaussian and the feature histograms
beside the network, how the scores combine and calibrate, how windows become
optimiser steps, and the optimiser.
The shipped detectors build it from their few parameters (``LoeAE().components()``);
research code changes any part of it with ``dataclasses.replace`` and builds a detector
from the result (``NeuralDetector.with_components``, ``NeuralDetector.customized``).
``benchmarks/variants.py`` holds the ablation's variants this way.

Every value here is frozen, checks itself when made and imports without torch. The
stateful parts (labeller, head, Gaussian, histograms) are built from their specs when
the first records fix the width, once per trainer, so one ``Components`` value serves any number
of detectors.

>>> from dataclasses import replace
>>> c = Components(labeler=LabelerSpec(mode="soft"))
>>> replace(c, combiner=Combiner(mode="max")).combiner
Combiner(mode='max', gauss_weight=1.0, proj_weight=1.0)
>>> Schedule(train_share=1.5)
Traceback (most recent call last):
...
ValueError: train_share must be in (0, 1]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from streamad.learning.lamp import Lamp
from streamad.learning.loe import ESTEPS, MODES, RANKS, LatentLabeler
from streamad.learning.weights import ImportanceWeights

if TYPE_CHECKING:
    import torch

    from streamad.learning.adam import Adam
    from streamad.learning.density import DensityHead
    from streamad.learning.gaussian import GaussianComponent
    from streamad.learning.projections import ProjectionComponent

COMBINE = ("sum", "max", "gauss")


@dataclass(frozen=True)
class LabelerSpec:
    """LOE's E-step (learning/loe.py): ``mode`` and ``alpha`` as in the paper, ``estep``
    window or running (capped at ``cap`` of the batch), ``warmup`` records trained blind
    first, and what it ranks by (``rank``: the training losses, or a head's score)."""

    mode: Literal["hard", "soft", "refine", "blind"] = "hard"
    alpha: float = 0.1
    estep: Literal["window", "running"] = "window"
    cap: float | None = None
    warmup: int = 0
    rank: Literal["loss", "score"] = "loss"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"LOE mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.estep not in ESTEPS:
            raise ValueError(f"LOE estep must be one of {', '.join(ESTEPS)}, not {self.estep!r}")
        if self.rank not in RANKS:
            raise ValueError(f"LOE rank must be one of {', '.join(RANKS)}, not {self.rank!r}")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError("LOE alpha must be in [0, 1)")
        if self.warmup < 0:
            raise ValueError("LOE warmup must be non-negative")

    def build(self) -> LatentLabeler:
        return LatentLabeler(alpha=self.alpha, mode=self.mode, estep=self.estep, cap=self.cap, warmup=self.warmup, rank=self.rank)


@dataclass(frozen=True)
class HeadSpec:
    """The density head on an autoencoder's residuals (learning/density.py)."""

    nu: float = 1.0
    normalize: bool = True
    floor: float = 0.3
    latent_weight: float = 0.0
    decay: float = 0.9
    min_weight: float = 32.0

    def __post_init__(self) -> None:
        if self.nu < 0:
            raise ValueError("head nu must be non-negative (0: Gaussian noise)")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError("head decay must be in (0, 1]")
        if self.floor <= 0:
            raise ValueError("head floor must be positive")
        if self.latent_weight < 0:
            raise ValueError("head latent_weight must be non-negative")

    def build(self, n_features: int, n_latent: int) -> DensityHead:
        from streamad.learning.density import DensityHead

        return DensityHead(
            n_features, n_latent, nu=self.nu, normalize=self.normalize, floor=self.floor,
            latent_weight=self.latent_weight, decay=self.decay, min_weight=self.min_weight,
        )  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """The score histograms (``log1p`` of LOE-normal scores, ``bins``, ``decay`` per step)
    and how scores are read against them: a robust z-score with its spread floored at
    ``floor`` (or by the ``tail`` quantile, learning/gaussian.py ``Calibrator``).

    ``network_after``: without a Gaussian, report the network's score against its
    histogram once it holds that many scores (None: the raw score). With a Gaussian both
    components are always calibrated: the combiner adds them.
    """

    bins: int = 48
    decay: float = 0.99
    floor: float = 0.05
    tail: float | None = None
    network_after: int | None = 64

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ValueError("calibration bins must be at least 2")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError("calibration decay must be in (0, 1]")
        if self.tail is not None and not 0.5 < self.tail < 1.0:
            raise ValueError("calibration tail must be in (0.5, 1)")
        if self.network_after is not None and self.network_after < 0:
            raise ValueError("calibration network_after must be non-negative")


@dataclass(frozen=True)
class GaussianSpec:
    """The online Gaussian of LOE-normal records beside the network (learning/gaussian.py):
    forgetting with ``half_life`` records, shrunk by ``shrink``, ``prior`` pseudo-records of
    the identity; ``learn`` "loe" (LOE-normal records) or "all"."""

    half_life: float | None = 20_000.0
    shrink: float = 0.05
    prior: float = 64.0
    learn: Literal["loe", "all"] = "loe"

    def __post_init__(self) -> None:
        if self.half_life is not None and self.half_life <= 0:
            raise ValueError("gaussian half_life must be positive (or None: never forget)")
        if not 0.0 < self.shrink <= 1.0:
            raise ValueError("gaussian shrink must be in (0, 1]")
        if self.learn not in ("loe", "all"):
            raise ValueError(f"gaussian learn must be 'loe' or 'all', not {self.learn!r}")

    def build(self, n_features: int, calibration: Calibration) -> GaussianComponent:
        from streamad.learning.gaussian import GaussianComponent

        c = calibration
        return GaussianComponent(
            n_features, half_life=self.half_life, shrink=self.shrink, prior=self.prior, learn=self.learn,
            bins=c.bins, decay=c.decay, floor=c.floor, tail=c.tail,
        )  # fmt: skip


@dataclass(frozen=True)
class ProjectionSpec:
    """Histograms of the LOE-normal records beside the network (learning/projections.py):
    one per feature (``kind="axes"``, HBOS) or per random sparse direction
    (``kind="sparse"``, LODA, ``n_projections`` of them); bins ``width`` wide in the
    scaled records' units, at most ``bins`` per direction, forgetting with ``half_life``
    records."""

    kind: Literal["axes", "sparse"] = "axes"
    n_projections: int = 32
    width: float = 0.25
    bins: int = 128
    half_life: float | None = 20_000.0

    def __post_init__(self) -> None:
        if self.kind not in ("axes", "sparse"):
            raise ValueError(f"projections kind must be 'axes' or 'sparse', not {self.kind!r}")
        if self.n_projections < 1:
            raise ValueError("projections n_projections must be at least 1")
        if self.width <= 0:
            raise ValueError("projections width must be positive")
        if self.bins < 2:
            raise ValueError("projections bins must be at least 2")
        if self.half_life is not None and self.half_life <= 0:
            raise ValueError("projections half_life must be positive (or None: never forget)")

    def build(self, n_features: int, calibration: Calibration, seed: int = 0) -> ProjectionComponent:
        from streamad.learning.gaussian import Calibrator
        from streamad.learning.projections import ProjectionComponent, ProjectionHistograms

        c = calibration
        model = ProjectionHistograms(n_features, kind=self.kind, n_projections=self.n_projections, width=self.width, bins=self.bins, half_life=self.half_life, seed=seed)
        return ProjectionComponent(model, Calibrator(bins=c.bins, decay=c.decay, floor=c.floor, tail=c.tail))


@dataclass(frozen=True)
class Combiner:
    """How the calibrated scores of the network, the Gaussian and the projection
    histograms make the detection score: the network's and the Gaussian's ``sum``, their
    ``max``, or the Gaussian's alone (``gauss``: the network trains but does not score);
    the Gaussian's is weighted by ``gauss_weight``. The projection histograms' score,
    weighted by ``proj_weight``, is added in every mode."""

    mode: Literal["sum", "max", "gauss"] = "sum"
    gauss_weight: float = 1.0
    proj_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in COMBINE:
            raise ValueError(f"combiner mode must be one of {', '.join(COMBINE)}, not {self.mode!r}")
        if self.gauss_weight < 0 or self.proj_weight < 0:
            raise ValueError("combiner gauss_weight and proj_weight must be non-negative")

    @property
    def uses_network(self) -> bool:
        return self.mode != "gauss"

    def __call__(self, z_net: np.ndarray, z_gauss: np.ndarray, z_proj: np.ndarray | None = None) -> np.ndarray:
        if self.mode == "gauss":
            out = z_gauss
        else:
            out = np.maximum(z_net, z_gauss) if self.mode == "max" else z_net + z_gauss
        return out if z_proj is None else out + z_proj

    def one(self, z_net: float, z_gauss: float) -> float:
        """``self`` of one record's scores, without projections (the one-record path)."""
        if self.mode == "gauss":
            return z_gauss
        return max(z_net, z_gauss) if self.mode == "max" else z_net + z_gauss


@dataclass(frozen=True)
class Schedule:
    """How windows become optimiser steps (learning/trainer.py): ``batch_size`` records
    per step; while the stream is young (``warmup_records``) ``warmup_epochs`` passes plus
    ``warmup_boost`` steps per doubling of the data, topped up from a ``replay`` memory of
    LOE-normal records; after it, ``replay_share`` of each batch from that memory and
    training on ``train_share`` of the records. With ``settled_share`` below
    ``train_share``, the share adapts: halved (down to ``settled_share``) each time the
    loss has stopped falling for ``settle_steps`` steps, back to ``train_share`` when it
    rises or drift reopens the warm-up."""

    batch_size: int = 256
    warmup_records: int = 1024
    warmup_epochs: float = 8.0
    warmup_boost: float = 16.0
    replay: int = 1024
    replay_share: float = 0.0
    train_share: float = 1.0
    settled_share: float | None = None  # None: the share stays at train_share
    settle_steps: int = 16

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.warmup_records < 0 or self.replay < 0:
            raise ValueError("warmup_records and replay must be non-negative")
        if self.warmup_epochs < 0 or self.warmup_boost < 0:
            raise ValueError("warmup_epochs and warmup_boost must be non-negative")
        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError("replay_share must be in [0, 1)")
        if not 0.0 < self.train_share <= 1.0:
            raise ValueError("train_share must be in (0, 1]")
        if self.settled_share is not None and not 0.0 < self.settled_share <= self.train_share:
            raise ValueError("settled_share must be in (0, train_share]")
        if self.settle_steps < 1:
            raise ValueError("settle_steps must be at least 1")


@dataclass(frozen=True)
class Optimizer:
    """Adam (streamad's own, learning/adam.py: torch's update without torch.optim's
    import of its compiler) at learning rate ``lr``."""

    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("optimizer lr must be positive and weight_decay non-negative")

    def build(self, params: Iterable[torch.nn.Parameter]) -> Adam:
        from streamad.learning.adam import Adam

        return Adam(params, lr=self.lr, weight_decay=self.weight_decay)


@dataclass(frozen=True)
class Components:
    """Everything but the backbone's architecture that a neural detector's trainer is
    built from. ``backbone`` holds extra keyword arguments of the backbone (for example
    ``{"activation": "relu"}`` or ``{"explicit_backward": False}`` for autograd);
    ``input_clip`` bounds the records (after the scaler) before the network sees them."""

    labeler: LabelerSpec = LabelerSpec()
    weights: ImportanceWeights | None = None
    lamp: Lamp = Lamp()
    head: HeadSpec | None = None
    gaussian: GaussianSpec | None = None
    projections: ProjectionSpec | None = None
    combiner: Combiner = Combiner()
    calibration: Calibration = Calibration()
    schedule: Schedule = Schedule()
    optimizer: Optimizer = Optimizer()
    backbone: Mapping[str, Any] = field(default_factory=dict)
    input_clip: float = 1e3

    def __post_init__(self) -> None:
        if self.input_clip <= 0:
            raise ValueError("input_clip must be positive")
