"""Small torch networks with a per-record "normal" loss ``L_n`` (the detection score)
and, where the method has one, an "anomalous" loss ``L_a`` for LOE.

- ``AutoEncoder``: ``L_n`` = mean squared reconstruction error over features. Its
  ``L_a`` (ours) reads ``exp(-L_n)`` as the probability of "normal" and takes
  ``-log(1 - exp(-L_n))``, which pushes a flagged record's error up and is bounded.
- ``DeepSVDD`` (Ruff et al., 2018): ``L_n = |f(x) - c|^2``, ``L_a = 1 / L_n`` (LOE paper),
  bias-free network, centre fixed from the first batch.
- ``NeuTraL`` (NeuTraL-AD, Qiu et al., ICML 2021): ``K`` learned residual transformations
  and a deterministic contrastive loss at temperature 0.1; ``L_n = -(1/K) sum log p_k``
  and ``L_a = -(1/K) sum log(1 - p_k)`` (LOE paper). Its networks are bias-free, so the
  score depends only on the direction of ``x`` from the origin, never on its length:
  feed it records scaled into the positive orthant (min-max), not centred ones.

All of them are built from a ``torch.Generator`` so a seed fixes every weight, and
both losses are clamped: they are unbounded.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> ae = AutoEncoder(4, generator=g)
>>> ln, la = ae.losses(torch.zeros(3, 4))
>>> tuple(ln.shape), bool((ln == 0).all())  # the decoder starts at zero: score = |x|^2 / d
((3,), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from streamad.learning.lamp import Lamp

LOSS_CAP = 1e4  # bound on L_n: the scaler clips inputs, but a loss must never be inf
EPS = 1e-6

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {name!r}") from None


# Derivatives written from an activation's output, for explicit backward passes.
_DERIVATIVE_FROM_OUTPUT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": lambda h: 1.0 - h * h,
    "relu": lambda h: (h > 0).to(h.dtype),
    "leaky_relu": lambda h: torch.where(h > 0, 1.0, 0.1).to(h.dtype),
}


def _fast_tanh(a: torch.Tensor) -> torch.Tensor:
    # tanh(a) = 2 sigmoid(2a) - 1: several times faster than torch.tanh on CPU here.
    return torch.sigmoid(a * 2.0).mul_(2.0).sub_(1.0)


_FAST_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": _fast_tanh,
    "relu": torch.relu,
    "leaky_relu": lambda a: nn.functional.leaky_relu(a, 0.1),
}


# The same activations in numpy, for float64 copies of small networks (``NumpyNet.forward``).
_NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "leaky_relu": lambda a: np.where(a > 0, a, 0.1 * a),
}


def _init_linear(layer: nn.Linear, generator: torch.Generator, zero: bool = False) -> nn.Linear:
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
        else:
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


class NumpyNet(NamedTuple):
    """An autoencoder's weights in float64: ``(w1, b1, w2, b2, w3, b3, w4, b4, live)``,
    each ``w`` inputs × outputs, and the name of its activation."""

    arrays: tuple[np.ndarray, ...]
    activation: str

    def forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(residuals, latent codes)`` of the records of ``X``, in float64 numpy."""
        act = _NUMPY_ACTIVATIONS[self.activation]
        w1, b1, w2, b2, w3, b3, w4, b4, live = self.arrays
        z = act(act(X @ w1 + b1) @ w2 + b2)
        return (act(z @ w3 + b3) @ w4 + b4 - X) * live, z


@dataclass
class Forward:
    """One training forward pass: per-record ``L_n`` and ``L_a`` (None without one), and
    what the backbone's own backward pass needs (None: autograd's graph holds it)."""

    ln: torch.Tensor
    la: torch.Tensor | None
    cache: tuple[torch.Tensor, ...] | None = None

    @property
    def score(self) -> torch.Tensor:
        """The detection score ``L_n`` of each record, detached."""
        return self.ln.detach()


