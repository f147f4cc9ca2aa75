"""The window trainer: LOE labels, importance weights and LAMP around one backbone.

Per optimiser step (methods.md, "How they compose")::

    Ln, La, s = backbone.outputs(batch)         # one forward pass; s = detection score
    y       = LOE E-step on (s - La), detached
    w       = importance weights of s, from the score histogram before this batch
    loss_i  = y_n * w * lamp(Ln) + y_a * La     # y_n, y_a: weights on L_n and L_a
    step(mean(loss_i)); LOE-normal fresh scores -> histogram and replay memory

The trainer owns THE running score histogram: ``log1p`` of the scores of fresh
LOE-normal records, decayed per step. The importance weights read it, and with
``calibrate`` the detector's scores are reported against it: ``(log1p(s) - median) /
MAD``, from the histogram as it was before the window. A model that keeps learning
shrinks its raw errors as it goes; calibration keeps the scores of early and late
records comparable (one threshold, one ranking over the whole stream) without
changing the order within a window.

Windows and optimiser steps are decoupled so one configuration serves a 129-record
file and a million-record topic, and the per-record cost stays small:

- records wait in ``pending`` until ``batch_size`` of them can make one step;
- while the stream is young (the first ``warmup_records``) the trainer keeps its step
  count on ``warmup_target(n)`` (front-loaded, independent of the window sizes), each
  step on the window's fresh records topped up with replayed earlier ones;
- LOE is blind for the first ``loe_warmup`` records (0 by default: an autoencoder's
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
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from streamad.histogram import DecayedHistogram
from streamad.learning.backbones import Backbone
from streamad.learning.density import DensityHead
from streamad.learning.gaussian import Calibrator, OnlineGaussian, chi2_log_prior
from streamad.learning.lamp import Lamp
from streamad.learning.loe import LatentLabeler
from streamad.learning.weights import ImportanceWeights


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


COMBINE = ("sum", "max", "gauss")  # how the network's and the Gaussian's calibrated scores combine


@dataclass
class StepReport:
    loss: float
    flag_rate: float
    ess: float
    n_fresh: int


class WindowTrainer:
    """Trains ``backbone`` from windows of an unlabelled, contaminated stream."""

    def __init__(
        self,
        backbone: Backbone,
        labeler: LatentLabeler,
        weights: ImportanceWeights | None,
        lamp: Lamp,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        warmup_records: int = 1024,
        warmup_epochs: float = 8.0,
        warmup_boost: float = 16.0,
        loe_warmup: int = 512,
        replay: int = 1024,
        replay_share: float = 0.0,
        train_share: float = 1.0,
        calibrate: bool = True,
        calibrate_after: int = 256,
        autograd: bool = False,
        hist_bins: int = 48,
        hist_decay: float = 0.99,
        seed: int = 0,
        device: str = "cpu",
        head: DensityHead | None = None,
        loe_rank: str = "loss",
        gauss: OnlineGaussian | None = None,
        combine: str = "sum",
        gauss_weight: float = 1.0,
        calibration_floor: float = 0.05,
        gauss_learn: str = "loe",
        calibration_tail: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0.0 <= replay_share < 1.0:
            raise ValueError("replay_share must be in [0, 1)")
        self.device = pick_device(device)
        if head is not None and not backbone.has_residuals:
            raise ValueError(f"a density head needs a backbone with residuals, not {type(backbone).__name__}")
        if loe_rank not in ("loss", "score"):
            raise ValueError(f"loe_rank must be 'loss' or 'score', not {loe_rank!r}")
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {', '.join(COMBINE)}, not {combine!r}")
        if gauss_weight < 0:
            raise ValueError("gauss_weight must be non-negative")
        self.head = head
        self.loe_rank = loe_rank
        self.gauss = gauss
        self.combine = combine
        self.gauss_weight = gauss_weight
        # The Gaussian's own calibration: its LOE-normal scores, as self.hist holds the network's.
        self.gcal = (
            Calibrator(
                bins=hist_bins,
                decay=hist_decay,
                floor=calibration_floor,
                tail=calibration_tail,
                prior=chi2_log_prior(gauss.d, calibration_tail),
            )
            if gauss is not None
            else None
        )
        if gauss_learn not in ("loe", "all"):
            raise ValueError(f"gauss_learn must be 'loe' or 'all', not {gauss_learn!r}")
        self.gauss_learn = gauss_learn
        self.backbone = backbone.to(self.device)
        self.backbone.train()  # no dropout or batch norm: the mode never changes
        self.labeler = labeler
        self.weights = weights
        self.lamp = lamp
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.warmup_records = warmup_records
        self.warmup_epochs = warmup_epochs
        self.warmup_boost = warmup_boost
        self.warmup_start = 0  # n_seen when the current warm-up began
        self.warmup_done = 0  # steps made since then
        self.loe_warmup = loe_warmup
        self.replay = replay
        self.replay_share = replay_share if replay > 0 else 0.0
        if not 0.0 < train_share <= 1.0:
            raise ValueError("train_share must be in (0, 1]")
        self.train_share = train_share
        self.calibrate = calibrate
        self.explicit = backbone.explicit_backward and not autograd
        self.calibrate_after = calibrate_after
        self.seed = seed
        self.hist = DecayedHistogram(bins=hist_bins, decay=hist_decay, min_init=32)
        # The network's calibration reads the histogram above (the trainer updates it).
        self.ncal = Calibrator(floor=calibration_floor, tail=calibration_tail, hist=self.hist)
        self._calibration: tuple[float, float] | None = None
        self.optimizer = self._make_optimizer()
        self.n_seen = 0  # records given to learn()
        self.n_trained = 0  # fresh records consumed by steps
        self.steps = 0
        self.warmup_until = warmup_records  # n_seen below which the stream counts as young
        self.loe_from = loe_warmup  # n_trained from which LOE labels are used
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.memory: np.ndarray | None = None
        self.memory_next = 0
        self.memory_size = 0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.backbone.parameters())
        try:
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    # -- scoring -------------------------------------------------------------------------

    def tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        x = self.tensor(X)
        if self.gauss is not None and self.combine == "gauss":
            return self.component_scores(X, x)[1]
        if self.head is not None:
            raw = self.head.score(*self.backbone.residuals(x)).double().cpu().numpy()
        else:
            raw = self.backbone.score(x).double().cpu().numpy()
        if self.gauss is not None:
            z_net, z_g = self.component_scores(X, x, raw)
            return np.maximum(z_net, z_g) if self.combine == "max" else z_net + z_g
        if not self.calibrate or self.hist.n_seen < self.calibrate_after:
            return raw
        med, mad = self.calibration()
        return (np.log1p(np.maximum(raw, 0.0)) - med) / mad

    @torch.no_grad()
    def component_scores(self, X: np.ndarray, x: torch.Tensor | None = None, raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The network's and the Gaussian's scores, each calibrated against its own
        LOE-normal histogram (the Gaussian's weighted by ``gauss_weight``); with
        ``combine="gauss"`` the network's is zeros and is not computed."""
        assert self.gauss is not None and self.gcal is not None
        z_g = self.gauss_weight * self.gcal(self.gauss.score(X))
        if self.combine == "gauss":
            return np.zeros(len(X)), z_g
        if raw is None:
            x = self.tensor(X) if x is None else x
            raw = (self.head.score(*self.backbone.residuals(x)) if self.head is not None else self.backbone.score(x)).double().cpu().numpy()
        return self.ncal(raw), z_g

    def calibration(self) -> tuple[float, float]:
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
        if len(X):
            self.backbone.observe((X != 0).any(axis=0))
            self._fit_gauss_prior()
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
        per_step = max(fresh_per_step, int(round(fresh_per_step / self.train_share)))
        while self.n_pending >= per_step:
            fresh = self._take_fresh(per_step)
            if per_step > fresh_per_step:
                fresh = fresh[np.linspace(0, per_step - 1, fresh_per_step).round().astype(int)]
            reports.append(self._step(fresh, fill=self.replay_share > 0))
        return reports, False

    def _fit_gauss_prior(self) -> None:
        """The Gaussian's scores are chi-square in the features that have varied (the
        others are exactly 0 and add nothing), so its calibration prior counts only those:
        a stream that never varied then scores a constant, not a prior fading away."""
        n = self.backbone.n_varied
        if self.gauss is None or self.gcal is None or n is None:
            return
        prior = chi2_log_prior(n, self.gcal.tail)
        if prior != self.gcal.prior:
            self.gcal.prior = prior
            self.gcal.refresh()

    def warmup_target(self, n: int) -> int:
        """Steps the warm-up should have made after ``n`` records, whatever the window
        sizes: ``warmup_epochs`` passes, plus ``warmup_boost`` steps per doubling of the
        data (front-loaded: little data seen many times, so even a 129-record stream
        gets a trained model)."""
        return int(self.warmup_epochs * n / self.batch_size + self.warmup_boost * math.log2(1.0 + n / 8.0))

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
        if self.replay <= 0 or len(X) == 0:
            return
        if self.memory is None:
            self.memory = np.zeros((self.replay, X.shape[1]), dtype=np.float32)
        X = X[-self.replay :]
        idx = (self.memory_next + np.arange(len(X))) % self.replay
        self.memory[idx] = X
        self.memory_next = int((self.memory_next + len(X)) % self.replay)
        self.memory_size = min(self.replay, self.memory_size + len(X))

    def _step(self, fresh: np.ndarray, fill: bool) -> StepReport:
        n_fresh = len(fresh)
        parts = [fresh] if n_fresh else []
        if fill and n_fresh < self.batch_size:
            old = self._replayed(self.batch_size - n_fresh)
            if old is not None:
                parts.append(old)
        if not parts:
            return StepReport(loss=float("nan"), flag_rate=0.0, ess=1.0, n_fresh=0)
        batch = np.concatenate(parts) if len(parts) > 1 else parts[0]
        x = self.tensor(batch)
        self.backbone.setup(x)
        if self.explicit:
            ln, la, score, cache = self.backbone.forward_cached(x)
        else:
            ln, la, score = self.backbone.outputs(x)
        ln_np = score.double().cpu().numpy()
        s_np = ln_np  # detection scores: of the whole batch, or of its fresh records only
        if self.head is not None:
            r, zl = self.backbone.cached_residuals(cache) if self.explicit else self.backbone.residuals(x)
            # The histogram needs the fresh records' scores; the whole batch's only when
            # the E-step or the importance weights read them (warm-up steps are mostly
            # replay, so this saves most of the head's cost there).
            n_s = len(batch) if self.loe_rank == "score" or self.weights is not None else n_fresh
            s_np = self.head.score(r[:n_s], zl[:n_s]).double().cpu().numpy() if n_s else np.empty(0)
        loe = self.loe_active
        if loe:
            # The E-step ranks by the training losses (L_n - L_a) by default; with a
            # density head the detection score differs from L_n, and ``loe_rank="score"``
            # ranks by it instead.
            if self.head is not None and self.loe_rank == "score":
                rank = s_np
            else:
                rank = ln_np if la is None else ln_np - la.detach().double().cpu().numpy()
            labels = self.labeler.label(rank)
            self.labeler.observe(rank[:n_fresh])
            normal, anomalous, flagged = labels.normal, labels.anomalous, labels.flagged
        else:
            normal, anomalous, flagged = np.ones(len(batch)), np.zeros(len(batch)), np.zeros(len(batch), dtype=bool)
        z = np.log1p(np.maximum(s_np, 0.0))
        if self.head is not None:
            self.head.update(r, zl, ~flagged if flagged.any() else None)
        if self.weights is not None:
            keep = ~flagged
            w = np.ones(len(batch))
            w_keep, ess = self.weights.weights(z[keep], self.hist)
            w[keep] = w_keep
        else:
            w, ess = np.ones(len(batch)), 1.0
        coef_n = torch.as_tensor(normal * w, dtype=ln.dtype, device=self.device)
        coef_a = torch.as_tensor(anomalous, dtype=ln.dtype, device=self.device) if la is not None and anomalous.any() else None
        if self.explicit:
            with torch.no_grad():
                n = float(len(batch))
                loss_i = coef_n * self.lamp(ln)
                if coef_a is not None:
                    loss_i = loss_i + coef_a * la
                loss = loss_i.mean()
                self.backbone.backward_cached(cache, coef_n * self.lamp.grad(ln) / n, None if coef_a is None else coef_a / n)
        else:
            loss_i = coef_n * self.lamp(ln)
            if coef_a is not None:
                loss_i = loss_i + coef_a * la
            loss = loss_i.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        self.steps += 1
        self.n_trained += n_fresh
        fresh_normal = ~flagged[:n_fresh]
        if n_fresh:
            self.hist.update(z[:n_fresh][fresh_normal])
            self._calibration = None
            self.ncal.refresh()  # it reads self.hist
            if self.gauss is not None and self.gcal is not None:
                # Fresh LOE-normal records only: each enters the Gaussian once, anomalies never.
                xn = (fresh[fresh_normal] if self.gauss_learn == "loe" else fresh).astype(np.float64)
                self.gcal.update(self.gauss.score(xn))
                self.gauss.update(xn)
        self._remember(fresh[fresh_normal])
        return StepReport(loss=float(loss.detach()), flag_rate=float(flagged.mean()), ess=ess, n_fresh=n_fresh)

    # -- drift and state -----------------------------------------------------------------

    def reopen_warmup(self) -> None:
        """Treat the stream as young again: more steps per window, blind LOE, fresh
        histograms (the old score distribution no longer describes the data)."""
        self.warmup_until = self.n_seen + self.warmup_records
        self.warmup_start = self.n_seen
        self.warmup_done = 0
        self.loe_from = self.n_trained + self.loe_warmup
        self.labeler.reset()
        self.hist.reset()
        self._calibration = None
        self.ncal.refresh()
        if self.gauss is not None and self.gcal is not None:
            self.gauss.forget(self.warmup_records)
            self.gcal.reset()

    def state_dict(self) -> dict[str, Any]:
        pending = np.concatenate(self.pending) if self.pending else np.empty((0, 0), dtype=np.float32)
        return {
            "backbone": {k: v.detach().cpu().clone() for k, v in self.backbone.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "labeler": self.labeler.state_dict(),
            "head": None if self.head is None else self.head.state_dict(),
            "hist": self.hist.state_dict(),
            "gauss": None if self.gauss is None else self.gauss.state_dict(),
            "gcal": None if self.gcal is None else self.gcal.state_dict(),
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
            "pending": pending,
            "memory": self.memory,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = {k: torch.as_tensor(v) for k, v in state["backbone"].items()}
        for k, v in self.backbone.state_dict().items():
            if k not in saved and k.endswith("live"):
                saved[k] = torch.ones_like(v)  # saved before features were masked: every feature counted
        self.backbone.load_state_dict(saved)
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.labeler.load_state_dict(state["labeler"])
        if self.head is not None:
            self.head.load_state_dict(state["head"])
        self.hist.load_state_dict(state["hist"])
        self._calibration = None
        self.ncal.refresh()
        if self.gauss is not None and self.gcal is not None:
            self.gauss.load_state_dict(state["gauss"])
            self.gcal.load_state_dict(state["gcal"])
            self._fit_gauss_prior()
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
        pending = np.asarray(state["pending"], dtype=np.float32)
        self.pending = [pending] if pending.size else []
        self.n_pending = len(pending) if pending.size else 0
        mem = state["memory"]
        self.memory = None if mem is None else np.asarray(mem, dtype=np.float32).copy()
