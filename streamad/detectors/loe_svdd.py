"""Deep SVDD trained with LOE (``L_a = 1 / L_n``, as in the LOE paper)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from streamad.detectors.neural import LEGACY_PARAMS, NeuralDetector

if TYPE_CHECKING:
    import torch

    from streamad.learning.backbones import Backbone


class LoeSVDD(NeuralDetector):
    """Deep SVDD (squared distance to a centre fixed by the first batch) trained with
    LOE; scores calibrated against the running histogram of LOE-normal scores.

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
        Width of the hidden layer (default ``min(64, max(16, 2 n_features))``).
    rep : int, default 16
        Dimension of the space the centre lives in.
    weights : bool, default False
        Importance weights toward a Gaussian score distribution.
    lamp : {"none", "scale", "power", "exp"}, default "none"
        LAMP loss amplification of LOE-normal records.
    train_share : float in (0, 1], default 1.0
        After the warm-up, train on this share of the records (every record is still scored).
    settled_share : float in (0, 1], optional
        Once the loss has stopped falling, halve the share of records trained on, step
        by step down to this one; back to ``train_share`` when the loss rises or drift
        reopens the warm-up. None (the default) keeps ``train_share``.
    score_warmup : int, default 256
        Records learned before the scores count for the threshold (``LearnReport.warmup``).
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Where the network runs.
    seed : int, default 0
        Fixes the network's initial weights and the replay sampling.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = LoeSVDD(seed=0, warmup_records=256)
    >>> for _ in range(8):
    ...     _ = det.learn(rng.normal(size=(64, 4)))
    >>> det.score(rng.normal(size=(3, 4))).shape
    (3,)
    """

    name = "loe-svdd"
    version = "1"
    legacy_params: ClassVar[dict[str, Any]] = {**LEGACY_PARAMS, "activation": "leaky_relu"}

    hidden: int | None
    rep: int

    def __init__(
        self,
        *,
        lr: Annotated[float, Field(gt=0)] = 3e-3,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        warmup_records: Annotated[int, Field(ge=0)] = 1024,
        loe: Literal["hard", "soft", "refine", "blind"] = "hard",
        alpha: Annotated[float, Field(ge=0, lt=1)] = 0.1,
        hidden: Annotated[int, Field(ge=1)] | None = None,
        rep: Annotated[int, Field(ge=1)] = 16,
        weights: bool = False,
        lamp: Literal["none", "scale", "power", "exp"] = "none",
        train_share: Annotated[float, Field(gt=0, le=1)] = 1.0,
        settled_share: Annotated[float, Field(gt=0, le=1)] | None = None,
        score_warmup: Annotated[int, Field(ge=0)] = 256,
        device: Literal["cpu", "cuda", "auto"] = "cpu",
        seed: int = 0,
    ) -> None:
        self._set_params(LoeSVDD, locals())

    def make_backbone(self, n_features: int, generator: torch.Generator, **options: Any) -> Backbone:
        from streamad.learning.backbones import DeepSVDD

        return DeepSVDD(n_features, hidden=self.hidden, rep=self.rep, generator=generator, **options)
