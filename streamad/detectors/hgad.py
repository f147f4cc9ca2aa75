"""HGAD: one normalizing flow for many devices, with the record keys as classes.

The streaming tabular form of HGAD (Yao et al., ECCV 2024; docs/methods.md §4). A flow
of affine coupling blocks maps each scaled record to a latent; the prior there is a
mixture with one Gaussian class per key (device, sensor, tenant), and within each class
a mixture of intra-class centres, so one model holds several normal patterns per device
and many devices, and judges each record against its own device's. A single flow
with one Gaussian maps anomalies to high likelihood as readily as normal records when
the normal data are many patterns ("homogeneous mapping"); the class-conditional prior
and the mutual-information loss keep each device's region its own, so one device's
values on another device score as anomalies.

Scores are ``-log p(x | class of its key) / D``, standardised against the running
quantiles of the class's own past scores, so devices whose records are harder by
nature do not drown the others' anomalies in one ranking. LOE (learning/loe.py) keeps
the records it flags out of each optimiser step. learning/hgad.py holds the losses and
what is ours; learning/flow.py the flow; learning/keyclasses.py the key table and the
per-class statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from streamad.detectors.base import Detector, LearnReport, Record
from streamad.minibatch import Keys

if TYPE_CHECKING:
    from streamad.learning.hgad import HgadTrainer


class HGAD(Detector):
    """Hierarchical Gaussian-mixture normalizing flow with the record keys as classes.

    **Keys and classes** (as the ``Detector`` docstring says; the pipeline passes each
    record's key: ``--key`` / ``record.key``). The first ``max_classes`` keys get a
    class each, in the order ``learn`` meets them (records without a key share one: the
    key None). A key first learned once every class is taken joins the class of highest
    posterior for the mean latent of its first records, and keeps it. A key's class
    never changes; the key table is part of the checkpoint (at most 100,000 keys are
    remembered; past that a new key is classed afresh in every window). A new class's
    centre starts at the mean latent of its first records, its spread at theirs; no
    other centre moves. The mixture weights are the classes' shares of the decayed
    record counts.

    **A key never seen before**: ``score`` does not change the table, so until
    ``learn`` has seen the key, its records in a window are scored against the class
    they resemble most (highest mean posterior), standardised with the whole stream's
    score statistics. Once learned it has its class (a new one while there is room),
    and a class with few scores of its own borrows the whole stream's statistics until
    it has enough. With ``max_classes=1`` keys are ignored: one class (and with
    ``centres_per_class=1`` a single Gaussian: the flow HGAD was made against).

    **Features that never varied** (a constant, which the scaler makes 0) are dead in
    the flow and the prior: they add nothing to any score or contribution until they
    vary, so a constant stream scores 0 throughout.

    **Cost**: torch, one optimiser step per ``batch_size`` records once warm, several
    per window while the stream (or a new class) is young: on SKAB's 8 features, 47 µs
    of CPU a record (one thread, the lane model included) against 22 µs for the default
    (``loe-ae``, one model) and 156 µs for one ``loe-ae`` per key; with the temporal
    stage on (41 columns), 85 µs (benchmarks/results/hgad_devices.md).

    Parameters
    ----------
    max_classes : int, default 64
        Classes at most (G); more keys share them, by resemblance.
    centres_per_class : int, default 10
        Intra-class centres per class (M, the paper's 10): normal patterns one device
        may hold.
    blocks : int, default 4
        Affine coupling blocks of the flow.
    hidden : int, default 64
        Hidden units of each coupling's network.
    mi_weight : float, default 1.0
        Weight of the mutual-information loss (the paper's λ2 is 100, for image
        features of 272 dimensions; on tabular records of a few it tears each
        class's latents away from the density the flow learns: see docs/methods.md §4).
    smoothing : float in [0, 1), default 0.005
        Label smoothing of the class targets of the mutual-information loss (the
        paper's 0.02 pulls each record's latent towards every other class's centre with
        a weight that grows with the width: on SKAB with the temporal stage's 37 columns
        it outweighed the likelihood; docs/methods.md §4).
    entropy_weight : float, default 1.0
        Weight of the entropy loss (each latent near one class centre).
    intra_warmup : int, default 128
        Records of a class before its intra-class loss joins (the paper's warm-up:
        the inter-class losses first); until then its main centre alone scores it.
    lr : float, default 2e-3
        Adam's learning rate for the flow (the centres learn three times faster).
    batch_size : int, default 256
        Records per optimiser step, and per mini-batch of ``learn_one``.
    warmup_records : int, default 1024
        Records during which the flow trains harder (several passes over little data,
        topped up from a replay memory).
    loe : {"refine", "blind"}, default "refine"
        What LOE does with the records it flags: leave them out of the step (refine),
        or nothing (blind: no LOE).
    estep : {"running", "window"}, default "running"
        Which records LOE flags: those above the running ``1 - alpha`` quantile of the
        rankings before (at most ``2 alpha`` of a batch; a clean batch loses nothing), or
        the top ``alpha`` of every batch (the paper's; it cuts the normal tail of every
        batch, which the flow then never learns: heavy-tailed derived columns of the
        temporal stage made that cost 0.05-0.09 ROC-AUC on SKAB).
    alpha : float in [0, 1), default 0.03
        Share of each batch LOE flags: the contamination it assumes. Lower than the
        autoencoders' 0.1: a flow trained by likelihood on all but the top 10% of every
        batch learns no tail, and the normal records of that tail then score high
        (ROC-AUC on the SKAB stream of benchmarks/hgad_devices.py, the detector driven
        directly, seed 0: 0.70 at 0.1, 0.77 at 0.03; blind, no LOE: 0.77).
    weights : bool, default False
        Importance weights on the training loss (docs/methods.md §2, our estimator),
        read off the class-standardised scores of LOE-normal records: off, as in
        ``loe-ae`` (benchmarks/results/hgad_devices.minority.md measures them).
    count_half_life : float, optional, default 10000
        Records after which a class's count for the mixture weights halves (None:
        never forget).
    normalize : bool, default True
        Standardise each score against its class's running quantiles (False: the raw
        ``-log p / D``).
    score_warmup : int, default 1024
        Records learned before the scores count for the threshold (``LearnReport.warmup``);
        after that, a window counts as warm-up too when at least half its records come
        from classes that have learned fewer than ``intra_warmup`` records.
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Where the flow runs.
    seed : int, default 0
        Fixes the flow's weights, the intra-class offsets and the replay sampling.

    Examples
    --------
    Two pumps with different normal regimes; pump A's values on pump B are an anomaly
    for B even though they are normal for A:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = HGAD(warmup_records=256, seed=0)
    >>> for _ in range(12):
    ...     a = rng.normal([2.0, 2.0, 0.0], 0.3, size=(64, 3))
    ...     b = rng.normal([-2.0, 0.0, 1.0], 0.3, size=(64, 3))
    ...     _ = det.learn(np.r_[a, b], ["A"] * 64 + ["B"] * 64)
    >>> s = det.score(np.array([[-2.0, 0.0, 1.0], [2.0, 2.0, 0.0]]), ["B", "B"])
    >>> bool(s[1] > s[0] + 3)
    True
    >>> det.n_classes, det.class_of("A"), det.class_of("new pump")
    (2, 0, None)
    """

    name = "hgad"
    version = "2"  # 2: smoothing 0.005 and the running E-step by default
    preferred_scaler = "standard"
    warmup_param = "score_warmup"
    uses_keys = True
    learns_alarmed = True  # LOE per class screens it; a flow fed only sub-threshold records alarms more

    max_classes: int
    centres_per_class: int
    blocks: int
    hidden: int
    mi_weight: float
    smoothing: float
    entropy_weight: float
    intra_warmup: int
    lr: float
    batch_size: int
    warmup_records: int
    loe: str
    estep: str
    alpha: float
    weights: bool
    count_half_life: float | None
    normalize: bool
    score_warmup: int
    device: str
    seed: int

    def __init__(
        self,
        *,
        max_classes: Annotated[int, Field(ge=1)] = 64,
        centres_per_class: Annotated[int, Field(ge=1)] = 10,
        blocks: Annotated[int, Field(ge=1)] = 4,
        hidden: Annotated[int, Field(ge=1)] = 64,
        mi_weight: Annotated[float, Field(ge=0)] = 1.0,
        smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.005,
        entropy_weight: Annotated[float, Field(ge=0)] = 1.0,
        intra_warmup: Annotated[int, Field(ge=0)] = 128,
        lr: Annotated[float, Field(gt=0)] = 2e-3,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        warmup_records: Annotated[int, Field(ge=0)] = 1024,
        loe: Literal["refine", "blind"] = "refine",
        estep: Literal["running", "window"] = "running",
        alpha: Annotated[float, Field(ge=0, lt=1)] = 0.03,
        weights: bool = False,
        count_half_life: Annotated[float, Field(gt=0)] | None = 10_000.0,
        normalize: bool = True,
        score_warmup: Annotated[int, Field(ge=0)] = 1024,
        device: Literal["cpu", "cuda", "auto"] = "cpu",
        seed: int = 0,
    ) -> None:
        self._set_params(HGAD, locals())
        self.n_features: int | None = None
        self.trainer: HgadTrainer | None = None
        self._probe: tuple[int, HgadTrainer] | None = None  # an untrained model that scores before the first learn

    # -- construction --------------------------------------------------------------------

    @property
    def minibatch_size(self) -> int:
        return int(self.batch_size)

    def _build(self, d: int) -> HgadTrainer:
        from streamad.learning.runtime import import_torch

        import_torch()  # with the thread count the settings asked for
        from streamad.learning.hgad import HgadConfig, HgadTrainer
        from streamad.learning.loe import LatentLabeler

        config = HgadConfig(
            max_classes=self.max_classes, centres_per_class=self.centres_per_class, blocks=self.blocks, hidden=self.hidden,
            mi_weight=self.mi_weight, smoothing=self.smoothing, entropy_weight=self.entropy_weight,
            intra_warmup=self.intra_warmup, lr=self.lr, batch_size=self.batch_size, warmup_records=self.warmup_records,
            count_half_life=self.count_half_life or 0.0, normalize=self.normalize, weights=self.weights, seed=self.seed,
        )  # fmt: skip
        labeler = LatentLabeler(alpha=self.alpha, mode="refine" if self.loe == "refine" else "blind", estep=self.estep)
        return HgadTrainer(d, config, labeler, device=self.device)

    def _clean(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D array of records, got shape {X.shape}")
        if X.size and np.isfinite(X).all() and np.abs(X).max() <= 1e3:
            return X
        return np.clip(np.nan_to_num(X, nan=0.0, posinf=1e3, neginf=-1e3), -1e3, 1e3)

    def _keys(self, keys: Keys, n: int) -> list[str | None] | None:
        if keys is None:
            return None
        out = [None if k is None else str(k) for k in keys]
        if len(out) != n:
            raise ValueError(f"{self.name}: {len(out)} keys for {n} records")
        return out

    def _width(self, X: np.ndarray) -> None:
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise ValueError(f"{self.name}: records have {X.shape[1]} features, the model was built for {self.n_features}")

    # -- the contract ------------------------------------------------------------------------

    def score(self, X: np.ndarray, keys: Keys = None) -> np.ndarray:
        X = self._clean(X)
        k = self._keys(keys, len(X))
        if self.trainer is None:
            # Not built yet: the untrained flow of this seed scores, and learns nothing.
            if self._probe is None or self._probe[0] != X.shape[1]:
                self._probe = (X.shape[1], self._build(X.shape[1]))
            return self._probe[1].score(X, k)
        self._width(X)
        return self.trainer.score(X, k)

    def learn(self, X: np.ndarray, keys: Keys = None) -> LearnReport:
        X = self._clean(X)
        k = self._keys(keys, len(X))
        if self.trainer is None:
            probe, self._probe = self._probe, None
            self.n_features = X.shape[1]
            self.trainer = probe[1] if probe is not None and probe[0] == X.shape[1] else self._build(X.shape[1])
        self._width(X)
        t = self.trainer
        steps = t.learn(X, k)
        # Warm while the stream is young, and while most of the window comes from young
        # classes (many devices starting together, or a device joining alone): a young
        # class's scores are not yet its own, and the threshold should not learn them.
        warm = t.n_seen <= int(self.score_warmup) or t.young_share >= 0.5
        done = [s for s in steps if s.loss == s.loss]
        extra = {"steps": float(len(done)), "classes": float(t.n_classes)}
        if not done:
            return LearnReport(n_learned=len(X), warmup=warm, extra=extra)
        return LearnReport(
            n_learned=len(X),
            loss=float(np.mean([s.loss for s in done])),
            loe_flag_rate=float(np.mean([s.flag_rate for s in done])),
            warmup=warm,
            extra=extra,
        )

    def score_one(self, x: Record, key: str | None = None) -> float:
        return float(self.score(self._row(x), None if key is None else [key])[0])

    def contributions(self, X: np.ndarray, keys: Keys = None) -> np.ndarray | None:
        """Per-feature contributions: integrated gradients of the score along the path
        from the nearest intra-class centre of the record's class (brought back to
        feature space through the inverse flow) to the record."""
        if self.trainer is None or len(X) == 0:
            return None
        X = self._clean(X)
        self._width(X)
        return self.trainer.contributions(X, self._keys(keys, len(X)))

    # -- what the model holds ----------------------------------------------------------------

    @property
    def n_classes(self) -> int:
        """Classes in use."""
        return 0 if self.trainer is None else self.trainer.n_classes

    def class_of(self, key: str | None) -> int | None:
        """The class ``key`` belongs to (None: a key the model has not learned)."""
        if self.trainer is None:
            return None
        if self.max_classes == 1:
            return 0 if self.trainer.n_classes else None
        return self.trainer.table.classes.get(key)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._state_header(),
            "n_features": self.n_features,
            "trainer": None if self.trainer is None else self.trainer.state_dict(),
            "one": self._one_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_header(state)
        self._probe = None
        if state["trainer"] is None:
            self.n_features, self.trainer = None, None
        else:
            self.n_features = int(state["n_features"])
            self.trainer = self._build(self.n_features)
            self.trainer.load_state_dict(state["trainer"])
        self._load_one_state(state.get("one"))


__all__ = ["HGAD"]
