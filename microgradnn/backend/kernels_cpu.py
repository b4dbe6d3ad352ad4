"""Numba kernels for the CPU backend.

Each public function here has the signature of its plain-numpy twin in
:mod:`microgradnn.backend.reference` minus the leading ``xp``. A thin Python wrapper makes
the arrays contiguous and allocates the output; an ``@njit`` loop does the arithmetic in
one pass over memory, where numpy would make one pass (and one temporary) per operator.

``cache=True`` keeps the compiled machine code on disk, so only the first run on a
machine pays numba's compile time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_COEFF = 0.044715


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def _same_dtype(*arrays) -> bool:
    dtype = arrays[0].dtype
    return dtype.kind == "f" and all(a.dtype == dtype for a in arrays)


def _reference(name):
    from . import reference

    fn = getattr(reference, name)
    return lambda *args: fn(np, *args)


# ----------------------------------------------------------------- activations


@njit(cache=True, nogil=True)
def _tanh_backward(out, grad, result):
    for i in range(out.size):
        result[i] = grad[i] * (1.0 - out[i] * out[i])


def tanh_backward(out, grad):
    if not _same_dtype(out, grad):
        return _reference("tanh_backward")(out, grad)
    result = np.empty(out.shape, dtype=out.dtype)
    _tanh_backward(_flat(out), _flat(grad), result.reshape(-1))
    return result


@njit(cache=True, nogil=True)
def _sigmoid_forward(a, result):
    for i in range(a.size):
        x = a[i]
        if x >= 0:
            result[i] = 1.0 / (1.0 + math.exp(-x))
        else:  # e^x / (1 + e^x): never overflows for very negative x
            e = math.exp(x)
            result[i] = e / (1.0 + e)


def sigmoid_forward(a):
    if a.dtype.kind != "f":
        return _reference("sigmoid_forward")(a)
    result = np.empty(a.shape, dtype=a.dtype)
    _sigmoid_forward(_flat(a), result.reshape(-1))
    return result


@njit(cache=True, nogil=True)
def _sigmoid_backward(out, grad, result):
    for i in range(out.size):
        result[i] = grad[i] * out[i] * (1.0 - out[i])


def sigmoid_backward(out, grad):
    if not _same_dtype(out, grad):
        return _reference("sigmoid_backward")(out, grad)
    result = np.empty(out.shape, dtype=out.dtype)
    _sigmoid_backward(_flat(out), _flat(grad), result.reshape(-1))
    return result


@njit(cache=True, nogil=True)
def _relu_backward(a, grad, result):
    for i in range(a.size):
        result[i] = grad[i] if a[i] > 0 else 0.0


def relu_backward(a, grad):
    if not _same_dtype(a, grad):
        return _reference("relu_backward")(a, grad)
    result = np.empty(a.shape, dtype=grad.dtype)
    _relu_backward(_flat(a), _flat(grad), result.reshape(-1))
    return result


@njit(cache=True, nogil=True)
def _gelu_forward(a, result, use_tanh):
    for i in range(a.size):
        x = a[i]
        if use_tanh:
            result[i] = 0.5 * x * (1.0 + math.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFF * x * x * x)))
        else:
            result[i] = 0.5 * x * (1.0 + math.erf(x * INV_SQRT_2))


def gelu_forward(a, use_tanh):
    if a.dtype.kind != "f":
        return _reference("gelu_forward")(a, use_tanh)
    result = np.empty(a.shape, dtype=a.dtype)
    _gelu_forward(_flat(a), result.reshape(-1), bool(use_tanh))
    return result


@njit(cache=True, nogil=True)
def _gelu_backward(a, grad, result, use_tanh):
    for i in range(a.size):
        x = a[i]
        if use_tanh:
            t = math.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_COEFF * x * x * x))
            d_inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEFF * x * x)
            result[i] = grad[i] * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)
        else:
            cdf = 0.5 * (1.0 + math.erf(x * INV_SQRT_2))
            pdf = math.exp(-0.5 * x * x) * INV_SQRT_2PI
            result[i] = grad[i] * (cdf + x * pdf)


def gelu_backward(a, grad, use_tanh):
    if not _same_dtype(a, grad):
        return _reference("gelu_backward")(a, grad, use_tanh)
    result = np.empty(a.shape, dtype=a.dtype)
    _gelu_backward(_flat(a), _flat(grad), result.reshape(-1), bool(use_tanh))
    return result


# ----------------------------------------------------------------- cross-entropy


@njit(cache=True, nogil=True)
def _cross_entropy_forward(logits, target, weight, ignore_index, smoothing, loss, lse, row_weight):
    n, classes = logits.shape
    for i in range(n):
        m = logits[i, 0]
        for c in range(1, classes):
            if logits[i, c] > m:
                m = logits[i, c]
        total = 0.0
        for c in range(classes):
            total += math.exp(logits[i, c] - m)
        row_lse = math.log(total) + m
        lse[i] = row_lse
        t = target[i]
        if t == ignore_index:
            loss[i] = 0.0
            row_weight[i] = 0.0
            continue
        w = weight[t]
        row_weight[i] = w
        value = (1.0 - smoothing) * w * (row_lse - logits[i, t])
        if smoothing != 0.0:
            smooth = 0.0
            for c in range(classes):
                smooth += weight[c] * (row_lse - logits[i, c])
            value += smoothing * smooth / classes
        loss[i] = value


def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    n, classes = logits.shape
    loss = np.empty(n, dtype=logits.dtype)
    lse = np.empty(n, dtype=logits.dtype)
    row_weight = np.empty(n, dtype=logits.dtype)
    _cross_entropy_forward(logits, target, weight, int(ignore_index), float(label_smoothing), loss, lse, row_weight)
    return loss, lse, row_weight


@njit(cache=True, nogil=True)
def _cross_entropy_backward(logits, target, weight, lse, row_grad, ignore_index, smoothing, out):
    n, classes = logits.shape
    weight_sum = 0.0
    for c in range(classes):
        weight_sum += weight[c]
    for i in range(n):
        t = target[i]
        if t == ignore_index:
            for c in range(classes):
                out[i, c] = 0.0
            continue
        g = row_grad[i]
        hard = (1.0 - smoothing) * weight[t] * g
        soft = smoothing * g / classes
        for c in range(classes):
            p = math.exp(logits[i, c] - lse[i])
            # d/dx_c of w_t (lse - x_t) is w_t (p_c - [c == t]); the smoothing term adds (W p_c - w_c) / C
            value = hard * p
            if smoothing != 0.0:
                value += soft * (weight_sum * p - weight[c])
            out[i, c] = value
        out[i, t] -= hard


def cross_entropy_backward(logits, target, weight, lse, row_grad, ignore_index, label_smoothing):
    out = np.empty_like(logits)
    _cross_entropy_backward(logits, target, weight, lse, row_grad, int(ignore_index), float(label_smoothing), out)
    return out
