"""NeuTraL-AD (learned transformations, contrastive loss) trained with LOE.

The backbone of the LOE paper's tabular experiments: ``L_n`` and ``L_a`` are both
genuine losses, so LOE-hard and LOE-soft apply as published. The network is bias-free
and scores a record's direction only (see ``NeuTraL``), so this detector asks for the
min-max scaler: centred inputs would hide how far out a record lies.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = LoeNTL(seed=0, warmup_records=256, warmup_boost=2.0, n_transforms=4)
>>> for _ in range(8):
...     _ = det.learn(rng.normal(size=(64, 4)))
>>> det.score(rng.normal(size=(3, 4))).shape
(3,)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from streamad.detectors.neural import NeuralDetector
from streamad.learning.backbones import Backbone, NeuTraL


class LoeNTL(NeuralDetector):
    name = "loe-ntl"
    version = "2"
    preferred_scaler = "minmax"
    backbone_defaults: ClassVar[dict[str, Any]] = {
        "n_transforms": 11,
        "hidden": None,
        "rep": 24,
        "tau": 0.1,
        "transform": "residual",
        "enc_layers": 5,
    }

    def make_backbone(self, n_features: int, generator: torch.Generator) -> Backbone:
        p = self.params
        if int(p["n_transforms"]) < 2:
            raise ValueError("n_transforms must be at least 2")
        return NeuTraL(
            n_features, n_transforms=int(p["n_transforms"]), hidden=p["hidden"], rep=int(p["rep"]), tau=float(p["tau"]),
            transform=str(p["transform"]), enc_layers=int(p["enc_layers"]), generator=generator,
        )
