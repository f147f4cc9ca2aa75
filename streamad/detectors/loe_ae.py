"""An autoencoder trained with LOE, scored with a density head and an online Gaussian.

The network trains on the mean squared reconstruction error of the scaled record; its
per-feature errors are the attribution. Before any learning the decoder outputs zero,
so the first errors are the squared distance from the running mean, and LOE (hard,
top 10% of each batch, ranked by the training losses) can work from the first window.
The detection score is the density head's reading of the residuals
(learning/density.py): each feature's residual against its running residual variance,
under Student-t noise, so that neither an always-hard feature nor one wild value of a
feature the young scaler saw as constant outweighs a record that is off everywhere.
Beside the network, an online Gaussian of the records LOE calls normal
(learning/gaussian.py) scores the squared Mahalanobis distance: it sees a sensor that
breaks its correlation with the others and extrapolates along learned correlations to
operating points the young network has not met. Each component's score is calibrated
against the running histogram of its own LOE-normal scores and the two are added (the
Gaussian's twice). Importance weights and LAMP are available and off by default
(benchmarks/results/ablation.md).

Windows: the detector serves any window size, but a windowed detector cannot rank the
records of its first window, so small first windows matter on short streams; windows
that start at 8 records and double up to 256 give both the quality of small windows
and the throughput of large ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from streamad.detectors.neural import LEGACY_PARAMS, NeuralDetector
from streamad.learning.components import Calibration, Combiner, Components, GaussianSpec, HeadSpec, ProjectionSpec

if TYPE_CHECKING:
    import torch

    from streamad.learning.backbones import Backbone


class LoeAE(NeuralDetector):
    """The default detector: an autoencoder trained with LOE, a Student-t density head on
    its residuals, and an online Gaussian of the records LOE calls normal beside it.

    Parameters
    ----------
    lr : float, default 3e-3
        Adam's learning rate.
    batch_size : int, default 256
        Records per optimiser step, and per mini-batch of ``learn_one``.
    warmup_records : int, default 1024
        Records during which the network trains harder (several passes over little
        data, topped up from a replay memory).
    loe : {"hard", "soft", "refine", "blind"}, default "hard"
        What LOE does with the records it flags: train them on the anomalous loss
        (hard), half and half (soft), drop them (refine), or nothing (blind: no LOE).
    alpha : float in [0, 1), default 0.1
        Share of each batch LOE flags as anomalous: the contamination it assumes.
    hidden : int, optional
        Width of the hidden layers (default 32).
    latent : int, optional
        Width of the code (default ``max(2, min(4, n_features // 2))``).
    weights : bool, default False
        Importance weights toward a Gaussian score distribution (no gain on ODDS).
    lamp : {"none", "scale", "power", "exp"}, default "none"
        LAMP loss amplification of LOE-normal records (no gain on ODDS).
    gauss : bool, default True
        Keep the online Gaussian beside the network and add its calibrated score
        (twice) to the network's; False scores with the density head alone.
    histograms : bool, default True
        Keep a histogram of each feature's LOE-normal values beside the network
        (learning/projections.py, HBOS) and add its calibrated score; every component
        is then read against the 99% tail of its own normal scores. It sees values
        that are rare in the data though ordinary for the network and the Gaussian.
        On tables it is worth it (ODDS, behind the scaler's ``constant_share``: mean
        ROC-AUC 0.832 -> 0.840, AP 0.495 -> 0.508; benchmarks/results/odds.md). On
        sensor readings replayed without their event times, where this detector is the
        default too, it costs: the demo's AP 0.51 -> 0.30 (a periodic signal's values
        are not equally common, and some normal ones rank among the spikes). Such a
        stream is better served by the temporal stage (``features.temporal: on``), or
        ``histograms=False`` (benchmarks/results/ANALYSIS.md, sixteenth round).
    tail : float in (0.5, 1) or None, default None
        How each component's score is read against the running histogram of its own
        LOE-normal scores (learning/gaussian.py ``Calibrator``): None, as a robust
        z-score (median and MAD); a quantile such as 0.99, against that tail, so that a
        score means the same surprise however well the network has learned the bulk.
        Read against the tail, a clean periodic stream alarms less in its first 10,000
        records (0.29% -> 0.16% at risk 0.001; benchmarks/results/univariate.md), but
        over 60,000 the rates meet, and on sensor streams without timestamps it alarms
        on fewer spikes (the demo without timestamps, seeds 101-130: 679 -> 630 of
        750, at 0.4 times the risk), so the default stays the robust z-score
        (ANALYSIS.md). With ``histograms`` the reading is the 99% tail whatever this is.
    train_share : float in (0, 1], default 1.0
        After the warm-up, train on this share of the records (every record is still
        scored): 0.25 streams about 1.5 times faster with the same ODDS figures.
    settled_share : float in (0, 1], default 0.125
        Once the loss has stopped falling, halve the share of records trained on, step
        by step down to this one; back to ``train_share`` when the loss rises or drift
        reopens the warm-up (every record is still scored). None keeps ``train_share``.
        ODDS figures unchanged, http.mat 1.7 times faster
        (benchmarks/results/replay_throughput.md).
    score_warmup : int, default 1024
        Records learned before the scores count for the threshold (``LearnReport.warmup``).
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Where the network runs.
    seed : int, default 0
        Fixes the network's initial weights and the replay sampling.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = LoeAE(seed=0, warmup_records=256)
    >>> for _ in range(8):
    ...     _ = det.learn(rng.normal(size=(64, 4)))
    >>> normal, odd = det.score(np.array([[0.0, 0.0, 0.0, 0.0], [6.0, -6.0, 6.0, 0.0]]))
    >>> bool(odd > normal)
    True

    One record at a time, learned in mini-batches:

    >>> det = LoeAE()
    >>> for x in rng.normal(size=(300, 3)):
    ...     s = det.score_one({"a": x[0], "b": x[1], "c": x[2]})
    ...     det.learn_one({"a": x[0], "b": x[1], "c": x[2]})
    >>> det.trainer.n_seen, len(det.buffered)  # batches of 8, 16, 32, 64, 128 learned
    (248, 52)
    """

    name = "loe-ae"
    # 2: the residual density score head; 3: the online Gaussian beside it. The feature
    # histograms keep version 3: their states say so in their parameters.
    version = "3"
    # States written before ``tail`` read their calibration as robust z-scores, those
    # before ``histograms`` had none: one restored into a detector configured otherwise
    # is refused by name.
    implied_params: ClassVar[dict[str, Any]] = {"tail": None, "histograms": False}
    legacy_params: ClassVar[dict[str, Any]] = {
        **LEGACY_PARAMS, "activation": "tanh", "anomalous_loss": "complement", "score_head": True, "calibrate": False, "gauss_weight": 2.0,
    }  # fmt: skip

    hidden: int | None
    latent: int | None
    gauss: bool
    histograms: bool
    tail: float | None

    def __init__(
        self,
        *,
        lr: Annotated[float, Field(gt=0)] = 3e-3,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        warmup_records: Annotated[int, Field(ge=0)] = 1024,
        loe: Literal["hard", "soft", "refine", "blind"] = "hard",
        alpha: Annotated[float, Field(ge=0, lt=1)] = 0.1,
        hidden: Annotated[int, Field(ge=1)] | None = None,
        latent: Annotated[int, Field(ge=1)] | None = None,
        weights: bool = False,
        lamp: Literal["none", "scale", "power", "exp"] = "none",
        gauss: bool = True,
        histograms: bool = True,
        tail: Annotated[float, Field(gt=0.5, lt=1)] | None = None,
        train_share: Annotated[float, Field(gt=0, le=1)] = 1.0,
        settled_share: Annotated[float, Field(gt=0, le=1)] | None = 0.125,
        score_warmup: Annotated[int, Field(ge=0)] = 1024,
        device: Literal["cpu", "cuda", "auto"] = "cpu",
        seed: int = 0,
    ) -> None:
        self._set_params(LoeAE, locals())

    def default_components(self) -> Components:
        return replace(
            super().default_components(),
            # The density head scores the residuals (learning/density.py): its Student-t
            # score keeps one scale from the first window on, where the calibration
            # against the running histogram mixed raw early scores with calibrated late ones.
            head=HeadSpec(),
            # With the histograms (or ``tail``), each component's score is read against
            # the 99% (``tail``) quantile of its own LOE-normal scores: a surprise,
            # -log P(S > s), so components with light and heavy tails weigh alike at the
            # same false-alarm rate.
            calibration=Calibration(network_after=None, tail=0.99 if self.histograms else self.tail),
            # The online Gaussian of LOE-normal records sees broken correlations between
            # sensors and extrapolates along them; its calibrated score is added, twice,
            # to the head's (benchmarks/results/sensor_streams.md).
            gaussian=GaussianSpec() if self.gauss else None,
            # Per-feature histograms (HBOS) of the LOE-normal records: a value rare in
            # the data, in a skewed feature's empty tail or between the modes of a
            # multi-modal one, reconstructs well and is close in Mahalanobis distance.
            projections=ProjectionSpec(kind="axes") if self.histograms else None,
            combiner=Combiner(mode="sum", gauss_weight=2.0, proj_weight=1.0),
        )

    def make_backbone(self, n_features: int, generator: torch.Generator, **options: Any) -> Backbone:
        from streamad.learning.backbones import AutoEncoder

        return AutoEncoder(n_features, hidden=self.hidden, latent=self.latent, generator=generator, **options)
