"""The ablation's variants of the default detector, built through the research API.

A variant changes the default detector in one respect (the last one, in all at once):
through its public parameters (``params``, passed as ``detector.params`` like any
setting), or through the components of its trainer (``changes``: a component set to
None, replaced by a value, or some of its fields changed; see
streamad/learning/components.py). A variant with changed components is registered as
a detector class of its own (``NeuralDetector.customized``) so the replay pipeline
builds it from settings like any other.

>>> VARIANTS["running"].shows
'labeler.estep="running"'
>>> from streamad.detectors.loe_ae import LoeAE
>>> VARIANTS["no-head"].change(LoeAE().components()).head is None
True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamad.learning.components import Components
from streamad.learning.lamp import Lamp


@dataclass(frozen=True)
class Variant:
    title: str
    #: public parameters of the detector, passed through settings
    params: Mapping[str, Any] = field(default_factory=dict)
    #: component name -> None (off), a component value, or a mapping of its fields to change
    changes: Mapping[str, Any] = field(default_factory=dict)

    def change(self, c: Components) -> Components:
        """``c`` with this variant's component changes."""
        out = {}
        for name, change in self.changes.items():
            if isinstance(change, Mapping):
                out[name] = dataclasses.replace(getattr(c, name), **change)
            else:
                out[name] = change
        return dataclasses.replace(c, **out)

    @property
    def shows(self) -> str:
        """How the table shows the change."""
        parts = [json.dumps(dict(self.params))] if self.params else []
        for name, change in self.changes.items():
            if isinstance(change, Mapping):
                parts += [f"{name}.{k}={json.dumps(v)}" for k, v in change.items()]
            else:
                parts.append(f"{name}={_short(change)}")
        return ", ".join(parts)

    def detector(self, key: str, base: str) -> str:
        """The registered detector this variant runs as: ``base`` itself when only its
        parameters change, else ``base/key``, registered here (in every process that
        builds it: call this before loading settings)."""
        if not self.changes:
            return base
        from streamad.detectors import detector_class, register

        name = f"{base}/{key}"
        register(name, detector_class(base).customized(name, self.change, self.title))  # type: ignore[attr-defined]
        return name


def _short(value: Any) -> str:
    """A component value by the fields that differ from their defaults.

    >>> _short(Lamp("scale", c=10.0)), _short(None)
    ("Lamp(kind='scale', c=10.0)", 'None')
    """
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return repr(value)
    fields = [f for f in dataclasses.fields(value) if f.default is dataclasses.MISSING or getattr(value, f.name) != f.default]
    return f"{type(value).__name__}({', '.join(f'{f.name}={getattr(value, f.name)!r}' for f in fields)})"


#: name -> variant of the default detector
VARIANTS: dict[str, Variant] = {
    "default": Variant("default"),
    "soft": Variant("LOE-soft (flagged: 0.5 L_n + 0.5 L_a)", {"loe": "soft"}),
    "refine": Variant("Refine (flagged records dropped)", {"loe": "refine"}),
    "blind": Variant("Blind (no LOE)", {"loe": "blind"}),
    "running": Variant("E-step: running quantile, capped", changes={"labeler": {"estep": "running"}}),
    "loe-warmup": Variant("LOE blind for the first 512 records", changes={"labeler": {"warmup": 512}}),
    "weights": Variant("importance weights on", {"weights": True}),
    "robust-target": Variant("importance weights on, median/MAD target", {"weights": True}, {"weights": {"target": "robust"}}),
    "lamp-scale": Variant("LAMP scale(10)", changes={"lamp": Lamp("scale", c=10.0)}),
    "lamp-power": Variant("LAMP power(2)", {"lamp": "power"}),
    "lamp-exp": Variant("LAMP exp(1)", {"lamp": "exp"}),
    "no-head": Variant("no density head: score = mean squared error", changes={"head": None}),
    "gauss-head": Variant("density head with Gaussian noise (nu = 0)", changes={"head": {"nu": 0.0}}),
    "no-normalize": Variant("density head without per-feature residual variances", changes={"head": {"normalize": False}}),
    "latent": Variant("density head + latent Mahalanobis term", changes={"head": {"latent_weight": 1.0}}),
    "loe-rank-score": Variant("LOE E-step ranks by the density score", changes={"labeler": {"rank": "score"}}),
    "calibration": Variant("score calibration on", changes={"calibration": {"network_after": 64}}),
    "previous": Variant("previous default (no head, calibrated)", {"gauss": False}, {"head": None, "calibration": {"network_after": 64}}),
    "no-gauss": Variant("no online Gaussian (loe-ae v2: the density head alone)", {"gauss": False, "score_warmup": 256}),
    "gauss-w1": Variant("online Gaussian at weight 1", changes={"combiner": {"gauss_weight": 1.0}}),
    "gauss-max": Variant("network and Gaussian combined by max", changes={"combiner": {"mode": "max"}}),
    "gauss-only": Variant("the online Gaussian alone (network trains, does not score)", changes={"combiner": {"mode": "gauss"}}),
    "gauss-all": Variant("Gaussian learns every record, not just LOE-normal ones", changes={"gaussian": {"learn": "all"}}),
    "mad": Variant("calibration by the MAD instead of the 99% tail", changes={"calibration": {"tail": None}}),
    "no-histograms": Variant("no feature histograms (loe-ae before 2026-12-03)", {"histograms": False}),
    "no-boost": Variant("no front-loaded warm-up", changes={"schedule": {"warmup_boost": 0.0}}),
    "replay": Variant("replay: half of each batch from memory", changes={"schedule": {"replay_share": 0.5}}),
    "train-quarter": Variant("after the warm-up, train on a quarter of the records", {"train_share": 0.25}),
    "plain": Variant(
        "everything off (plain AE)",
        {"loe": "blind", "gauss": False},
        {"schedule": {"warmup_boost": 0.0}, "head": None, "calibration": {"network_after": None}},
    ),
}
