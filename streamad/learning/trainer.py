"""The window trainer: a backbone, composed with LOE labels, importance weights, LAMP,
a density head and a Gaussian beside it, trained from windows of a contaminated stream.

Per optimiser step (methods.md, "How they compose")::

    Ln, La  = backbone.forward_train(batch)        # one forward pass
    s       = detection scores (L_n, or the density head's reading of the residuals)
    y       = LOE E-step on (L_n - L_a), detached
    w       = importance weights of s, from the score histogram before this batch
    loss_i  = y_n * w * lamp(Ln) + y_a * La      # y_n, y_a: weights on L_n and L_a
    backbone.gradients(...); Adam step
    LOE-normal fresh records -> score histogram, Gaussian, replay memory

The backbone computes its own gradients (by hand or by autograd: its choice), so a
step is the same short sequence of stages whatever the backbone. The components come
built (``streamad.learning.components`` describes them as values).

The trainer owns THE running score histogram: ``log1p`` of the scores of fresh
LOE-normal records, decayed per step. The importance weights read it, and the
network's scores are reported against it (``Calibration``): ``(log1p(s) - median) /
MAD``, from the histogram as it was before the window. A model that keeps learning
shrinks its raw errors as it goes; calibration keeps the scores of early and late
records comparable (one threshold, one ranking over the whole stream) without
changing the order within a window. With a Gaussian, each component is calibrated
against its own histogram and the ``Combiner`` adds them.

Windows and optimiser steps are decoupled so one configuration serves a 129-record
file and a million-record topic, and the per-record cost stays small (``Schedule``):

- records wait in ``pending`` until ``batch_size`` of them can make one step;
- while the stream is young (the first ``warmup_records``) the trainer keeps its step
  count on ``warmup_target(n)`` (front-loaded, independent of the window sizes), each
  step on the window's fresh records topped up with replayed earlier ones;
- LOE is blind for the first ``labeler.warmup`` records (0 by default: an autoencoder's
  untrained score is already a usable ranking);
- ``replay`` keeps up to that many recent LOE-normal records; ``replay_share`` of each
  steady-state batch can be drawn from it;
- ``train_share`` < 1 trains, after the warm-up, on that share of the records (evenly
  spaced; every record is still scored): on file-order http.mat 0.25 streams ~1.5x
  faster with the same ODDS figures, but fewer demo alarms (benchmarks/results).

Randomness comes from ``numpy.random.default_rng((seed, steps))``, so the state is a
few counters and a checkpoint continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streamad.histogram import DecayedHistogram
from streamad.learning.backbones import LOSS_CAP, Backbone, Forward, NumpyNet
from streamad.learning.components import Calibration, Combiner, Optimizer, Schedule
from streamad.learning.density import DensityHead
from streamad.learning.gaussian import Calibrator, GaussianComponent
from streamad.learning.lamp import Lamp
from streamad.learning.loe import LatentLabeler, LatentLabels
from streamad.learning.projections import ProjectionComponent
from streamad.learning.weights import ImportanceWeights


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class StepReport:
    loss: float
    flag_rate: float
    ess: float
    n_fresh: int


class WindowTrainer:
    """Trains ``backbone`` from windows of an unlabelled, contaminated stream.

    ``labeler`` (stateful: one per trainer), ``weights`` (None: off), ``lamp``, ``head``,
    ``gaussian`` and ``projections`` (None: off) come built; ``combiner``, ``calibration``, ``schedule``
    and ``optimizer`` are the values of learning/components.py.
    """

    def __init__(
        self,
        backbone: Backbone,
        labeler: LatentLabeler,
        weights: ImportanceWeights | None = None,
        lamp: Lamp = Lamp(),
        *,
        head: DensityHead | None = None,
        gaussian: GaussianComponent | None = None,
        projections: ProjectionComponent | None = None,
        combiner: Combiner = Combiner(),
        calibration: Calibration = Calibration(),
        schedule: Schedule = Schedule(),
        optimizer: Optimizer = Optimizer(),
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if head is not None and not backbone.has_residuals:
            raise ValueError(f"a density head needs a backbone with residuals, not {type(backbone).__name__}")
        if labeler.mode in ("hard", "soft") and not backbone.has_anomalous_loss:
            raise ValueError(f"LOE mode {labeler.mode!r} needs a backbone with an anomalous loss; use 'refine' or 'blind'")
        self.device = pick_device(device)
        self.backbone = backbone.to(self.device)
        self.backbone.train()  # no dropout or batch norm: the mode never changes
        self.labeler = labeler
        self.weights = weights
        self.lamp = lamp
        self.head = head
        self.gaussian = gaussian
        self.projections = projections
        self.combiner = combiner
        self.calibration = calibration
        self.schedule = schedule
        self.optimizer_spec = optimizer
        self.seed = seed
        self.batch_size = schedule.batch_size
        self.replay_share = schedule.replay_share if schedule.replay > 0 else 0.0
        self.hist = DecayedHistogram(bins=calibration.bins, decay=calibration.decay, min_init=32)
        # The network's calibration reads the histogram above (the trainer updates it).
        self.ncal = Calibrator(floor=calibration.floor, tail=calibration.tail, hist=self.hist)
        self._calibration: tuple[float, float] | None = None
        self.optimizer = optimizer.build(self.backbone.parameters())
        self.n_seen = 0  # records given to learn()
        self.n_trained = 0  # fresh records consumed by steps
        self.steps = 0
        self.warmup_start = 0  # n_seen when the current warm-up began
        self.warmup_done = 0  # steps made since then
        self.warmup_until = schedule.warmup_records  # n_seen below which the stream counts as young
        self.loe_from = labeler.warmup  # n_trained from which LOE labels are used
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.memory: np.ndarray | None = None
        self.memory_next = 0
        self.memory_size = 0
        self.revision = 0  # changes whenever the model may have: learn, load, reopen
        # The adaptive share of records trained on after the warm-up (Schedule.settled_share):
        # the share now, fast and slow running means of the steps' losses, and how many
        # steps in a row the loss has not fallen.
        self.share = schedule.train_share
        self.loss_fast = math.nan
        self.loss_slow = math.nan
        self.flat_steps = 0
        self._numpy: tuple[int, NumpyNet | None] | None = None
        self._record: tuple[int, tuple[Callable[..., tuple[float, float]], np.ndarray, np.ndarray] | None] | None = None

    # -- scoring -------------------------------------------------------------------------

    def tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        return self._combined(X, lambda: self.network_scores(self.tensor(X)))

    def _combined(self, X: np.ndarray, network: Callable[[], np.ndarray]) -> np.ndarray:
        """The detection score of ``X`` from the network's raw scores (``network()``,
        computed only where the combiner reads them) and the components beside it:
        what ``score`` and ``score_numpy`` share."""
        if self.gaussian is None and self.projections is None:
            return self._calibrated(network())
        if self.n_seen == 0:
            return self.neutral(len(X))
        return self.combiner(*self.component_scores(X, network), self.projection_scores(X))

    @staticmethod
    def neutral(n: int) -> np.ndarray:
        """What a trainer that has learned nothing scores, on the calibrated scale: 0, the
        level of a typical normal record. It has no evidence for any record (behind the
        pipeline's scaler its first window is all zeros), and a component's prior would
        put the whole window at one arbitrary level, far below or above every later one."""
        return np.zeros(n)

    def projection_scores(self, X: np.ndarray) -> np.ndarray | None:
        """The projection histograms' calibrated scores, weighted by the combiner's
        ``proj_weight`` (None without them)."""
        if self.projections is None:
            return None
        return self.combiner.proj_weight * self.projections.score(X)

    @torch.no_grad()
    def network_scores(self, x: torch.Tensor) -> np.ndarray:
        """The network's raw scores: the density head's reading of the residuals, or ``L_n``."""
        s = self.head.score(*self.backbone.residuals(x)) if self.head is not None else self.backbone.score(x)
        return s.double().cpu().numpy()

    def component_scores(self, X: np.ndarray, network: Callable[[], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The network's and the Gaussian's scores, each calibrated against its own
        LOE-normal histogram (the Gaussian's weighted by the combiner's ``gauss_weight``);
        zeros for a part the trainer lacks or the combiner does not read. ``network()``
        gives the network's raw scores (default: a torch pass), called only when read."""
        z_g = np.zeros(len(X)) if self.gaussian is None else self.combiner.gauss_weight * self.gaussian.score(X)
        if not (self.combiner.uses_network or self.gaussian is None):
            return np.zeros(len(X)), z_g
        raw = network() if network is not None else self.network_scores(self.tensor(X))
        return self.ncal(raw), z_g

    def _numpy_net(self) -> NumpyNet | None:
        """The backbone's float64 weights as of the model's last change (None: it has
        none), copied once per change for the numpy batch path and the compiled one alike."""
        if self._numpy is None or self._numpy[0] != self.revision:
            self._numpy = (self.revision, self.backbone.numpy_weights())
        return self._numpy[1]

    def _numpy_network(self, r: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.head.score_numpy(r, z) if self.head is not None else np.minimum((r * r).mean(axis=1), LOSS_CAP)

    def explain_numpy(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-feature squared residuals and the network's raw score of each record, from
        one float64 forward pass (attribution of a window's alarms: a few records, where
        torch's per-call cost would dominate). None when the backbone has no numpy form."""
        net = self._numpy_net()
        if net is None:
            return None
        r, z = net.forward(X)
        return r * r, self._numpy_network(r, z)

    def score_numpy(self, X: np.ndarray) -> np.ndarray | None:
        """``score`` from a float64 numpy copy of the network, taken after the model last
        changed: a record or a few at a time without torch's per-call cost. Equal to
        ``score`` up to float32 rounding (tests/test_detectors_one.py). None when the
        backbone has no numpy form: use ``score``."""
        net = self._numpy_net()
        if net is None:
            return None
        return self._combined(X, lambda: self._numpy_network(*net.forward(X)))

    def score_record(self, x: np.ndarray, clip: float) -> float | None:
        """``score_numpy`` of one scaled record ``x`` (d,), cleaned as the detector cleans
        a batch (NaN → 0, clipped to ``±clip``), through the compiled kernel of
        streamad/record_kernel.py: equal to ``score_numpy`` up to float64 rounding. None
        for a trainer the kernel does not cover (no numpy form of the backbone, another
        head, histograms of random directions): use ``score_numpy`` or ``score``. The
        feature histograms' bins are read by a second compiled call."""
        if self._record is None or self._record[0] != self.revision:
            self._record = (self.revision, self._kernel())
        kernel = self._record[1]
        if kernel is None:
            return None
        g, h = self.gaussian, self.projections
        if (g is not None or h is not None) and self.n_seen == 0:
            return 0.0  # self.neutral
        record_scores, p, sizes = kernel
        raw, dist = record_scores(x, clip, p, sizes)
        if g is None and h is None:
            return float(self._calibrated(np.array([raw]))[0])
        # As _combined: component_scores, the combiner, the histograms' score added.
        z_g = 0.0 if g is None else self.combiner.gauss_weight * g.cal.one(dist)
        z_n = self.ncal.one(raw) if self.combiner.uses_network or g is None else 0.0
        score = self.combiner.one(z_n, z_g)
        if h is not None:
            score += self.combiner.proj_weight * h.cal.one(h.model.score_record(x, clip))
        return score

    def _kernel(self) -> tuple[Callable[..., tuple[float, float]], np.ndarray, np.ndarray] | None:
        """The compiled kernel and its arguments after ``x`` and ``clip``, as of the
        model's last change (None: the kernel does not cover this trainer)."""
        from streamad.record_kernel import ACTIVATIONS, pack, record_scores  # numba: imported on first use

        net = self._numpy_net()
        head = self.head
        h = self.projections
        if net is None or net.activation not in ACTIVATIONS or not (head is None or type(head) is DensityHead):
            return None
        if h is not None and h.model.proj is not None:
            return None  # random directions (LODA): the batch path
        g = self.gaussian
        return record_scores, *pack(
            net.arrays,
            net.activation,
            inv_var=None if head is None else head._inv_var64,
            nu=0.0 if head is None else float(head.nu),
            latent=(float(head.latent_weight), head._mu64, head._prec64) if head is not None and head._latent else None,
            gauss=None if g is None else (g.model.mean, g.model.precision),
            loss_cap=float(LOSS_CAP),
        )

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        after = self.calibration.network_after
        if after is None or self.hist.n_seen < after:
            return raw
        med, mad = self.network_calibration()
        return (np.log1p(np.maximum(raw, 0.0)) - med) / mad

    def network_calibration(self) -> tuple[float, float]:
        """Median and MAD of the log-scores of LOE-normal records so far ((0, 1) before any)."""
        if self._calibration is None:
            med, mad = self.hist.median_mad()
            if not (np.isfinite(med) and np.isfinite(mad)):
                med, mad = 0.0, 1.0
            self._calibration = (float(med), float(max(mad, 1e-6)))
        return self._calibration

    # -- learning --------------------------------------------------------------------------

    @property
    def in_warmup(self) -> bool:
        return self.n_seen < self.warmup_until

    @property
    def loe_active(self) -> bool:
        return self.n_trained >= self.loe_from

    def learn(self, X: np.ndarray) -> tuple[list[StepReport], bool]:
        """Queue a window and make the steps it is due; returns the steps' reports and
        whether the trainer was warming up."""
        X = np.asarray(X, dtype=np.float32)
        warm = self.in_warmup
        self.n_seen += len(X)
        self.revision += 1
        if len(X):
            self.backbone.observe((X != 0).any(axis=0))
            if self.gaussian is not None:
                self.gaussian.fit_prior(self.backbone.n_varied)
            self.pending.append(X)
            self.n_pending += len(X)
        reports: list[StepReport] = []
        if warm:
            n_steps = max(1, self.warmup_target(self.n_seen - self.warmup_start) - self.warmup_done)
            for _ in range(n_steps):
                reports.append(self._step(self._take_fresh(self.batch_size), fill=True))
            self.warmup_done += n_steps
            return reports, True
        fresh_per_step = max(1, int(round(self.batch_size * (1.0 - self.replay_share))))
        # After the warm-up, a step takes ``train_share`` of the records it consumes
        # (evenly spaced); the rest were scored and are not trained on.
        while True:
            per_step = max(fresh_per_step, int(round(fresh_per_step / self.share)))
            if self.n_pending < per_step:
                break
            fresh = self._take_fresh(per_step)
            if per_step > fresh_per_step:
                fresh = fresh[np.linspace(0, per_step - 1, fresh_per_step).round().astype(int)]
            report = self._step(fresh, fill=self.replay_share > 0)
            reports.append(report)
            self._settle(report.loss)
        return reports, False

    #: Running means of the step losses (half-lives in steps), and the bands around the
    #: slow one: the loss "has stopped falling" while the fast mean stays above the slow
    #: mean less FALL of it, and "rises" once the fast one is RISE above it.
    FAST_STEPS, SLOW_STEPS, FALL, RISE = 8.0, 64.0, 0.10, 0.25

    def _settle(self, loss: float) -> None:
        """Adapt the share of records trained on to how the loss moves (off without
        ``Schedule.settled_share``): a model that has learned what the stream shows
        needs fewer steps to keep up with it, and a rising loss needs them all again."""
        floor = self.schedule.settled_share
        if floor is None or floor >= self.schedule.train_share or loss != loss:
            return
        if self.loss_slow != self.loss_slow:
            self.loss_fast = self.loss_slow = loss
            return
        self.loss_fast += (1.0 - 0.5 ** (1.0 / self.FAST_STEPS)) * (loss - self.loss_fast)
        self.loss_slow += (1.0 - 0.5 ** (1.0 / self.SLOW_STEPS)) * (loss - self.loss_slow)
        band = abs(self.loss_slow)
        if self.loss_fast > self.loss_slow + self.RISE * band:
            self.share, self.flat_steps = self.schedule.train_share, 0
        elif self.loss_fast >= self.loss_slow - self.FALL * band:
            self.flat_steps += 1
            if self.flat_steps >= self.schedule.settle_steps:
                self.share, self.flat_steps = max(floor, self.share / 2.0), 0
        else:
            self.flat_steps = 0

    def warmup_target(self, n: int) -> int:
        """Steps the warm-up should have made after ``n`` records, whatever the window
        sizes: ``warmup_epochs`` passes, plus ``warmup_boost`` steps per doubling of the
        data (front-loaded: little data seen many times, so even a 129-record stream
        gets a trained model)."""
        s = self.schedule
        return int(s.warmup_epochs * n / self.batch_size + s.warmup_boost * math.log2(1.0 + n / 8.0))

    def _step(self, fresh: np.ndarray, fill: bool) -> StepReport:
        """One optimiser step on ``fresh`` (topped up from the replay memory when ``fill``)."""
        n_fresh = len(fresh)
        batch = self._batch(fresh, fill)
        if batch is None:
            return StepReport(loss=float("nan"), flag_rate=0.0, ess=1.0, n_fresh=0)
        x = self.tensor(batch)
        self.backbone.setup(x)
        fwd = self.backbone.forward_train(x)
        losses, scores, residuals = self._scores(fwd, x, n_fresh)
        labels = self._labels(fwd, losses, scores, n_fresh)
        z = np.log1p(np.maximum(scores, 0.0))  # the histograms' space
        self._update_head(residuals, labels.flagged)
        w, ess = self._weights(z, labels.flagged)
        loss = self._descend(fwd, labels, w)
        self._absorb(fresh, z, ~labels.flagged[:n_fresh])
        return StepReport(loss=float(loss.detach()), flag_rate=float(labels.flagged.mean()), ess=ess, n_fresh=n_fresh)

    def _batch(self, fresh: np.ndarray, fill: bool) -> np.ndarray | None:
        """The fresh records, topped up from the replay memory when ``fill``."""
        parts = [fresh] if len(fresh) else []
        if fill and len(fresh) < self.batch_size:
            old = self._replayed(self.batch_size - len(fresh))
            if old is not None:
                parts.append(old)
        if not parts:
            return None
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _scores(self, fwd: Forward, x: torch.Tensor, n_fresh: int) -> tuple[np.ndarray, np.ndarray, tuple[torch.Tensor, torch.Tensor] | None]:
        """``L_n`` of the batch, the detection scores and, with a head, the residuals."""
        losses = fwd.score.double().cpu().numpy()
        if self.head is None:
            return losses, losses, None
        residuals = self.backbone.train_residuals(fwd, x)
        # The histogram needs the fresh records' scores; the whole batch's only when the
        # E-step or the importance weights read them (warm-up steps are mostly replay,
        # so this saves most of the head's cost there).
        n = len(losses) if self.labeler.rank == "score" or self.weights is not None else n_fresh
        r, zl = residuals
        scores = self.head.score(r[:n], zl[:n]).double().cpu().numpy() if n else np.empty(0)
        return losses, scores, residuals

    def _labels(self, fwd: Forward, losses: np.ndarray, scores: np.ndarray, n_fresh: int) -> LatentLabels:
        """LOE's E-step, once the labeller's warm-up is over (everyone normal before)."""
        n = len(losses)
        if not self.loe_active:
            return LatentLabels(np.ones(n), np.zeros(n), np.zeros(n, dtype=bool))
        if self.head is not None and self.labeler.rank == "score":
            rank = scores
        else:
            rank = losses if fwd.la is None else losses - fwd.la.detach().double().cpu().numpy()
        labels = self.labeler.label(rank)
        self.labeler.observe(rank[:n_fresh])
        return labels

    def _update_head(self, residuals: tuple[torch.Tensor, torch.Tensor] | None, flagged: np.ndarray) -> None:
        """The density head's statistics follow the LOE-normal records of the batch."""
        if self.head is not None and residuals is not None:
            self.head.update(*residuals, ~flagged if flagged.any() else None)

    def _weights(self, z: np.ndarray, flagged: np.ndarray) -> tuple[np.ndarray, float]:
        """Importance weights of the LOE-normal records (1 for the rest), and their ESS."""
        w = np.ones(len(flagged))
        if self.weights is None:
            return w, 1.0
        keep = ~flagged
        w[keep], ess = self.weights.weights(z[keep], self.hist)
        return w, ess

    def _descend(self, fwd: Forward, labels: LatentLabels, w: np.ndarray) -> torch.Tensor:
        """One optimiser step on the weighted losses; the backbone sets the gradients."""
        coef_n = torch.as_tensor(labels.normal * w, dtype=fwd.ln.dtype, device=self.device)
        coef_a = torch.as_tensor(labels.anomalous, dtype=fwd.ln.dtype, device=self.device) if fwd.la is not None and labels.anomalous.any() else None
        loss = self.backbone.gradients(fwd, coef_n, coef_a, self.lamp)
        self.optimizer.step()
        self.steps += 1
        return loss

    def _absorb(self, fresh: np.ndarray, z: np.ndarray, normal: np.ndarray) -> None:
        """The fresh LOE-normal records (and their scores) join the histograms, the
        Gaussian and the replay memory; anomalies never do."""
        n_fresh = len(fresh)
        self.n_trained += n_fresh
        if n_fresh:
            self.hist.update(z[:n_fresh][normal])
            self._calibration = None
            self.ncal.refresh()  # it reads self.hist
            if self.gaussian is not None:
                self.gaussian.absorb(fresh, normal)
            if self.projections is not None:
                self.projections.absorb(fresh, normal)
        self._remember(fresh[normal])

    def _take_fresh(self, n: int) -> np.ndarray:
        if self.n_pending == 0:
            return np.empty((0, 0), dtype=np.float32)
        allx = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        take, rest = allx[:n], allx[n:]
        self.pending = [rest] if len(rest) else []
        self.n_pending = len(rest)
        return take

    def _replayed(self, n: int) -> np.ndarray | None:
        if n <= 0 or self.memory is None or self.memory_size == 0:
            return None
        rng = np.random.default_rng((self.seed, self.steps))
        idx = rng.integers(0, self.memory_size, size=min(n, self.memory_size))
        return self.memory[idx]

    def _remember(self, X: np.ndarray) -> None:
        size = self.schedule.replay
        if size <= 0 or len(X) == 0:
            return
        if self.memory is None:
            self.memory = np.zeros((size, X.shape[1]), dtype=np.float32)
        X = X[-size:]
        idx = (self.memory_next + np.arange(len(X))) % size
        self.memory[idx] = X
        self.memory_next = int((self.memory_next + len(X)) % size)
        self.memory_size = min(size, self.memory_size + len(X))

    # -- drift and state -----------------------------------------------------------------

    def reopen_warmup(self) -> None:
        """Treat the stream as young again: more steps per window, blind LOE, fresh
        histograms (the old score distribution no longer describes the data)."""
        self.warmup_until = self.n_seen + self.schedule.warmup_records
        self.warmup_start = self.n_seen
        self.warmup_done = 0
        self.loe_from = self.n_trained + self.labeler.warmup
        self.share, self.flat_steps = self.schedule.train_share, 0
        self.loss_fast = self.loss_slow = math.nan
        self.labeler.reset()
        self.hist.reset()
        self._calibration = None
        self.ncal.refresh()
        if self.gaussian is not None:
            self.gaussian.reopen(self.schedule.warmup_records)
        if self.projections is not None:
            self.projections.reopen(self.schedule.warmup_records)
        self.revision += 1

    def state_dict(self) -> dict[str, Any]:
        pending = np.concatenate(self.pending) if self.pending else np.empty((0, 0), dtype=np.float32)
        g = self.gaussian
        return {
            "backbone": {k: v.detach().cpu().clone() for k, v in self.backbone.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "labeler": self.labeler.state_dict(),
            "head": None if self.head is None else self.head.state_dict(),
            "hist": self.hist.state_dict(),
            "gauss": None if g is None else g.model.state_dict(),
            "gcal": None if g is None else g.cal.state_dict(),
            "proj": None if self.projections is None else self.projections.state_dict(),
            "counters": {
                "n_seen": self.n_seen,
                "n_trained": self.n_trained,
                "steps": self.steps,
                "warmup_until": self.warmup_until,
                "warmup_start": self.warmup_start,
                "warmup_done": self.warmup_done,
                "loe_from": self.loe_from,
                "memory_next": self.memory_next,
                "memory_size": self.memory_size,
            },
            "settle": {"share": self.share, "loss_fast": self.loss_fast, "loss_slow": self.loss_slow, "flat_steps": self.flat_steps},
            "pending": pending,
            "memory": self.memory,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = {k: torch.as_tensor(v) for k, v in state["backbone"].items()}
        for k, v in self.backbone.state_dict().items():
            if k not in saved and k.endswith("live"):
                saved[k] = torch.ones_like(v)  # saved before features were masked: every feature counted
        self.backbone.load_state_dict(saved)
        self.optimizer = self.optimizer_spec.build(self.backbone.parameters())
        self.optimizer.load_state_dict(state["optimizer"])
        self.labeler.load_state_dict(state["labeler"])
        if self.head is not None:
            self.head.load_state_dict(state["head"])
        self.hist.load_state_dict(state["hist"])
        self._calibration = None
        self.ncal.refresh()
        if self.gaussian is not None:
            self.gaussian.model.load_state_dict(state["gauss"])
            self.gaussian.cal.load_state_dict(state["gcal"])
            self.gaussian.fit_prior(self.backbone.n_varied)
        if self.projections is not None:
            if state.get("proj") is None:
                raise ValueError("the state has no projection histograms: it was made without them")
            self.projections.load_state_dict(state["proj"])
        c = state["counters"]
        self.n_seen = int(c["n_seen"])
        self.n_trained = int(c["n_trained"])
        self.steps = int(c["steps"])
        self.warmup_until = int(c["warmup_until"])
        self.warmup_start = int(c["warmup_start"])
        self.warmup_done = int(c["warmup_done"])
        self.loe_from = int(c["loe_from"])
        self.memory_next = int(c["memory_next"])
        self.memory_size = int(c["memory_size"])
        settle = state.get("settle") or {}  # states from before the adaptive share: at train_share
        self.share = float(settle.get("share", self.schedule.train_share))
        self.loss_fast = float(settle.get("loss_fast", math.nan))
        self.loss_slow = float(settle.get("loss_slow", math.nan))
        self.flat_steps = int(settle.get("flat_steps", 0))
        pending = np.asarray(state["pending"], dtype=np.float32)
        self.pending = [pending] if pending.size else []
        self.n_pending = len(pending) if pending.size else 0
        mem = state["memory"]
        self.memory = None if mem is None else np.asarray(mem, dtype=np.float32).copy()
        self.revision += 1
