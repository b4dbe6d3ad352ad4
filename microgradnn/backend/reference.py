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


def gelu_forward(xp, a, use_tanh):
    if use_tanh:
        return 0.5 * a * (1 + xp.tanh(SQRT_2_OVER_PI * (a + GELU_TANH_COEFF * a**3)))
    return 0.5 * a * (1 + _erf(xp, a / math.sqrt(2.0)))


def gelu_backward(xp, a, grad, use_tanh):
    if use_tanh:
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


# ----------------------------------------------------------------- recurrent cells
# One time step of one layer; the kernels write into arrays the caller allocated, so the
# twins do too. ``active`` (B,) is nonzero where the step is real, zero where it is padding.


def _rows(active):
    return (active != 0)[:, None]


def lstm_cell_forward(xp, gates, hh, bias, c_prev, h_prev, active, h_new, c_new):
    H = c_prev.shape[1]
    pre = gates + hh + bias
    i, f, o = (sigmoid_forward(xp, pre[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
    g = xp.tanh(pre[:, 2 * H : 3 * H])
    c = f * c_prev + i * g
    h = o * xp.tanh(c)
    gates[...] = xp.concatenate([i, f, g, o], axis=1)
    m = _rows(active)
    c_new[...] = xp.where(m, c, c_prev)
    h_new[...] = xp.where(m, h, h_prev)


def lstm_cell_backward(xp, acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total):
    H = c_prev.shape[1]
    m = _rows(active)
    dh = carry + dh_rec + xp.where(m, dout, 0)
    dh_total[...] = dh
    i, f, g, o = (acts[:, k * H : (k + 1) * H] for k in range(4))
    tc = xp.tanh(c_new)
    dcc = dc + dh * o * (1 - tc * tc)
    d = xp.concatenate([dcc * g * i * (1 - i), dcc * c_prev * f * (1 - f), dcc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
    dgates[...] = xp.where(m, d, 0)
    dc[...] = xp.where(m, dcc * f, dc)
    carry[...] = xp.where(m, 0, dh)


def gru_cell_forward(xp, gates, hh, bias, b_hn, h_prev, active, h_new):
    H = h_prev.shape[1]
    r = sigmoid_forward(xp, gates[:, :H] + hh[:, :H] + bias[:H])
    z = sigmoid_forward(xp, gates[:, H : 2 * H] + hh[:, H : 2 * H] + bias[H : 2 * H])
    nh = hh[:, 2 * H :] + b_hn
    n = xp.tanh(gates[:, 2 * H :] + bias[2 * H :] + r * nh)
    h = (1 - z) * n + z * h_prev
    gates[...] = xp.concatenate([r, z, n], axis=1)
    hh[:, 2 * H :] = nh
    h_new[...] = xp.where(_rows(active), h, h_prev)


def gru_cell_backward(xp, acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total):
    H = h_prev.shape[1]
    m = _rows(active)
    dh = carry + dh_rec + xp.where(m, dout, 0)
    dh_total[...] = dh
    r, z, n = acts[:, :H], acts[:, H : 2 * H], acts[:, 2 * H :]
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * hh[:, 2 * H :] * r * (1 - r)
    dgx[...] = xp.where(m, xp.concatenate([dr, dz, dn], axis=1), 0)
    dgh[...] = xp.where(m, xp.concatenate([dr, dz, dn * r], axis=1), 0)
    carry[...] = xp.where(m, dh * z, dh)


def rnn_cell_forward(xp, gates, hh, bias, h_prev, active, h_new, relu):
    pre = gates + hh + bias
    h = xp.maximum(pre, 0) if relu else xp.tanh(pre)
    h_new[...] = xp.where(_rows(active), h, h_prev)


def rnn_cell_backward(xp, h_new, dout, carry, dh_rec, active, dgates, dh_total, relu):
    m = _rows(active)
    dh = carry + dh_rec + xp.where(m, dout, 0)
    dh_total[...] = dh
    d = dh * (h_new > 0) if relu else dh * (1 - h_new * h_new)
    dgates[...] = xp.where(m, d, 0)
    carry[...] = xp.where(m, 0, dh)


# ----------------------------------------------------------------- optimizer updates
# torch.optim's update rules (single-tensor path), in place on ``param`` and the state
# arrays; ``grad`` is only read. Optional state (a momentum buffer that is off, amsgrad's
# max) is passed as ``None``. Scalars are Python floats/bools.


def _opt_grad(xp, param, grad, weight_decay, maximize):
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    return g


def _lerp_(xp, start, end, weight):
    # torch's lerp: start + w (end - start) for w < 0.5, end - (end - start)(1 - w) otherwise
    if weight < 0.5:
        start[...] = start + weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


def sgd_update(xp, param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize, first_step):
    g = _opt_grad(xp, param, grad, weight_decay, maximize)
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer[...] = momentum * momentum_buffer + (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param[...] = param - lr * g


def adam_update(xp, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                decoupled, amsgrad, maximize, bias_correction1, bias_correction2_sqrt):
    """Adam (``decoupled`` False) or AdamW (True); the bias corrections are
    ``1 - beta1**step`` and ``sqrt(1 - beta2**step)``."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled:
            param[...] = param * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * param
    _lerp_(xp, exp_avg, g, 1 - beta1)
    exp_avg_sq[...] = exp_avg_sq * beta2 + (1 - beta2) * g * g
    if amsgrad:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = xp.sqrt(second) / bias_correction2_sqrt + eps
    param[...] = param - (lr / bias_correction1) * exp_avg / denom


def rmsprop_update(xp, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                   momentum, centered, maximize):
    g = _opt_grad(xp, param, grad, weight_decay, maximize)
    square_avg[...] = square_avg * alpha + (1 - alpha) * g * g
    if centered:
        _lerp_(xp, grad_avg, g, 1 - alpha)
        avg = xp.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = xp.sqrt(square_avg)
    avg = avg + eps
    if momentum > 0:
        momentum_buffer[...] = momentum_buffer * momentum + g / avg
        param[...] = param - lr * momentum_buffer
    else:
        param[...] = param - lr * g / avg


def adagrad_update(xp, param, grad, state_sum, clr, weight_decay, eps, maximize):
    """``clr`` is the decayed rate ``lr / (1 + (step - 1) * lr_decay)``."""
    g = _opt_grad(xp, param, grad, weight_decay, maximize)
    state_sum[...] = state_sum + g * g
    param[...] = param - clr * g / (xp.sqrt(state_sum) + eps)


# ----------------------------------------------------------------- embedding


def embedding_backward(xp, indices, grad, num_embeddings, padding_idx):
    """Scatter-add each position's gradient row into its token's row; ``padding_idx`` stays 0.

    ``indices`` (N,) int64, ``grad`` (N, D); ``padding_idx`` -1 means none."""
    out = xp.zeros((num_embeddings, grad.shape[1]), dtype=grad.dtype)
    if xp is np:
        np.add.at(out, indices, grad)  # repeated indices accumulate (out[indices] += grad would not)
    else:
        import cupyx

        cupyx.scatter_add(out, indices, grad)
    if padding_idx >= 0:
        out[padding_idx] = 0
    return out
