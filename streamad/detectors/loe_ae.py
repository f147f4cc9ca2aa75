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
Gaussian's twice). Importance weights, LAMP and histogram calibration of the network
alone are available and off by default (benchmarks/results/ablation.md).

Windows: the detector serves any window size, but a windowed detector cannot rank the
records of its first window, so small first windows matter on short streams; windows
that start at 8 records and double up to 256 give both the quality of small windows
and the throughput of large ones.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = LoeAE(seed=0, warmup_records=256)
>>> for _ in range(8):
...     _ = det.learn(rng.normal(size=(64, 4)))
>>> normal, odd = det.score(np.array([[0.0, 0.0, 0.0, 0.0], [6.0, -6.0, 6.0, 0.0]]))
>>> bool(odd > normal)
True
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from streamad.detectors.neural import NeuralDetector
from streamad.learning.backbones import AutoEncoder, Backbone


class LoeAE(NeuralDetector):
    name = "loe-ae"
    version = "3"  # 2: the residual density score head; 3: the online Gaussian beside it
    backbone_defaults: ClassVar[dict[str, Any]] = {
        "hidden": None,
        "latent": None,
        "activation": "tanh",
        "anomalous_loss": "complement",
        # The density head scores the residuals (learning/density.py); its Student-t
        # score keeps one scale from the first window on, where the calibration
        # against the running histogram mixed raw early scores with calibrated late ones.
        "score_head": True,
        "calibrate": False,
        # The online Gaussian of LOE-normal records (learning/gaussian.py) sees broken
        # correlations between sensors and extrapolates along them; its calibrated score
        # is added, twice, to the head's (benchmarks/results/sensor_streams.md).
        "gauss": True,
        "gauss_weight": 2.0,
        # Scores count for the threshold once the training warm-up has seen 1024
        # records: a sensor stream's first minutes visit operating points the model has
        # not seen yet, and a threshold fitted to them stays too high (or alarms on them).
        "score_warmup": 1024,
    }

    def make_backbone(self, n_features: int, generator: torch.Generator) -> Backbone:
        p = self.params
        return AutoEncoder(
            n_features,
            hidden=p["hidden"],
            latent=p["latent"],
            activation=p["activation"],
            anomalous_loss=p["anomalous_loss"],
            generator=generator,
        )
