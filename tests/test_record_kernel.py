"""The compiled one-record kernel (streamad/record_kernel.py) against the numpy
arithmetic it replaces, on random networks and records: every shape, activation and
head, with and without the latent term and the Gaussian, wild values and NaN."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.record_kernel import pack, record_scores, scale_record

ACTS = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "leaky_relu": lambda a: np.where(a > 0, a, 0.1 * a)}


def reference(x, clip, net, act, inv_var, nu, latent, gauss, cap):
    xc = np.clip(np.nan_to_num(x, nan=0.0), -clip, clip)
    w1, b1, w2, b2, w3, b3, w4, b4, live = net
    f = ACTS[act]
    z = f(f(xc @ w1 + b1) @ w2 + b2)
    r = (f(z @ w3 + b3) @ w4 + b4 - xc) * live
    if inv_var is None:
        raw = min(float((r * r).mean()), cap)
    else:
        u = r * r * inv_var
        raw = float((np.log1p(u / nu) if nu > 0 else u).sum())
        if latent is not None:
            lw, mu, prec = latent
            m = float((z - mu) @ prec @ (z - mu))
            raw += lw * (math.log1p(m / nu) if nu > 0 else m)
        raw /= len(x)
    dist = 0.0 if gauss is None else max(float((xc - gauss[0]) @ gauss[1] @ (xc - gauss[0])), 0.0)
    return raw, dist


@settings(max_examples=60, deadline=None)
@given(
    d=st.integers(1, 9),
    h=st.integers(1, 12),
    k=st.integers(1, 5),
    act=st.sampled_from(sorted(ACTS)),
    head=st.booleans(),
    nu=st.sampled_from([0.0, 0.5, 1.0]),
    with_latent=st.booleans(),
    with_gauss=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_kernel_computes_what_numpy_does(d, h, k, act, head, nu, with_latent, with_gauss, seed) -> None:
    rng = np.random.default_rng(seed)
    net = (rng.normal(size=(d, h)), rng.normal(size=h), rng.normal(size=(h, k)), rng.normal(size=k),
           rng.normal(size=(k, h)), rng.normal(size=h), rng.normal(size=(h, d)), rng.normal(size=d),
           (rng.random(d) > 0.2).astype(float))  # fmt: skip
    inv_var = rng.uniform(0.1, 3.0, d) if head else None
    a = rng.normal(size=(k, k))
    latent = (float(rng.uniform(0.1, 2.0)), rng.normal(size=k), a @ a.T) if head and with_latent else None
    b = rng.normal(size=(d, d))
    gauss = (rng.normal(size=d), b @ b.T) if with_gauss else None
    x = rng.normal(scale=5.0, size=d)
    x[rng.random(d) < 0.15] = np.nan
    x[rng.random(d) < 0.15] = 1e9
    p, sizes = pack(net, act, inv_var=inv_var, nu=nu, latent=latent, gauss=gauss, loss_cap=1e4)
    got = record_scores(x, 7.0, p, sizes)
    want = reference(x, 7.0, net, act, inv_var, nu, latent, gauss, 1e4)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_the_scaling_kernel_is_the_numpy_expression_bit_for_bit(d, seed) -> None:
    rng = np.random.default_rng(seed)
    x, mean = rng.normal(scale=100.0, size=d), rng.normal(size=d)
    div = np.where(rng.random(d) < 0.2, np.inf, rng.uniform(1e-3, 10.0, d))
    want = np.maximum(np.minimum((x - mean) / div, 10.0), -10.0)
    assert np.array_equal(scale_record(x, mean, div, 10.0), want)
