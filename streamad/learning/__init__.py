"""The learning core: LOE latent labels, importance weights, LAMP, torch backbones and
the window trainer that composes them (see docs in each module).

Names are imported on first use: ``streamad.learning.components`` and the other
torch-free modules load without torch, so settings can be validated without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BACKBONES": "backbones",
    "AutoEncoder": "backbones",
    "Backbone": "backbones",
    "DeepSVDD": "backbones",
    "NeuTraL": "backbones",
    "ImportanceWeights": "weights",
    "Lamp": "lamp",
    "LatentLabeler": "loe",
    "LatentLabels": "loe",
    "WindowTrainer": "trainer",
    "Components": "components",
}


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'streamad.learning' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"streamad.learning.{module}"), name)


__all__ = sorted(_WHERE)
