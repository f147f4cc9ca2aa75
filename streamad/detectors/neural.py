"""The base of the neural detectors: a torch backbone trained by the window trainer.

Every component of the learning core is a flat parameter here, so it can be switched
from ``Settings.detector.params``:

- LOE: ``loe`` (blind, hard, soft, refine), ``alpha``, ``estep`` (window, running),
  ``loe_cap``, ``loe_warmup`` (records trained blind first);
- the score histogram (log1p of LOE-normal scores): ``hist_bins``, ``hist_decay``;
  ``calibrate`` reports scores against it;
- importance weights: ``weights`` (on/off), ``iw_clip``, ``iw_ess``, ``iw_warmup``,
  ``iw_target`` (moments, robust);
- LAMP: ``lamp`` (none, scale, power, exp), ``lamp_c``, ``lamp_p``, ``lamp_beta``;
- the density head (``score_head``, backbones with residuals; learning/density.py):
  ``score_nu`` (Student-t degrees of freedom, 0 = Gaussian), ``score_normalize``,
  ``score_floor``, ``score_latent``, ``score_decay``, ``score_min_weight``; ``loe_rank``
  (loss, score) says what the E-step ranks by;
- training: ``lr``, ``batch_size``, ``warmup_records``, ``warmup_epochs``, ``warmup_boost``, ``replay``,
  ``replay_share``, ``train_share`` (after the warm-up, train on that share of the records), ``input_clip``, ``autograd`` (force autograd over a backbone's
  explicit backward), ``device`` (cpu, cuda, auto), ``seed``.

The network is built from the seed when the first records arrive (their width fixes
the input layer). Scores are the backbone's ``L_n``, or the density head's reading of
the residuals (with ``calibrate``, mapped monotonically against the running
histogram); weights and LAMP touch the training loss only. The defaults are the configuration chosen on the ODDS dev set and checked
component by component in benchmarks/results/ablation.md.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from streamad.detectors.base import Detector, LearnReport
from streamad.learning.backbones import Backbone
from streamad.learning.density import DensityHead
from streamad.learning.gaussian import OnlineGaussian
from streamad.learning.lamp import Lamp
from streamad.learning.loe import LatentLabeler
from streamad.learning.trainer import WindowTrainer
from streamad.learning.weights import ImportanceWeights

TRAINER_DEFAULTS: dict[str, Any] = {
    "loe": "hard",
    "alpha": 0.1,
    "estep": "window",
    "loe_cap": None,
    "loe_warmup": 0,
    "weights": False,  # switchable; the ablation finds no gain on ODDS
    "iw_clip": (0.1, 10.0),
    "iw_ess": 0.3,
    "iw_warmup": 256,
    "iw_target": "moments",
    "calibrate": True,
    "calibrate_after": 64,
    "autograd": False,
    "hist_bins": 48,
    "hist_decay": 0.99,
    "lamp": "none",
    "lamp_c": 1.0,
    "lamp_p": 2.0,
    "lamp_beta": 1.0,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "batch_size": 256,
    "warmup_records": 1024,
    "score_warmup": 256,  # records learned before the scores count (LearnReport.warmup)
    "warmup_epochs": 8.0,
    "warmup_boost": 16.0,
    "replay": 1024,
    "replay_share": 0.0,
    "train_share": 1.0,
    "input_clip": 1e3,
    "device": "cpu",
    "seed": 0,
    "score_head": False,  # the density head (learning/density.py); backbones with residuals only
    "score_nu": 1.0,
    "score_normalize": True,
    "score_floor": 0.3,
    "score_latent": 0.0,
    "score_decay": 0.9,
    "score_min_weight": 32.0,
    "loe_rank": "loss",
    "gauss": False,  # the online Gaussian of LOE-normal records beside the network (learning/gaussian.py)
    "gauss_half_life": 20_000.0,
    "gauss_shrink": 0.05,
    "gauss_weight": 1.0,
    "combine": "sum",  # sum, max, gauss (the Gaussian alone)
    "calibration_floor": 0.05,
    "gauss_prior": 64.0,
    "gauss_learn": "loe",
    "calibration_tail": None,
}


class NeuralDetector(Detector):
    """Subclasses set ``backbone_defaults`` and implement ``make_backbone``."""

    backbone_defaults: ClassVar[dict[str, Any]] = {}
    trainer_defaults: ClassVar[dict[str, Any]] = TRAINER_DEFAULTS
    preferred_scaler = "standard"

    def __init__(self, **params: Any) -> None:
        defaults = {**self.trainer_defaults, **self.backbone_defaults}
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"unexpected parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
        self.params: dict[str, Any] = {**defaults, **params}
        if isinstance(self.params["iw_clip"], list):
            self.params["iw_clip"] = tuple(self.params["iw_clip"])
        self.n_features: int | None = None
        self.trainer: WindowTrainer | None = None
        self._validate()

    def _validate(self) -> None:
        # Build every component once on a 2-feature stand-in so bad values fail at start.
        self._build(2)

    # -- construction --------------------------------------------------------------------

    def make_backbone(self, n_features: int, generator: torch.Generator) -> Backbone:
        raise NotImplementedError

    def _build(self, n_features: int) -> WindowTrainer:
        p = self.params
        g = torch.Generator().manual_seed(int(p["seed"]))
        backbone = self.make_backbone(n_features, g)
        labeler = LatentLabeler(alpha=float(p["alpha"]), mode=str(p["loe"]), estep=str(p["estep"]), cap=p["loe_cap"])
        if p["loe"] in ("hard", "soft") and not backbone.has_anomalous_loss:
            raise ValueError(f"loe={p['loe']!r} needs a backbone with an anomalous loss; use loe='refine' or 'blind'")
        weights = (
            ImportanceWeights(
                clip=tuple(p["iw_clip"]),  # type: ignore[arg-type]
                ess_min=float(p["iw_ess"]),
                min_count=int(p["iw_warmup"]),
                target=str(p["iw_target"]),
            )
            if p["weights"]
            else None
        )
        head = None
        if p["score_head"]:
            if not backbone.has_residuals:
                raise ValueError(f"score_head needs a backbone with residuals; {self.name} has none (score_head=False)")
            head = DensityHead(
                n_features,
                int(getattr(backbone, "n_latent", 0)),
                nu=float(p["score_nu"]),
                normalize=bool(p["score_normalize"]),
                floor=float(p["score_floor"]),
                latent_weight=float(p["score_latent"]),
                decay=float(p["score_decay"]),
                min_weight=float(p["score_min_weight"]),
            )
        gauss = (
            OnlineGaussian(n_features, half_life=None if p["gauss_half_life"] is None else float(p["gauss_half_life"]), shrink=float(p["gauss_shrink"]), prior=float(p["gauss_prior"]))
            if p["gauss"]
            else None
        )
        lamp = Lamp(str(p["lamp"]), c=float(p["lamp_c"]), p=float(p["lamp_p"]), beta=float(p["lamp_beta"]))
        return WindowTrainer(
            backbone,
            labeler,
            weights,
            lamp,
            lr=float(p["lr"]),
            weight_decay=float(p["weight_decay"]),
            batch_size=int(p["batch_size"]),
            warmup_records=int(p["warmup_records"]),
            warmup_epochs=float(p["warmup_epochs"]),
            warmup_boost=float(p["warmup_boost"]),
            loe_warmup=int(p["loe_warmup"]),
            replay=int(p["replay"]),
            replay_share=float(p["replay_share"]),
            train_share=float(p["train_share"]),
            calibrate=bool(p["calibrate"]),
            calibrate_after=int(p["calibrate_after"]),
            autograd=bool(p["autograd"]),
            hist_bins=int(p["hist_bins"]),
            hist_decay=float(p["hist_decay"]),
            seed=int(p["seed"]),
            device=str(p["device"]),
            head=head,
            loe_rank=str(p["loe_rank"]),
            gauss=gauss,
            combine=str(p["combine"]),
            gauss_weight=float(p["gauss_weight"]),
            calibration_floor=float(p["calibration_floor"]),
            gauss_learn=str(p["gauss_learn"]),
            calibration_tail=None if p["calibration_tail"] is None else float(p["calibration_tail"]),
        )

    def _trainer_for(self, X: np.ndarray) -> WindowTrainer:
        d = X.shape[1]
        if self.trainer is None:
            self.n_features = d
            self.trainer = self._build(d)
        elif d != self.n_features:
            raise ValueError(f"{self.name}: records have {d} features, the model was built for {self.n_features}")
        return self.trainer

    def _clean(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D array of records, got shape {X.shape}")
        c = float(self.params["input_clip"])
        return np.clip(np.nan_to_num(X, nan=0.0, posinf=c, neginf=-c), -c, c)

    # -- the contract ------------------------------------------------------------------------

    def score(self, X: np.ndarray) -> np.ndarray:
        X = self._clean(X)
        if self.trainer is None:
            # Not built yet: score with the untrained network of this seed, and keep no state.
            return self._build(X.shape[1]).score(X)
        if X.shape[1] != self.n_features:
            raise ValueError(f"{self.name}: records have {X.shape[1]} features, the model was built for {self.n_features}")
        return self.trainer.score(X)

    def learn(self, X: np.ndarray) -> LearnReport:
        X = self._clean(X)
        trainer = self._trainer_for(X)
        reports, _ = trainer.learn(X)
        # The training warm-up goes on longer, but after a few hundred records the scores
        # already rank records well enough for the threshold to start learning them.
        warm = trainer.n_seen - trainer.warmup_start <= int(self.params["score_warmup"])
        done = [r for r in reports if r.loss == r.loss]
        if not done:
            return LearnReport(n_learned=len(X), warmup=warm, extra={"steps": 0.0})
        return LearnReport(
            n_learned=len(X),
            loss=float(np.mean([r.loss for r in done])),
            loe_flag_rate=float(np.mean([r.flag_rate for r in done])),
            ess=float(np.mean([r.ess for r in done])),
            warmup=warm,
            extra={"steps": float(len(done))},
        )

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        if self.trainer is None or len(X) == 0:
            return None
        X = self._clean(X)
        t = self.trainer
        t.backbone.eval()
        with torch.no_grad():
            net = t.backbone.feature_contributions(t.tensor(X)).double().cpu().numpy()
        if t.gauss is None:
            return net
        # Each component's per-feature shares, weighted by how far above its normal
        # level that component scores the record.
        z_net, z_g = t.component_scores(X)
        gc = t.gauss.contributions(X)
        share = lambda c: c / np.maximum(c.sum(axis=1, keepdims=True), 1e-300)  # noqa: E731
        w_net = np.maximum(z_net, 0.0)[:, None] if t.combine != "gauss" else 0.0
        w_g = np.maximum(z_g, 0.0)[:, None]
        out = w_net * share(net) + w_g * share(gc)
        # A record scoring at or below normal in both: plain shares, so the order still says something.
        return np.where(out.sum(axis=1, keepdims=True) > 0, out, share(net) + share(gc))

    def on_drift(self, kind: str) -> None:
        """Any drift reopens the warm-up: faster learning, blind LOE, fresh histograms."""
        if self.trainer is not None:
            self.trainer.reopen_warmup()

    def state_dict(self) -> dict[str, Any]:
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()}
        return {
            "name": self.name,
            "version": self.version,
            "params": params,
            "n_features": self.n_features,
            "trainer": None if self.trainer is None else self.trainer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"state is for detector {state.get('name')!r}, not {self.name!r}")
        if str(state.get("version")) != self.version:
            raise ValueError(
                f"state is from {self.name} version {state.get('version')}, this is version {self.version}: "
                "the model cannot continue from it (start with an empty state directory)"
            )
        self.__init__(**state["params"])  # type: ignore[misc]
        if state["trainer"] is not None:
            self.n_features = int(state["n_features"])
            self.trainer = self._build(self.n_features)
            self.trainer.load_state_dict(state["trainer"])

