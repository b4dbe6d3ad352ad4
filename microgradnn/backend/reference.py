"""Plain-``xp`` reference versions of every fused kernel.

Each function takes the array module ``xp`` first, then the same arguments as the kernel
of the same name in ``kernels_cpu`` (numba) and ``kernels_cuda`` (CuPy). They are the
specification: short, obviously right, and what the fused kernels are tested against.
"""

from __future__ import annotations

import math

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_COEFF = 0.044715


def _erf(xp, x):
    if xp is np:
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)


def tanh_backward(xp, out, grad):
    return grad * (1 - out * out)


def sigmoid_forward(xp, a):
    # 1/(1+e^-a) overflows e^-a for very negative a; e^a/(1+e^a) is its stable twin there.
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype)


def sigmoid_backward(xp, out, grad):
    return grad * out * (1 - out)


def relu_backward(xp, a, grad):
    return grad * (a > 0)


def gelu_forward(xp, a, tanh):
    if tanh:
        return 0.5 * a * (1 + xp.tanh(SQRT_2_OVER_PI * (a + GELU_TANH_COEFF * a**3)))
    return 0.5 * a * (1 + _erf(xp, a / math.sqrt(2.0)))


def gelu_backward(xp, a, grad, tanh):
    if tanh:
        inner = SQRT_2_OVER_PI * (a + GELU_TANH_COEFF * a**3)
        t = xp.tanh(inner)
        d_inner = SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_COEFF * a * a)
        return grad * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner)
    cdf = 0.5 * (1 + _erf(xp, a / math.sqrt(2.0)))
    pdf = xp.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    return grad * (cdf + a * pdf)


def cross_entropy_forward(xp, logits, target, weight, ignore_index, label_smoothing):
    """Per-row loss, log-sum-exp and the weight each row carries in a weighted mean."""
    n, classes = logits.shape
    m = logits.max(axis=1, keepdims=True)
    lse = (xp.log(xp.exp(logits - m).sum(axis=1, keepdims=True)) + m)[:, 0]
    valid = target != ignore_index
    safe_target = xp.where(valid, target, 0)
    picked = logits[xp.arange(n), safe_target]
    row_weight = xp.where(valid, weight[safe_target], 0).astype(logits.dtype)
    nll = row_weight * (lse - picked)
    if label_smoothing:
        smooth = ((lse[:, None] - logits) * weight[None, :]).sum(axis=1) / classes
        nll = (1 - label_smoothing) * nll + label_smoothing * xp.where(valid, smooth, 0)
    return nll.astype(logits.dtype), lse.astype(logits.dtype), row_weight


def cross_entropy_backward(xp, logits, target, weight, lse, row_grad, ignore_index, label_smoothing):
    n, classes = logits.shape
    p = xp.exp(logits - lse[:, None])
    valid = target != ignore_index
    safe_target = xp.where(valid, target, 0)
    w_t = xp.where(valid, weight[safe_target], 0)
    one_hot = xp.zeros_like(logits)
    one_hot[xp.arange(n), safe_target] = 1
    grad = (1 - label_smoothing) * w_t[:, None] * (p - one_hot)
    if label_smoothing:
        smooth = (weight.sum() * p - weight[None, :]) / classes
        grad = grad + label_smoothing * xp.where(valid[:, None], smooth, 0)
    return (grad * row_grad[:, None]).astype(logits.dtype)
