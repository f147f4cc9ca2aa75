"""The learning core: LOE latent labels, importance weights, LAMP, torch backbones and
the window trainer that composes them (see docs in each module)."""

from streamad.learning.backbones import BACKBONES, AutoEncoder, Backbone, DeepSVDD, NeuTraL
from streamad.learning.lamp import Lamp
from streamad.learning.loe import LatentLabeler, LatentLabels
from streamad.learning.trainer import WindowTrainer
from streamad.learning.weights import ImportanceWeights

__all__ = [
    "BACKBONES",
    "AutoEncoder",
    "Backbone",
    "DeepSVDD",
    "ImportanceWeights",
    "Lamp",
    "LatentLabeler",
    "LatentLabels",
    "NeuTraL",
    "WindowTrainer",
]
