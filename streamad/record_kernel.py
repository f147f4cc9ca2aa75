"""The one-record path (``score_one``), compiled with numba: a record's standard scaling,
and its raw scores through the autoencoder and the Gaussian beside it.

A record at a time, the float64 numpy copy of the network (``WindowTrainer.score_numpy``)
spent its time in the fixed cost of some forty small array operations per record (four
matrix products, the activations, the density head, the Gaussian's distance, their
calibrations), each a few hundred nanoseconds of dispatch for a few dozen flops. Here
the same arithmetic is one compiled call: plain loops over a few hundred weights.

What is compiled is only arithmetic on arrays the trainer hands over (its weights and
statistics as of its last change); which parts exist and how their scores combine
stays in ``WindowTrainer.score_record``, in Python, beside the batch path it mirrors.
The scaler's step is as plain: ``StandardScaler.transform_one``. The code is cached
beside this module (numba's ``cache=True``); numba is imported when the first record is
scored one at a time.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: activation names of ``AutoEncoder`` → the kernel's code for them
ACTIVATIONS = {"tanh": 0, "relu": 1, "leaky_relu": 2}
#: the density head's kinds: none (the mean squared residual) or ``DensityHead``
NO_HEAD, DENSITY_HEAD = 0, 1


@numba.njit(cache=True)
def scale_record(x: np.ndarray, mean: np.ndarray, divisor: np.ndarray, clip: float) -> np.ndarray:
    """``(x - mean) / divisor`` clipped to ``±clip``: ``StandardScaler.transform`` of one
    record, operation for operation (the same float64 values)."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = max(min((x[i] - mean[i]) / divisor[i], clip), -clip)
    return out


@numba.njit(cache=True)
def _layer(x: np.ndarray, w: np.ndarray, b: np.ndarray, act: int) -> np.ndarray:
    """``act(x @ w + b)`` for one record (``w``: inputs × outputs; ``act`` -1: none)."""
    out = b.copy()
    for i in range(w.shape[0]):
        xi = x[i]
        for j in range(w.shape[1]):
            out[j] += xi * w[i, j]
    if act == 0:
        for j in range(out.shape[0]):
            out[j] = math.tanh(out[j])
    elif act == 1:
        for j in range(out.shape[0]):
            out[j] = max(out[j], 0.0)
    elif act == 2:
        for j in range(out.shape[0]):
            if not out[j] > 0.0:
                out[j] = 0.1 * out[j]
    return out


@numba.njit(cache=True)
def quadratic(v: np.ndarray, p: np.ndarray) -> float:
    """``v' P v``."""
    total = 0.0
    for i in range(v.shape[0]):
        row = 0.0
        for j in range(v.shape[0]):
            row += v[j] * p[j, i]
        total += row * v[i]
    return total


@numba.njit(cache=True)
def axes_score(x: np.ndarray, clip: float, inv_width: float, offset: np.ndarray, base: np.ndarray, bins: int, table: np.ndarray) -> float:
    """``ProjectionHistograms.score`` (one histogram per feature) of one record, cleaned
    as ``record_scores`` cleans it (NaN → 0, clipped to ``±clip``): each feature's bin,
    its ``-log`` frequency from ``table``, their mean."""
    total = 0.0
    for j in range(x.shape[0]):
        v = x[j]
        v = 0.0 if v != v else min(max(v, -clip), clip)
        b = min(max(math.floor(v * inv_width + offset[j]), 0.0), bins - 1.0)
        total += table[int(b) + base[j]]
    return total / x.shape[0]


def pack(
    net: tuple[np.ndarray, ...],
    activation: str,
    inv_var: np.ndarray | None = None,
    nu: float = 0.0,
    latent: tuple[float, np.ndarray, np.ndarray] | None = None,
    gauss: tuple[np.ndarray, np.ndarray] | None = None,
    loss_cap: float = math.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """The arguments of ``record_scores`` after the record: every number in one float64
    array and the sizes that cut it up in one int64 array (two arguments to unbox per
    call instead of a dozen: numba's per-argument dispatch was most of a record's cost).

    ``net``: the autoencoder's ``(w1, b1, w2, b2, w3, b3, w4, b4, live)``, each ``w``
    inputs × outputs. ``inv_var`` and ``nu``: the density head (None: the mean squared
    residual, capped at ``loss_cap``); ``latent``: its ``(weight, mean, precision)`` of
    the latent codes (None: off). ``gauss``: the Gaussian's ``(mean, precision)`` (None:
    no Gaussian, its score is 0)."""
    w1, b1, w2, b2, w3, b3, w4, b4, live = net
    d, h1 = w1.shape
    k, h3 = w3.shape
    parts = [np.array([nu, 0.0 if latent is None else latent[0], loss_cap]), w1, b1, w2, b2, w3, b3, w4, b4, live]
    head = NO_HEAD if inv_var is None else DENSITY_HEAD
    if inv_var is not None:
        parts.append(inv_var)
    if latent is not None:
        parts += [latent[1], latent[2]]
    if gauss is not None:
        parts += list(gauss)
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in parts])
    sizes = np.array([d, h1, k, h3, ACTIVATIONS[activation], head, latent is not None, gauss is not None], dtype=np.int64)
    return flat, sizes


