"""Deep SVDD trained with LOE (``L_a = 1 / L_n``, as in the LOE paper).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = LoeSVDD(seed=0, warmup_records=256, warmup_boost=2.0)
>>> for _ in range(8):
...     _ = det.learn(rng.normal(size=(64, 4)))
>>> det.score(rng.normal(size=(3, 4))).shape
(3,)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from streamad.detectors.neural import NeuralDetector
from streamad.learning.backbones import Backbone, DeepSVDD


class LoeSVDD(NeuralDetector):
    name = "loe-svdd"
    version = "1"
    backbone_defaults: ClassVar[dict[str, Any]] = {"hidden": None, "rep": 16, "activation": "leaky_relu"}

    def make_backbone(self, n_features: int, generator: torch.Generator) -> Backbone:
        p = self.params
        return DeepSVDD(n_features, hidden=p["hidden"], rep=int(p["rep"]), activation=p["activation"], generator=generator)