class Backbone(nn.Module):
    """``losses(x)`` gives per-record ``(L_n, L_a)`` (``L_a`` may be None); ``score`` is ``L_n``.

    Training goes through two methods: ``forward_train`` (one forward pass) and
    ``gradients`` (every parameter's ``.grad`` for the weighted loss of that pass). By
    default both use autograd; a backbone may instead run its forward pass without
    autograd and write its gradients by hand (``explicit_backward``), which for a
    network this small is several times cheaper than autograd's bookkeeping. Tests hold
    the two equal. The trainer never needs to know which it is.
    """

    has_anomalous_loss = True
    explicit_backward = False

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.losses(x)[0]

    def forward_train(self, x: torch.Tensor) -> Forward:
        """The forward pass of a training step (default: with autograd)."""
        ln, la = self.losses(x)
        return Forward(ln, la)

    def gradients(self, fwd: Forward, coef_n: torch.Tensor, coef_a: torch.Tensor | None, lamp: Lamp) -> torch.Tensor:
        """Set every parameter's ``.grad`` for ``mean_i(coef_n_i lamp(L_n_i) + coef_a_i L_a_i)``
        (the coefficients are constants) and return that loss (default: autograd)."""
        loss_i = coef_n * lamp(fwd.ln)
        if coef_a is not None:
            assert fwd.la is not None  # coef_a comes only with an anomalous loss
            loss_i = loss_i + coef_a * fwd.la
        loss = loss_i.mean()
        self.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def setup(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from the first training batch (default: none)."""

    def observe(self, varied: np.ndarray) -> None:
        """Features that have varied in the records learned so far (the scaler maps a
        feature that never varied to exactly 0). A backbone whose score would otherwise
        move with a constant input (a reconstruction bias still learning) masks the rest."""

    @property
    def n_varied(self) -> int | None:
        """How many features have varied so far, for backbones that track it."""
        return None

    has_residuals = False

    def residuals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature residuals (n x d) and latent codes (n x k), for backbones that
        reconstruct (``has_residuals``); read by a density head."""
        raise NotImplementedError(f"{type(self).__name__} has no residuals")

    def train_residuals(self, fwd: Forward, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``residuals`` of the batch of a training forward pass."""
        return self.residuals(x)

    def numpy_weights(self) -> NumpyNet | None:
        """A float64 copy of the network's weights as they are now, for scoring a record
        or a few without torch's per-call cost (``NumpyNet.forward``, and the compiled
        one-record path of streamad/record_kernel.py); None for backbones without one."""
        return None

    def feature_contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Per-feature share of each record's score; by default gradient times deviation."""
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            s = self.score(x).sum()
            (g,) = torch.autograd.grad(s, x)
        return (g * x).abs().detach()


def complement_nll(ln: torch.Tensor) -> torch.Tensor:
    """``-log(1 - exp(-ln))``, the loss of "anomalous" when ``exp(-ln)`` is the
    probability of "normal"; bounded by clamping ``ln`` away from 0."""
    return -torch.log(-torch.expm1(-ln.clamp(min=EPS)))


class AutoEncoder(Backbone):
    """``d -> hidden -> latent -> hidden -> d``, score = mean squared reconstruction error.

    The last layer starts at zero, so before any learning the score is the squared
    distance from the scaler's running mean: a sensible detector from the first
    window, and a ranking LOE can use at once (no blind warm-up needed).
    """

    def __init__(
        self,
        n_features: int,
        hidden: int | None = None,
        latent: int | None = None,
        activation: str = "tanh",
        anomalous_loss: str = "complement",
        generator: torch.Generator | None = None,
        explicit_backward: bool = True,
    ) -> None:
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        d = n_features
        h = hidden or 32
        k = latent or max(2, min(4, d // 2))
        self.n_latent = k
        if anomalous_loss not in ("complement", "inverse", "none"):
            raise ValueError(f"anomalous_loss must be complement, inverse or none, not {anomalous_loss!r}")
        self.anomalous_loss = anomalous_loss
        self.has_anomalous_loss = anomalous_loss != "none"
        l1, l2 = _init_linear(nn.Linear(d, h), g), _init_linear(nn.Linear(h, k), g)
        l3, l4 = _init_linear(nn.Linear(k, h), g), _init_linear(nn.Linear(h, d), g, zero=True)
        self.encoder = nn.Sequential(l1, _activation(activation), l2, _activation(activation))
        self.decoder = nn.Sequential(l3, _activation(activation), l4)
        # Activations with a derivative written from their output run the forward pass
        # without autograd (``forward_cached``) for scoring; training then writes its
        # gradients by hand too, unless ``explicit_backward=False`` asks for autograd.
        self._fast = activation in _DERIVATIVE_FROM_OUTPUT
        self.explicit_backward = explicit_backward and self._fast
        self.activation = activation
        self._act = _FAST_ACTIVATIONS.get(activation)
        self._dact = _DERIVATIVE_FROM_OUTPUT.get(activation)
        self._linears = (l1, l2, l3, l4)
        # 1 for features that have varied: a feature that never did contributes no
        # residual, so a constant input scores the same however the decoder's bias moves.
        self.register_buffer("live", torch.zeros(d))

    has_residuals = True
    live: torch.Tensor  # a buffer (register_buffer), declared for type checkers

    def observe(self, varied: np.ndarray) -> None:
        self.live.copy_(self.live.bool().logical_or(torch.as_tensor(varied, device=self.live.device)).float())

    @property
    def n_varied(self) -> int | None:
        return int(self.live.sum().item())

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.decoder(self.encoder(x)) - x) * self.live) ** 2

    @torch.no_grad()
    def residuals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._fast:
            return self.cached_residuals(self.forward_cached(x)[3])
        z = self.encoder(x)
        return (self.decoder(z) - x) * self.live, z

    def cached_residuals(self, cache: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return cache[4], cache[2]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast:
            return self.forward_cached(x)[0]
        return self.losses(x)[0]

    def forward_train(self, x: torch.Tensor) -> Forward:
        if not self.explicit_backward:
            return super().forward_train(x)
        ln, la, _, cache = self.forward_cached(x)
        return Forward(ln, la, cache)

    def train_residuals(self, fwd: Forward, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cached_residuals(fwd.cache) if fwd.cache is not None else self.residuals(x)

    def gradients(self, fwd: Forward, coef_n: torch.Tensor, coef_a: torch.Tensor | None, lamp: Lamp) -> torch.Tensor:
        if fwd.cache is None:
            return super().gradients(fwd, coef_n, coef_a, lamp)
        with torch.no_grad():
            n = float(fwd.ln.shape[0])
            loss_i = coef_n * lamp(fwd.ln)
            if coef_a is not None:
                assert fwd.la is not None  # coef_a comes only with an anomalous loss
                loss_i = loss_i + coef_a * fwd.la
            loss = loss_i.mean()
            self.backward_cached(fwd.cache, coef_n * lamp.grad(fwd.ln) / n, None if coef_a is None else coef_a / n)
        return loss

    def numpy_weights(self) -> NumpyNet | None:
        if self.activation not in _NUMPY_ACTIVATIONS:
            return None
        # Converted by numpy from torch's float32 buffers: the same values as torch's
        # .double(), at half the calls (this runs after every learned window).
        arrays: list[np.ndarray] = []
        for layer in self._linears:
            arrays += [np.array(layer.weight.detach().cpu().numpy().T, dtype=np.float64, order="C"), layer.bias.detach().cpu().numpy().astype(np.float64)]
        arrays.append(self.live.detach().cpu().numpy().astype(np.float64))
        return NumpyNet(tuple(arrays), self.activation)

    @torch.no_grad()
    def forward_cached(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(L_n, L_a, score, cache)`` without autograd; ``cache`` feeds ``backward_cached``."""
        l1, l2, l3, l4 = self._linears
        act = self._act
        assert act is not None
        h1 = act(nn.functional.linear(x, l1.weight, l1.bias))
        z = act(nn.functional.linear(h1, l2.weight, l2.bias))
        h3 = act(nn.functional.linear(z, l3.weight, l3.bias))
        r = (nn.functional.linear(h3, l4.weight, l4.bias) - x) * self.live
        raw = (r * r).mean(dim=1)
        ln = raw.clamp(max=LOSS_CAP)
        la = None
        if self.anomalous_loss == "complement":
            la = complement_nll(ln)
        elif self.anomalous_loss == "inverse":
            la = 1.0 / (ln + 1e-2)
        return ln, la, ln, (x, h1, z, h3, r, raw)

    @torch.no_grad()
    def backward_cached(self, cache: tuple[torch.Tensor, ...], g_n: torch.Tensor, g_a: torch.Tensor | None) -> None:
        """Set every parameter's ``.grad`` for ``loss = sum_i g_n_i * L_n_i + g_a_i * L_a_i``
        (with ``g_n``, ``g_a`` treated as constants per record)."""
        x, h1, z, h3, r, raw = cache
        g = g_n
        if g_a is not None:
            ln = raw.clamp(max=LOSS_CAP)
            if self.anomalous_loss == "complement":
                dla = torch.where(ln > EPS, -1.0 / torch.expm1(ln.clamp(min=EPS)), 0.0)
            else:
                dla = -1.0 / (ln + 1e-2) ** 2
            g = g + g_a * dla
        g = torch.where(raw > LOSS_CAP, 0.0, g)
        dy = r * (g * (2.0 / r.shape[1])).unsqueeze(1)
        dact = self._dact
        assert dact is not None
        l1, l2, l3, l4 = self._linears
        l4.weight.grad = dy.T @ h3
        l4.bias.grad = dy.sum(dim=0)
        da3 = (dy @ l4.weight) * dact(h3)
        l3.weight.grad = da3.T @ z
        l3.bias.grad = da3.sum(dim=0)
        da2 = (da3 @ l3.weight) * dact(z)
        l2.weight.grad = da2.T @ h1
        l2.bias.grad = da2.sum(dim=0)
        da1 = (da2 @ l2.weight) * dact(h1)
        l1.weight.grad = da1.T @ x
        l1.bias.grad = da1.sum(dim=0)

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        ln = self.errors(x).mean(dim=1).clamp(max=LOSS_CAP)
        if self.anomalous_loss == "complement":
            return ln, complement_nll(ln)
        if self.anomalous_loss == "inverse":
            return ln, 1.0 / (ln + 1e-2)
        return ln, None

    def feature_contributions(self, x: torch.Tensor) -> torch.Tensor:
        return self.errors(x)


class DeepSVDD(Backbone):
    """Bias-free MLP to a ``rep``-dimensional space; ``L_n`` is the squared distance to
    the centre ``c``, fixed as the mean representation of the first training batch."""

    c: torch.Tensor  # buffers (register_buffer), declared for type checkers
    ready: torch.Tensor

    def __init__(
        self,
        n_features: int,
        hidden: int | None = None,
        rep: int = 16,
        activation: str = "leaky_relu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        h = hidden or min(64, max(16, 2 * n_features))
        self.net = nn.Sequential(
            _init_linear(nn.Linear(n_features, h, bias=False), g),
            _activation(activation),
            _init_linear(nn.Linear(h, rep, bias=False), g),
        )
        self.register_buffer("c", torch.zeros(rep))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def setup(self, x: torch.Tensor) -> None:
        if bool(self.ready):
            return
        with torch.no_grad():
            c = self.net(x).mean(dim=0)
            # A centre coordinate at 0 can be matched by the zero map: move it off 0.
            c = torch.where(c.abs() < 0.1, torch.where(c < 0, -0.1, 0.1), c)
            self.c.copy_(c)
            self.ready.fill_(True)

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        ln = ((self.net(x) - self.c) ** 2).sum(dim=1).clamp(max=LOSS_CAP)
        return ln, (1.0 / (ln + EPS)).clamp(max=LOSS_CAP)


class NeuTraL(Backbone):
    """NeuTraL-AD for tabular data: ``K`` learned transformations make views of each
    record; an encoder maps the record and its views to the unit sphere, and each view
    must be recognised as coming from its record (contrastive, temperature ``tau``).

    As in the published tabular code: residual transformations ``x + T_k(x)`` (``T_k`` a
    bias-free ``d -> mask_hidden -> d`` ReLU network; ``transform="mul"`` gives the
    multiplicative masks ``x * sigmoid(T_k(x))`` instead), and a bias-free ReLU encoder
    with ``enc_layers`` linear layers of width ``hidden`` to ``rep`` dimensions.

    Every layer is bias-free, so ``L_n(c x) = L_n(x)`` for ``c > 0``: the score sees a
    record's direction from the origin only. On centred (standardised) inputs a record
    far out along a common direction then scores as normal; on min-max scaled inputs
    (origin at the corner of the data's box) directions separate well.

    >>> import torch
    >>> ntl = NeuTraL(5, n_transforms=4)
    >>> x = torch.rand(3, 5)
    >>> bool(torch.allclose(ntl.score(x), ntl.score(7.0 * x), atol=1e-4))
    True
    """

    def __init__(
        self,
        n_features: int,
        n_transforms: int = 11,
        hidden: int | None = None,
        rep: int = 24,
        tau: float = 0.1,
        transform: str = "residual",
        enc_layers: int = 5,
        mask_hidden: int | None = None,
        bias: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if transform not in ("residual", "mul"):
            raise ValueError(f"transform must be residual or mul, not {transform!r}")
        if enc_layers < 1:
            raise ValueError("enc_layers must be at least 1")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        d = n_features
        h = hidden or 24
        mh = mask_hidden or 24
        K = n_transforms
        self.tau = tau
        self.transform = transform
        bound1, bound2 = 1 / math.sqrt(d), 1 / math.sqrt(mh)
        self.mask_w1 = nn.Parameter(torch.empty(K, d, mh).uniform_(-bound1, bound1, generator=g))
        self.mask_w2 = nn.Parameter(torch.empty(K, mh, d).uniform_(-bound2, bound2, generator=g))
        layers: list[nn.Module] = []
        width = d
        for _ in range(enc_layers - 1):
            layers += [_init_linear(nn.Linear(width, h, bias=bias), g), nn.ReLU()]
            width = h
        layers.append(_init_linear(nn.Linear(width, rep, bias=bias), g))
        self.encoder = nn.Sequential(*layers)

    def _views(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.bmm(torch.relu(torch.matmul(x, self.mask_w1)), self.mask_w2)  # K x B x d
        if self.transform == "mul":
            return x * torch.sigmoid(t)
        return x + t

    def log_probs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p_k`` and ``log(1 - p_k)`` per view (B x K)."""
        views = self._views(x)
        K, B, d = views.shape
        z = self.encoder(torch.cat([x.unsqueeze(0), views], dim=0).reshape(-1, d)).reshape(K + 1, B, -1)
        z = nn.functional.normalize(z, dim=-1).transpose(0, 1)  # B x (K+1) x rep
        sim = torch.bmm(z[:, 1:], z.transpose(1, 2)) / self.tau  # B x K x (K+1); column 0 = the record
        pos = sim[:, :, 0]
        self_mask = torch.eye(K, dtype=torch.bool, device=x.device)
        others = sim[:, :, 1:].masked_fill(self_mask, -math.inf)
        neg = torch.logsumexp(others, dim=-1)
        log_norm = torch.logaddexp(pos, neg)
        return pos - log_norm, neg - log_norm

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        log_p, log_not_p = self.log_probs(x)
        ln = (-log_p).mean(dim=1).clamp(max=LOSS_CAP)
        la = (-log_not_p).mean(dim=1).clamp(max=LOSS_CAP)
        return ln, la


BACKBONES: dict[str, type[Backbone]] = {"ae": AutoEncoder, "svdd": DeepSVDD, "ntl": NeuTraL}