@numba.njit(cache=True)
def _linear(p: np.ndarray, o: int, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A layer's weights (inputs × outputs) and bias, read from ``p`` at ``o``; and where
    the next part begins."""
    w = p[o : o + n_in * n_out].reshape((n_in, n_out))
    o += n_in * n_out
    return w, p[o : o + n_out], o + n_out


@numba.njit(cache=True)
def record_scores(x: np.ndarray, clip: float, p: np.ndarray, sizes: np.ndarray) -> tuple[float, float]:
    """The network's raw score and the Gaussian's squared Mahalanobis distance of the
    scaled record ``x`` (d,), as ``WindowTrainer.score_numpy`` computes them for a batch
    (``p`` and ``sizes``: from ``pack``). ``x`` is first cleaned as the detector cleans a
    batch: NaN → 0, clipped to ``±clip``."""
    d, h1, k, h3, act, head, latent, gauss = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7]
    nu, latent_weight, loss_cap = p[0], p[1], p[2]
    w1, b1, o = _linear(p, 3, d, h1)
    w2, b2, o = _linear(p, o, h1, k)
    w3, b3, o = _linear(p, o, k, h3)
    w4, b4, o = _linear(p, o, h3, d)
    live = p[o : o + d]
    o += d
    xc = np.empty(d)
    for i in range(d):
        v = x[i]
        xc[i] = 0.0 if v != v else min(max(v, -clip), clip)
    z = _layer(_layer(xc, w1, b1, act), w2, b2, act)
    y = _layer(_layer(z, w3, b3, act), w4, b4, -1)
    raw = 0.0
    if head == DENSITY_HEAD:
        inv_var = p[o : o + d]
        o += d
        for j in range(d):
            r = (y[j] - xc[j]) * live[j]
            u = r * r * inv_var[j]
            raw += math.log1p(u / nu) if nu > 0 else u
        if latent:
            z_mean = p[o : o + k]
            o += k
            z_prec = p[o : o + k * k].reshape((k, k))
            o += k * k
            m = quadratic(z - z_mean, z_prec)
            raw += latent_weight * (math.log1p(m / nu) if nu > 0 else m)
        raw /= d
    else:
        for j in range(d):
            r = (y[j] - xc[j]) * live[j]
            raw += r * r
        raw = min(raw / d, loss_cap)
    dist = 0.0
    if gauss:
        g_mean = p[o : o + d]
        o += d
        g_prec = p[o : o + d * d].reshape((d, d))
        dist = max(quadratic(xc - g_mean, g_prec), 0.0)
    return raw, dist


def compile_kernels() -> None:
    """Compile the one-record kernels now (or load them from numba's cache): what the
    first ``score_one`` would otherwise do (1.7 s). A container image runs this at build
    time, beside ``streamad.temporal.compile_kernels``, into the ``NUMBA_CACHE_DIR`` its
    user reads. One compilation serves every shape and head: they are data here."""
    d, h, k = 2, 2, 1
    x = np.zeros(d)
    scale_record(x, x, np.ones(d), 10.0)
    quadratic(x, np.eye(d))  # the Gaussian's one-record score (learning/gaussian.py)
    axes_score(x, 10.0, 4.0, np.zeros(d), np.zeros(d, dtype=np.int64), 2, np.zeros(2 * d))  # loe-ae's feature histograms
    net = (np.zeros((d, h)), np.zeros(h), np.zeros((h, k)), np.zeros(k), np.zeros((k, h)), np.zeros(h), np.zeros((h, d)), np.zeros(d), np.ones(d))
    record_scores(x, 10.0, *pack(net, "tanh", inv_var=np.ones(d), nu=1.0, gauss=(np.zeros(d), np.eye(d))))
