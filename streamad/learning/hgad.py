"""HGAD's hierarchical Gaussian-mixture prior on a flow, trained window by window
(Yao et al., "Hierarchical Gaussian Mixture Normalizing Flow Modeling for Unified
Anomaly Detection", ECCV 2024; methods.md §4). Imports torch: the detector
(streamad/detectors/hgad.py) loads this module when it first builds its model.

A ``Flow`` (learning/flow.py) maps each record to a latent ``z`` (D = d dimensions).
Each class ``y`` (a record key, learning/keyclasses.py) has a main centre ``mu_y`` and
``M`` intra-class centres ``mu_y`` and ``mu_y + delta_{y,m}`` (m = 1 .. M-1) with
weights ``softmax(phi_y)``. With ``a_y(z) = -|z - mu_y|^2 / 2 + log pi_y``, per record of
class ``c`` (the paper's losses, as its code computes them):

- ``L_g  = -(logsumexp_y a_y(z) + logdet) / D``: likelihood under the inter-class
  mixture;
- ``L_mi = sum_y ytilde_y (log softmax_y a(z) - log pi_y)``, maximised: mutual information
  between ``z`` and its class, ``ytilde`` the one-hot class smoothed by
  ``smoothing`` (0.005: see below);
- ``L_e  = entropy of softmax_y(-|z - mu_y|^2 / 2)``, minimised: each latent near one centre;
- once class ``c`` has learned ``intra_warmup`` records (the paper's warm-up: inter-class
  losses first), ``L_intra = -(logsumexp_m (-|z - mu_{c,m}|^2 / 2 + log pi_{c,m}) + logdet) / D``
  with ``mu_c`` detached (the paper's code), and ``L_z = -log sigmoid(log p_intra(x | c) / D)``.

``loss = L_g - mi_weight * L_mi + entropy_weight * L_e [+ L_intra + L_z]``, averaged
over the records LOE keeps.

Ours, for a stream (**ours** in methods.md §4):

- **Mixture weights** ``pi_y`` are the class's share of the decayed counts of records
  (half-life ``count_half_life`` records), not learned: the classes are known.
- **A new class** gets its main centre at the mean latent of its first records (under
  the flow as it is), and its intra-class offsets ``delta`` from a normal draw of
  the seed and the class index: no centre is moved, so the others never collapse,
  however many classes there are per dimension (the paper's scaled one-hot
  initialisation needs D >= classes, and sets every centre to 0 otherwise).
- **Score**: ``-log p_intra(x | c) / D`` (the main centre alone while the class is in
  its warm-up), read against the running quantiles of the class's own scores
  (``ClassScores``). A key the table does not know is scored against the class it
  resembles most, on the global statistics.
- **Label smoothing** 0.005, not the paper's 0.02. ``L_mi`` is not divided by ``D``
  as ``L_g`` is, and its smoothing part asks every record for a share ``smoothing / K``
  of each other class: a pull of the record's latent towards every other class's
  centre, weighted by ``1 / sigma_y^2`` of that class's own (learned, narrow) scales and
  summed over the ``D`` latent dimensions. Its weight against the likelihood grows with
  ``D`` and with how far apart the classes are in units of their spreads. On SKAB's 35
  devices with the temporal stage on (37 live columns) it was the loss: median 70 to
  320 a record against 4 to 30 for ``L_g``; held off the centres (the flow alone pulled)
  it did as much harm, so it works through the shared flow, mapping each device's
  records towards the others' centres (methods.md §4, benchmarks/results/hgad_devices.md).
- **LOE** (learning/loe.py), per optimiser step: the E-step ranks the batch by the
  per-record loss scoring reads (``-log p_intra / D``, normalised per class, so that a
  class whose records are harder by nature does not draw every flag) and flags those
  above the running ``1 - alpha`` quantile of the rankings before (``estep="running"``,
  at most ``2 alpha`` of the batch; ``"window"``: the top ``alpha`` of every batch, as
  the paper). The window E-step drops the tail of every batch, anomalous or not: with
  the temporal stage's derived columns (jumps, drift: heavy-tailed, kurtosis up to 140
  on SKAB) that tail is mostly normal records the flow then never learns, and they score
  high; flagged records are dropped from the step (LOE's "refine": a flow has no
  bounded loss for "this is anomalous"; pushing a record's likelihood down without bound
  would let the flow spend its capacity there), and they never join the score
  histograms or the replay memory.
- **Schedule** as the window trainer's (learning/trainer.py): while the stream is young
  (``warmup_records``), several steps per window on its records topped up from a
  replay memory; after it, one step per ``batch_size`` records.

Randomness comes from ``numpy.random.default_rng((seed, steps))`` and generators
seeded by ``(seed, class)``, so a checkpoint continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from streamad.histogram import DecayedHistogram
from streamad.learning.adam import Adam
from streamad.learning.flow import Flow
from streamad.learning.keyclasses import ClassScores, ClassTable
from streamad.learning.loe import LatentLabeler
from streamad.learning.weights import ImportanceWeights

GCONST = -0.5 * math.log(2.0 * math.pi)
#: Scores above their class's median + STATS_CUT spreads count at that level in its statistics.
STATS_CUT = 3.0


@dataclass(frozen=True)
class HgadConfig:
    """Everything an ``HgadTrainer`` is built from (the detector's parameters)."""

    max_classes: int = 64
    centres_per_class: int = 10
    blocks: int = 4
    hidden: int = 64
    clamp: float = 2.0
    mi_weight: float = 1.0
    smoothing: float = 0.005
    entropy_weight: float = 1.0
    intra_warmup: int = 128
    lr: float = 2e-3
    batch_size: int = 256
    warmup_records: int = 1024
    warmup_epochs: float = 8.0
    warmup_boost: float = 16.0
    replay: int = 1024
    count_half_life: float = 10_000.0
    score_half_life: float = 1000.0
    normalize: bool = True
    class_scales: bool = True
    weights: bool = False
    seed: int = 0


@dataclass
class HgadStep:
    loss: float
    flag_rate: float
    n_fresh: int


class Prior(nn.Module):
    """Class centres ``mu`` (G, D), intra-class offsets ``delta`` (G, M-1, D), intra-class
    weights ``phi`` (G, M) and, with ``scales``, each class's log-scale per latent
    dimension (G, D), floored at ``log(min_scale)``. The densities count only the live
    dimensions (``live``, the flow's: features that have varied)."""

    def __init__(self, max_classes: int, centres: int, d: int, scales: bool = True, min_scale: float = 0.01) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(max_classes, d))
        self.delta = nn.Parameter(torch.zeros(max_classes, centres - 1, d))
        self.phi = nn.Parameter(torch.zeros(max_classes, centres))
        self.scales = scales
        self.log_min = math.log(min_scale)
        self.log_sigma = nn.Parameter(torch.zeros(max_classes, d), requires_grad=scales)
        self.register_buffer("live", torch.ones(d))

    live: torch.Tensor  # a buffer (register_buffer), declared for type checkers

    def ls(self, c: torch.Tensor | slice) -> torch.Tensor:
        """Log-scales of classes ``c`` (zeros without ``scales``, and on dead dimensions)."""
        return self.log_sigma[c].clamp_min(self.log_min) * self.live

    def inter(self, z: torch.Tensor, K: int) -> torch.Tensor:
        """``log N(z; mu_y, sigma_y^2) - D log(2 pi) / 2`` for the first ``K`` classes (n, K)."""
        ls = self.ls(slice(0, K))
        d2 = ((z.unsqueeze(1) - self.mu[:K].unsqueeze(0)) * (torch.exp(-ls) * self.live).unsqueeze(0)).square().sum(dim=2)
        return -0.5 * d2 - ls.sum(dim=1)

    def main(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The same, for each record's own class's main centre (n,)."""
        ls = self.ls(c)
        return -0.5 * ((z - self.mu[c]) * torch.exp(-ls) * self.live).square().sum(dim=1) - ls.sum(dim=1)

    def centres(self, c: torch.Tensor, detach_main: bool = False) -> torch.Tensor:
        """Intra-class centres of each record's class (n, M, D)."""
        main = self.mu[c]
        if detach_main:
            main = main.detach()
        return torch.cat([main.unsqueeze(1), main.unsqueeze(1) + self.delta[c]], dim=1)

    def intra(self, z: torch.Tensor, c: torch.Tensor, detach_main: bool = False) -> torch.Tensor:
        """``log sum_m pi_{c,m} N(z; mu_{c,m}, sigma_c^2) - D log(2 pi) / 2`` (n,), the main
        centre detached with ``detach_main`` (the paper's intra-class loss)."""
        ls = self.ls(c)
        d2 = ((z.unsqueeze(1) - self.centres(c, detach_main)) * (torch.exp(-ls) * self.live).unsqueeze(1)).square().sum(dim=2)
        return torch.logsumexp(-0.5 * d2 + torch.log_softmax(self.phi[c], dim=1), dim=1) - ls.sum(dim=1)


class HgadTrainer:
    """The flow, the prior, the class table and the score statistics of one detector."""

    def __init__(self, d: int, config: HgadConfig, labeler: LatentLabeler, device: str = "cpu") -> None:
        self.d = d
        self.cfg = config
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        g = torch.Generator().manual_seed(int(config.seed))
        self.flow = Flow(d, config.blocks, config.hidden, config.clamp, generator=g).to(self.device)
        self.prior = Prior(config.max_classes, config.centres_per_class, d, scales=config.class_scales).to(self.device)
        # No feature has varied yet: the density counts none (``observe``).
        self.flow.live.zero_()
        self.prior.live.zero_()
        self.optimizer = self._optimizer()
        self.labeler = labeler
        # Importance weights (methods.md §2), off by default: read off a histogram of the
        # class-standardised scores of LOE-normal records, as it was before the batch.
        self.iw = ImportanceWeights() if config.weights else None
        self.iw_hist = DecayedHistogram(bins=48, decay=0.99, min_init=32)
        self.table = ClassTable(config.max_classes)
        self.scores = ClassScores(config.max_classes, half_life=config.score_half_life, global_half_life=10 * config.score_half_life)
        self.counts = np.zeros(config.max_classes)  # decayed records per class: the mixture weights
        self.seen = np.zeros(config.max_classes, dtype=np.int64)  # records learned per class
        self.class_done = np.zeros(config.max_classes, dtype=np.int64)  # warm-up steps made for each class
        self.n_seen = 0
        self.young_share = 1.0
        self.steps = 0
        self.warmup_done = 0
        self.pending_x: list[np.ndarray] = []
        self.pending_c: list[np.ndarray] = []
        self.memory_x: np.ndarray | None = None
        self.memory_c: np.ndarray | None = None
        self.memory_next = 0
        self.memory_size = 0

    def _optimizer(self) -> Adam:
        # As the paper's code: the centres learn three times faster than the flow.
        lr = self.cfg.lr
        groups: list[dict[str, Any]] = [
            {"params": list(self.flow.parameters())},
            {"params": [self.prior.mu, self.prior.delta, self.prior.log_sigma], "lr": 3.0 * lr},
            {"params": [self.prior.phi]},
        ]
        return Adam(groups, lr=lr, betas=(0.95, 0.99))

    # -- classes -----------------------------------------------------------------------

    @property
    def n_classes(self) -> int:
        return self.table.n_classes

    @property
    def n_live(self) -> int:
        """Features that have varied: the dimensions the density counts."""
        return int(self.flow.live.sum().item())

    @property
    def D(self) -> int:
        """What a log-density is divided by: the live dimensions (1 when none is)."""
        return max(self.n_live, 1)

    def observe(self, X: np.ndarray) -> None:
        """Mark the features that vary in ``X`` (scaled: a constant is 0) as live, for
        good. A feature that never varied adds nothing to any score or contribution,
        so a constant stream scores 0 throughout, whatever the weights learn."""
        varied = torch.as_tensor((X != 0).any(axis=0), device=self.device)
        live = self.flow.live.bool().logical_or(varied).float()
        self.flow.live.copy_(live)
        self.prior.live.copy_(live)

    def tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=self.device)

    def log_pi(self) -> torch.Tensor:
        """Log mixture weights of the classes in use, from their decayed counts."""
        c = self.counts[: self.n_classes] + 1e-3
        return self.tensor(np.log(c / c.sum()))

    def _nearest(self, z: torch.Tensor) -> int:
        """The class whose posterior is highest on average over the latents ``z``."""
        K = self.n_classes
        a = self.prior.inter(z, K) + self.log_pi()
        return int(torch.log_softmax(a, dim=1).mean(dim=0).argmax())

    def classes_for(self, X: np.ndarray, keys: Sequence[str | None] | None, assign: bool, z: torch.Tensor | None = None) -> np.ndarray:
        """Each record's class. Keys not in the table: with ``assign`` they get a class
        (a new one at the mean latent of their records here, or the nearest one when
        every class is taken); without, the nearest class (-1 when there is none)."""
        n = len(X)
        if self.cfg.max_classes == 1:
            if assign and self.n_classes == 0:
                self._activate(self.table.assign(None), X)
            return np.zeros(n, dtype=np.int64) if self.n_classes else np.full(n, -1, dtype=np.int64)
        keys = [None] * n if keys is None else keys
        cls = self.table.lookup(keys)
        if (cls >= 0).all():
            return cls
        unknown = np.flatnonzero(cls < 0)
        groups: dict[str | None, list[int]] = {}
        for i in unknown.tolist():
            groups.setdefault(keys[i], []).append(i)
        if z is None and (self.n_classes or assign):
            with torch.no_grad():
                z = self.flow(self.tensor(X))[0]
        for key, idx in groups.items():
            if assign:
                joins = None
                if self.table.full:
                    assert z is not None
                    joins = self._nearest(z[idx])
                before = self.n_classes
                c = self.table.assign(key, joins)
                if self.n_classes > before:
                    assert z is not None
                    self._activate(c, X[idx], z[idx])
            else:
                c = self._nearest(z[idx]) if self.n_classes and z is not None else -1
            cls[idx] = c
        return cls

    @torch.no_grad()
    def _activate(self, c: int, X: np.ndarray, z: torch.Tensor | None = None) -> None:
        """A new class: its centre at the mean latent of its first records, its
        intra-class offsets drawn from (seed, class); no other centre moves."""
        if z is None:
            z = self.flow(self.tensor(X))[0]
        self.prior.mu[c] = z.mean(dim=0)
        if self.prior.scales and len(z) > 1:
            # its spread too: a quiet device starts with its own narrow Gaussian
            self.prior.log_sigma[c] = torch.log(z.std(dim=0).clamp_min(math.exp(self.prior.log_min)))
        g = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + c + 1)
        self.prior.delta[c] = torch.randn(self.prior.delta.shape[1:], generator=g).to(self.device)
        self.prior.phi[c] = 0.0

    # -- scores ------------------------------------------------------------------------

    def raw_scores(self, z: torch.Tensor, logdet: torch.Tensor, cls: np.ndarray) -> torch.Tensor:
        """``-log p(x | class) / D``: the intra-class mixture once the class is past its
        warm-up, its main centre before, a standard normal for records of no class."""
        D, n = self.D, len(cls)
        const = self.n_live * GCONST
        if self.n_live == 0:
            return torch.zeros(n, device=z.device, dtype=z.dtype)  # every record alike: nothing has varied
        out = torch.empty(n, device=z.device, dtype=z.dtype)
        known = cls >= 0
        if (~known).any():
            u = torch.as_tensor(np.flatnonzero(~known), device=z.device)
            out[u] = -(const - 0.5 * (z[u] * self.flow.live).square().sum(dim=1) + logdet[u]) / D
        if known.any():
            k = np.flatnonzero(known)
            ck = cls[k]
            ready = self.seen[ck] >= self.cfg.intra_warmup
            kt = torch.as_tensor(k, device=z.device)
            ct = torch.as_tensor(ck, device=z.device)
            if ready.any():
                rt, rc = kt[torch.as_tensor(ready)], ct[torch.as_tensor(ready)]
                out[rt] = -(const + self.prior.intra(z[rt], rc) + logdet[rt]) / D
            if (~ready).any():
                yt, yc = kt[torch.as_tensor(~ready)], ct[torch.as_tensor(~ready)]
                out[yt] = -(const + self.prior.main(z[yt], yc) + logdet[yt]) / D
        return out

    def normalized(self, raw: np.ndarray, cls: np.ndarray) -> np.ndarray:
        return self.scores.normalize(raw, cls) if self.cfg.normalize else raw

    @torch.no_grad()
    def score(self, X: np.ndarray, keys: Sequence[str | None] | None) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        keys = [None] * len(X) if keys is None else keys
        z, logdet = self.flow(self.tensor(X))
        cls = self.classes_for(X, keys, assign=False, z=z)
        raw = self.raw_scores(z, logdet, cls).double().cpu().numpy()
        # A key the table does not know is too young for statistics of its own.
        known = self.table.lookup(keys) >= 0 if self.cfg.max_classes > 1 else cls >= 0
        return self.normalized(raw, np.where(known, cls, -1))

    def contributions(self, X: np.ndarray, keys: Sequence[str | None] | None, steps: int = 8) -> np.ndarray:
        """Per-feature shares of each record's score: integrated gradients of the raw
        score from the nearest intra-class centre of its class, brought back to feature
        space through the inverse flow, to the record (negative parts clipped). A
        feature that never varied starts the path at its own value: it gets 0."""
        if self.n_live == 0:
            return np.zeros(np.shape(X))
        x = self.tensor(X)
        live = self.flow.live
        with torch.no_grad():
            z, logdet = self.flow(x)
            cls = self.classes_for(X, keys, assign=False, z=z)
            cls_t = torch.as_tensor(np.maximum(cls, 0), device=self.device)
            centres = self.prior.centres(cls_t)
            if self.n_classes:
                scaled = (z.unsqueeze(1) - centres) * (torch.exp(-self.prior.ls(cls_t)) * live).unsqueeze(1)
                nearest = scaled.square().sum(dim=2).argmin(dim=1)
                ref_z = centres[torch.arange(len(z)), nearest]
                ref_z = torch.where(torch.as_tensor(cls >= 0, device=self.device).unsqueeze(1), ref_z, torch.zeros_like(ref_z))
            else:
                ref_z = torch.zeros_like(z)
            ref = self.flow.inverse(torch.where(live.bool(), ref_z, z))  # the flow passes dead features unchanged
        total = torch.zeros_like(x)
        with torch.enable_grad():
            for k in range(steps):
                xi = (ref + (k + 0.5) / steps * (x - ref)).requires_grad_(True)
                zi, ldi = self.flow(xi)
                s = self.raw_scores(zi, ldi, cls).sum()
                (grad,) = torch.autograd.grad(s, xi)
                total += grad
        ig = (x - ref) * total / steps
        return ig.clamp_min(0.0).double().cpu().numpy()

    # -- learning ----------------------------------------------------------------------

    @property
    def in_warmup(self) -> bool:
        return self.n_seen < self.cfg.warmup_records

    def warmup_target(self, n: int) -> int:
        c = self.cfg
        return int(c.warmup_epochs * n / c.batch_size + c.warmup_boost * math.log2(1.0 + n / 8.0))

    def due_steps(self, present: np.ndarray) -> int:
        """Warm-up steps owed now: to the stream while it is young, and to each class of
        the window while it is young (its first ``warmup_records`` records), so a device
        that joins a running stream trains as hard as a new model would."""
        due = self.warmup_target(self.n_seen) - self.warmup_done if self.in_warmup else 0
        limit = self.warmup_target(self.cfg.warmup_records)
        for c in present.tolist():
            if self.class_done[c] < limit:
                due = max(due, self.warmup_target(min(int(self.seen[c]), self.cfg.warmup_records)) - int(self.class_done[c]))
        return due

    def learn(self, X: np.ndarray, keys: Sequence[str | None] | None) -> list[HgadStep]:
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            return []
        warm = self.in_warmup
        self.observe(X)
        cls = self.classes_for(X, keys, assign=True)
        if self.cfg.count_half_life:
            self.counts *= 0.5 ** (len(X) / self.cfg.count_half_life)
        counts = np.bincount(cls, minlength=self.cfg.max_classes)
        self.counts += counts
        self.seen += counts
        self.n_seen += len(X)
        # The share of this window's records whose class is still young: their scores
        # read statistics that are mostly the stream's, not yet the class's own.
        self.young_share = float((self.seen[cls] < self.cfg.intra_warmup).mean())
        self.pending_x.append(X)
        self.pending_c.append(cls)
        reports = []
        bs = self.cfg.batch_size
        present = np.flatnonzero(counts)
        n_steps = self.due_steps(present)
        if warm or n_steps > 0:
            n_steps = max(1, n_steps)
            for _ in range(n_steps):
                reports.append(self._step(*self._take(bs), fill=True))
            self.warmup_done += n_steps
            self.class_done[present] += n_steps
            return reports
        while sum(len(p) for p in self.pending_x) >= bs:
            reports.append(self._step(*self._take(bs), fill=False))
        return reports

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.pending_x:
            return np.empty((0, self.d), dtype=np.float32), np.empty(0, dtype=np.int64)
        x, c = np.concatenate(self.pending_x), np.concatenate(self.pending_c)
        self.pending_x = [x[n:]] if len(x) > n else []
        self.pending_c = [c[n:]] if len(c) > n else []
        return x[:n], c[:n]

    def _replayed(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        if n <= 0 or self.memory_x is None or self.memory_c is None or self.memory_size == 0:
            return None
        rng = np.random.default_rng((int(self.cfg.seed), self.steps))
        idx = rng.integers(0, self.memory_size, size=min(n, self.memory_size))
        return self.memory_x[idx], self.memory_c[idx]

    def _remember(self, X: np.ndarray, c: np.ndarray) -> None:
        size = self.cfg.replay
        if size <= 0 or len(X) == 0:
            return
        if self.memory_x is None or self.memory_c is None:
            self.memory_x = np.zeros((size, self.d), dtype=np.float32)
            self.memory_c = np.zeros(size, dtype=np.int64)
        X, c = X[-size:], c[-size:]
        idx = (self.memory_next + np.arange(len(X))) % size
        self.memory_x[idx], self.memory_c[idx] = X, c
        self.memory_next = int((self.memory_next + len(X)) % size)
        self.memory_size = min(size, self.memory_size + len(X))

    def losses(self, z: torch.Tensor, logdet: torch.Tensor, c: torch.Tensor, intra: torch.Tensor) -> torch.Tensor:
        """Each record's training loss (see the module docstring)."""
        cfg, D, K = self.cfg, self.D, self.n_classes
        log_pi = self.log_pi()
        plain = self.prior.inter(z, K)
        a = plain + log_pi
        loss = -(torch.logsumexp(a, dim=1) + logdet) / D
        if K > 1:
            if cfg.mi_weight:
                target = torch.full((len(z), K), cfg.smoothing / K, device=z.device)
                target[torch.arange(len(z)), c] += 1.0 - cfg.smoothing
                mi = (target * (torch.log_softmax(a, dim=1) - log_pi)).sum(dim=1)
                loss = loss - cfg.mi_weight * mi
            if cfg.entropy_weight:
                p = torch.log_softmax(plain, dim=1)
                loss = loss + cfg.entropy_weight * -(p.exp() * p).sum(dim=1)
        if bool(intra.any()):
            it = torch.nonzero(intra).squeeze(1)
            lse = self.prior.intra(z[it], c[it], detach_main=True)
            l_intra = -(lse + logdet[it]) / D
            l_z = -torch.nn.functional.logsigmoid((self.n_live * GCONST + lse + logdet[it]) / D)
            loss = loss.index_add(0, it, l_intra + l_z)
        return loss

    def _step(self, fresh_x: np.ndarray, fresh_c: np.ndarray, fill: bool) -> HgadStep:
        n_fresh = len(fresh_x)
        parts_x, parts_c = [fresh_x], [fresh_c]
        if fill and n_fresh < self.cfg.batch_size:
            old = self._replayed(self.cfg.batch_size - n_fresh)
            if old is not None:
                parts_x.append(old[0])
                parts_c.append(old[1])
        bx, bc = np.concatenate(parts_x), np.concatenate(parts_c)
        if len(bx) == 0:
            return HgadStep(float("nan"), 0.0, 0)
        x = self.tensor(bx)
        c = torch.as_tensor(bc, device=self.device)
        z, logdet = self.flow(x)
        with torch.no_grad():
            raw = self.raw_scores(z, logdet, bc).double().cpu().numpy()
        # LOE's E-step on the per-record loss scoring reads, normalised per class.
        ranking = self.scores.normalize(raw, bc)
        labels = self.labeler.label(ranking)
        keep = ~labels.flagged
        intra = torch.as_tensor(self.seen[bc] >= self.cfg.intra_warmup, device=self.device)
        per = self.losses(z, logdet, c, intra)
        wk = keep.astype(np.float64)
        if self.iw is not None and keep.any():
            wk[keep] = self.iw.weights(ranking[keep], self.iw_hist)[0]
        w = torch.as_tensor(wk, dtype=per.dtype, device=self.device)
        loss = (per * w).sum() / w.sum().clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Centres of classes with no record here get no gradient; clip the rest so one
        # wild batch cannot throw the flow out of its range.
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 10.0)
        self.optimizer.step()
        self.steps += 1
        normal = keep[:n_fresh]
        self.scores.update(raw[:n_fresh], fresh_c, cut=STATS_CUT)
        self.labeler.observe(ranking[:n_fresh])
        if self.iw is not None:
            self.iw_hist.update(ranking[:n_fresh][normal])
        self._remember(fresh_x[normal], fresh_c[normal])
        return HgadStep(float(loss.detach()), float(labels.flagged.mean()), n_fresh)

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        px = np.concatenate(self.pending_x) if self.pending_x else np.empty((0, self.d), dtype=np.float32)
        pc = np.concatenate(self.pending_c) if self.pending_c else np.empty(0, dtype=np.int64)
        return {
            "flow": {k: v.detach().cpu().clone() for k, v in self.flow.state_dict().items()},
            "prior": {k: v.detach().cpu().clone() for k, v in self.prior.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "labeler": self.labeler.state_dict(),
            "table": self.table.state_dict(),
            "scores": self.scores.state_dict(),
            "iw_hist": self.iw_hist.state_dict(),
            "counts": self.counts.copy(),
            "seen": self.seen.copy(),
            "class_done": self.class_done.copy(),
            "counters": {
                "n_seen": self.n_seen, "steps": self.steps, "warmup_done": self.warmup_done,
                "memory_next": self.memory_next, "memory_size": self.memory_size,
            },
            "pending_x": px,
            "pending_c": pc,
            "memory_x": self.memory_x,
            "memory_c": self.memory_c,
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.flow.load_state_dict({k: torch.as_tensor(v) for k, v in state["flow"].items()})
        self.prior.load_state_dict({k: torch.as_tensor(v) for k, v in state["prior"].items()})
        self.optimizer = self._optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.labeler.load_state_dict(state["labeler"])
        self.table.load_state_dict(state["table"])
        self.scores.load_state_dict(state["scores"])
        self.iw_hist.load_state_dict(state["iw_hist"])
        self.counts = np.asarray(state["counts"], dtype=np.float64).copy()
        self.seen = np.asarray(state["seen"], dtype=np.int64).copy()
        self.class_done = np.asarray(state["class_done"], dtype=np.int64).copy()
        c = state["counters"]
        self.n_seen, self.steps, self.warmup_done = int(c["n_seen"]), int(c["steps"]), int(c["warmup_done"])
        self.memory_next, self.memory_size = int(c["memory_next"]), int(c["memory_size"])
        px = np.asarray(state["pending_x"], dtype=np.float32)
        pc = np.asarray(state["pending_c"], dtype=np.int64)
        self.pending_x, self.pending_c = ([px], [pc]) if len(px) else ([], [])
        mx, mc = state["memory_x"], state["memory_c"]
        self.memory_x = None if mx is None else np.asarray(mx, dtype=np.float32).copy()
        self.memory_c = None if mc is None else np.asarray(mc, dtype=np.int64).copy()
