"""The base of the neural detectors: a torch backbone trained by the window trainer.

A neural detector takes a few typed parameters (the learning rate, the batch size,
the warm-up length, LOE's mode and share, the network's size, the seed...) and builds
from them the ``Components`` its trainer is made of (learning/components.py). The
network is built from the seed when the first records arrive (their width fixes the
input layer); torch is imported then, not before, so a detector can be made, checked
and described without it.

Torch's thread count is the process's: a network this small learns fastest on one
thread (the pipeline applies ``threads``, 1 by default; elsewhere call
``streamad.learning.runtime.set_threads(1)``, which takes effect when torch loads).

Research API: ``components()`` is the full description of the trainer;
``with_components(**changes)`` replaces parts of it on a detector that has not learned
yet, and ``customized(name, change)`` makes a detector class whose components are
changed by ``change``, for the registry and the pipeline (benchmarks/variants.py).

>>> from dataclasses import replace
>>> from streamad.detectors.loe_ae import LoeAE
>>> from streamad.learning.components import Combiner
>>> det = LoeAE(seed=1).with_components(head=None, combiner=Combiner("max", gauss_weight=2.0))
>>> det.components().head is None, det.get_params()["seed"]
(True, 1)
>>> NoBoost = LoeAE.customized("loe-ae/no-boost", lambda c: replace(c, schedule=replace(c.schedule, warmup_boost=0.0)))
>>> NoBoost(alpha=0.05).components().schedule.warmup_boost, NoBoost.name
(0.0, 'loe-ae/no-boost')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from streamad.detectors.base import Detector, LearnReport, Record
from streamad.learning.components import Calibration, Components, LabelerSpec, Optimizer, Schedule
from streamad.learning.lamp import Lamp
from streamad.learning.weights import ImportanceWeights
from streamad.minibatch import Keys

if TYPE_CHECKING:
    import torch

    from streamad.learning.backbones import Backbone
    from streamad.learning.trainer import WindowTrainer

#: Windows of records this wide or narrower are scored by the network's float64 numpy
#: copy: below it torch's per-call cost outweighs the arithmetic (a window of 256
#: records of 3 features: 105 -> 59 µs; of 30: 294 -> 255; of 100, 800 -> 896).
NUMPY_FEATURES = 48

#: The flat parameters that states of version 3 carry beside the typed ones, at the only
#: values this code computes (states made with others are refused by name).
LEGACY_PARAMS: dict[str, Any] = {
    "estep": "window", "loe_cap": None, "loe_warmup": 0, "iw_clip": [0.1, 10.0], "iw_ess": 0.3, "iw_warmup": 256,
    "iw_target": "moments", "calibrate": True, "calibrate_after": 64, "autograd": False, "hist_bins": 48, "hist_decay": 0.99,
    "lamp_c": 1.0, "lamp_p": 2.0, "lamp_beta": 1.0, "weight_decay": 0.0, "warmup_epochs": 8.0, "warmup_boost": 16.0,
    "replay": 1024, "replay_share": 0.0, "input_clip": 1e3, "score_head": False, "score_nu": 1.0, "score_normalize": True,
    "score_floor": 0.3, "score_latent": 0.0, "score_decay": 0.9, "score_min_weight": 32.0, "loe_rank": "loss",
    "gauss": False, "gauss_half_life": 20_000.0, "gauss_shrink": 0.05, "gauss_weight": 1.0, "combine": "sum",
    "calibration_floor": 0.05, "gauss_prior": 64.0, "gauss_learn": "loe", "calibration_tail": None,
}  # fmt: skip


class NeuralDetector(Detector):
    """Subclasses declare their parameters in ``__init__`` (calling ``_set_params``),
    and implement ``make_backbone``; they may refine ``default_components``.

    Every subclass has at least these parameters: ``lr``, ``batch_size``,
    ``warmup_records``, ``loe``, ``alpha``, ``weights``, ``lamp``, ``train_share``,
    ``settled_share``,
    ``score_warmup``, ``device`` and ``seed``.
    """

    preferred_scaler = "standard"
    warmup_param = "score_warmup"
    #: flat parameters of older states, and the values this detector computes (see ``LEGACY_PARAMS``)
    legacy_params: ClassVar[dict[str, Any]] = LEGACY_PARAMS

    lr: float
    batch_size: int
    warmup_records: int
    loe: str
    alpha: float
    weights: bool
    lamp: str
    train_share: float
    settled_share: float | None
    score_warmup: int
    device: str
    seed: int

    n_features: int | None = None
    trainer: WindowTrainer | None = None
    _components: Components | None = None
    _probe: tuple[int, WindowTrainer] | None = None  # width and untrained trainer that score before the first learn

    # -- components ----------------------------------------------------------------------

    def default_components(self) -> Components:
        """The trainer's components at this detector's parameters."""
        return Components(
            labeler=LabelerSpec(mode=self.loe, alpha=self.alpha),  # type: ignore[arg-type]
            weights=ImportanceWeights() if self.weights else None,
            lamp=Lamp(self.lamp),  # type: ignore[arg-type]
            calibration=Calibration(network_after=64),
            schedule=Schedule(
                batch_size=self.batch_size,
                warmup_records=self.warmup_records,
                train_share=self.train_share,
                # A train_share below the settled one: the share is already that low.
                settled_share=None if self.settled_share is None else min(self.settled_share, self.train_share),
            ),
            optimizer=Optimizer(lr=self.lr),
        )

    def components(self) -> Components:
        """What the trainer is built from (research code may change it: ``with_components``)."""
        if self._components is None:
            self._components = self.default_components()
        return self._components

    def with_components(self, **changes: Any) -> NeuralDetector:
        """Replace parts of ``components()`` (``head=None``, ``combiner=Combiner("max")``...)
        on a detector that has not learned yet; returns the detector."""
        if self.trainer is not None:
            raise ValueError(f"{self.name}: components can only change before the detector learns")
        self._components = dataclasses.replace(self.components(), **changes)
        self._probe = None
        return self

    @classmethod
    def customized(cls, name: str, change: Callable[[Components], Components], about: str = "") -> type[NeuralDetector]:
        """A subclass registered under ``name`` whose components are ``change(components)``:
        same parameters, same checks, its own name in states and metrics."""

        def default_components(self: NeuralDetector) -> Components:
            return change(cls.default_components(self))

        doc = f"{about or name}: {cls.__name__} with changed components."
        return type(f"{cls.__name__}Variant", (cls,), {"name": name, "__doc__": doc, "__module__": cls.__module__, "default_components": default_components})

    @property
    def minibatch_size(self) -> int:
        return self.components().schedule.batch_size

    def make_backbone(self, n_features: int, generator: torch.Generator, **options: Any) -> Backbone:
        """The network for ``n_features`` inputs; ``options``: ``components().backbone``."""
        raise NotImplementedError

    # -- construction --------------------------------------------------------------------------

    def _build(self, n_features: int) -> WindowTrainer:
        from streamad.learning.runtime import import_torch

        torch = import_torch()  # with the thread count the settings asked for
        from streamad.learning.trainer import WindowTrainer

        c = self.components()
        backbone = self.make_backbone(n_features, torch.Generator().manual_seed(int(self.seed)), **c.backbone)
        return WindowTrainer(
            backbone,
            c.labeler.build(),
            c.weights,
            c.lamp,
            head=None if c.head is None else c.head.build(n_features, int(getattr(backbone, "n_latent", 0))),
            gaussian=None if c.gaussian is None else c.gaussian.build(n_features, c.calibration),
            projections=None if c.projections is None else c.projections.build(n_features, c.calibration, int(self.seed)),
            combiner=c.combiner,
            calibration=c.calibration,
            schedule=c.schedule,
            optimizer=c.optimizer,
            seed=int(self.seed),
            device=self.device,
        )

    def check_components(self) -> None:
        """Build every component once on a 2-feature stand-in, so that a bad combination
        (a head on a backbone without residuals...) fails now (research use; imports torch)."""
        self._build(2)

    def _trainer_for(self, X: np.ndarray) -> WindowTrainer:
        d = X.shape[1]
        if self.trainer is None:
            # The untrained trainer that scored the first window is exactly a fresh one.
            probe, self._probe = self._probe, None
            self.n_features = d
            self.trainer = probe[1] if probe is not None and probe[0] == d else self._build(d)
        elif d != self.n_features:
            raise ValueError(f"{self.name}: records have {d} features, the model was built for {self.n_features}")
        return self.trainer

    def _clean(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D array of records, got shape {X.shape}")
        c = float(self.components().input_clip)
        if X.size and np.abs(X).max() <= c:  # False for a NaN too
            return X  # the usual case, and the same values: skip the copies
        return np.clip(np.nan_to_num(X, nan=0.0, posinf=c, neginf=-c), -c, c)

    # -- the contract ------------------------------------------------------------------------

    def score(self, X: np.ndarray, keys: Keys = None) -> np.ndarray:
        X = self._clean(X)
        if self.trainer is None:
            # Not built yet: the untrained network of this seed scores, and learns nothing.
            if self._probe is None or self._probe[0] != X.shape[1]:
                self._probe = (X.shape[1], self._build(X.shape[1]))
            return self._probe[1].score(X)
        if X.shape[1] != self.n_features:
            raise ValueError(f"{self.name}: records have {X.shape[1]} features, the model was built for {self.n_features}")
        if X.shape[1] <= NUMPY_FEATURES:
            s = self.trainer.score_numpy(X)
            if s is not None:
                return s
        return self.trainer.score(X)

    def score_one(self, x: Record, key: str | None = None) -> float:
        """The score of one record by the model as of the last learned mini-batch. Once
        the model has learned, it is computed in float64 from a copy of a network that
        has one (the autoencoder), in one compiled call (streamad/record_kernel.py): no
        torch and no numpy call per record. It then equals ``score`` of the same record
        up to float32 rounding (about 1e-6 relative)."""
        row = self._row(x)
        t = self.trainer
        if t is not None and row.shape[1] == self.n_features:
            s = t.score_record(row[0], float(self.components().input_clip))
            if s is not None:
                return s
            X = self._clean(row)
            numpy_scores = t.score_numpy(X)
            if numpy_scores is not None:
                return float(numpy_scores[0])
        return float(self.score(self._clean(row))[0])

    def learn(self, X: np.ndarray, keys: Keys = None) -> LearnReport:
        X = self._clean(X)
        trainer = self._trainer_for(X)
        reports, _ = trainer.learn(X)
        # The training warm-up goes on longer, but after a few hundred records the scores
        # already rank records well enough for the threshold to start learning them.
        warm = trainer.n_seen - trainer.warmup_start <= int(self.score_warmup)
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

    def contributions(self, X: np.ndarray, keys: Keys = None) -> np.ndarray | None:
        if self.trainer is None or len(X) == 0:
            return None
        import torch

        X = self._clean(X)
        t = self.trainer
        # One forward pass gives the network's per-feature shares and its score: in numpy
        # where the backbone has a numpy form (the few alarms of a window: torch's
        # per-call cost would be most of it), else two in torch.
        fast = t.explain_numpy(X)
        if fast is None:
            with torch.no_grad():
                net = t.backbone.feature_contributions(t.tensor(X)).double().cpu().numpy()
        else:
            net = fast[0]
        if t.gaussian is None:
            return net
        # Each component's per-feature shares, weighted by how far above its normal
        # level that component scores the record.
        z_net, z_g = t.component_scores(X, None if fast is None else (lambda: fast[1]))
        gc = t.gaussian.contributions(X)
        share = lambda c: c / np.maximum(c.sum(axis=1, keepdims=True), 1e-300)  # noqa: E731
        w_net = np.maximum(z_net, 0.0)[:, None] if t.combiner.uses_network else 0.0
        w_g = np.maximum(z_g, 0.0)[:, None]
        out = w_net * share(net) + w_g * share(gc)
        # A record scoring at or below normal in both: plain shares, so the order still says something.
        return np.where(out.sum(axis=1, keepdims=True) > 0, out, share(net) + share(gc))

    def on_drift(self, kind: str) -> None:
        """Any drift reopens the warm-up: faster learning, blind LOE, fresh histograms."""
        if self.trainer is not None:
            self.trainer.reopen_warmup()

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._state_header(),
            "n_features": self.n_features,
            "trainer": None if self.trainer is None else self.trainer.state_dict(),
            "one": self._one_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_header(state, self.legacy_params)
        self._probe = None
        if state["trainer"] is None:
            self.n_features, self.trainer = None, None
        else:
            self.n_features = int(state["n_features"])
            self.trainer = self._build(self.n_features)
            self.trainer.load_state_dict(state["trainer"])
        self._load_one_state(state.get("one"))
