"""Random inputs for every fused kernel, shared by tests/test_kernels.py (numba against the
plain-numpy reference) and tests/test_cuda.py (CuPy against numba).

``CASES[name]`` is a list of variants, each a function ``make(rng, dtype) -> args``:
the kernel's positional arguments as numpy arrays and Python scalars, drawn from ``rng``.
Variants cover each kernel's option flags (gelu's tanh form, cross-entropy's weights,
ignore_index and label smoothing, each optimizer's momentum/nesterov/amsgrad/centered/
maximize/weight decay...). A kernel added to kernels_cpu without an entry here fails
``test_every_kernel_has_cases``.

:func:`run` calls a kernel on copies of the arguments and returns everything it produced:
its return value(s) and every array argument afterwards (most kernels work in place).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

Make = Callable[[np.random.Generator, np.dtype], tuple]


def _shape(rng: np.random.Generator, max_dims: int = 3, max_side: int = 6) -> tuple:
    return tuple(int(n) for n in rng.integers(1, max_side + 1, size=rng.integers(0, max_dims + 1)))


def _randn(rng, shape, dtype, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)  # an array even when 0-d


def _strided(rng, shape, dtype, scale=1.0):
    """A non-contiguous view (the transpose of a random array)."""
    return _randn(rng, tuple(reversed(shape)), dtype, scale).T


def _unit(rng, shape, dtype):
    return np.asarray(rng.uniform(0.05, 0.95, shape), dtype=dtype)


# ---------------------------------------------------------------------- activations


def _unary_pair(kind: str, strided: bool = False) -> Make:
    """(out, grad) for tanh/sigmoid backward: ``out`` is a valid activation value."""

    def make(rng, dtype):
        shape = _shape(rng) if not strided else (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
        x = rng.standard_normal(shape) * 2
        out = np.tanh(x) if kind == "tanh" else 1 / (1 + np.exp(-x))
        out = np.asarray(out, dtype=dtype)
        grad = _strided(rng, shape, dtype) if strided else _randn(rng, shape, dtype)
        return out, grad

    return make


def _sigmoid_forward(extreme: bool) -> Make:
    def make(rng, dtype):
        a = _randn(rng, _shape(rng), dtype, scale=4.0)
        if extreme:  # far out in both tails: e^-a overflows for a << 0 unless handled
            a = np.concatenate([a.reshape(-1), np.array([-1000, -100, -30, 30, 100, 1000], dtype=dtype)])
        return (a,)

    return make


def _relu_backward(rng, dtype):
    a = _randn(rng, _shape(rng), dtype)
    a.reshape(-1)[:: 3] = 0  # exactly 0 gets gradient 0, as in PyTorch
    return a, _randn(rng, a.shape, dtype)


def _gelu_forward(use_tanh: bool) -> Make:
    return lambda rng, dtype: (_randn(rng, _shape(rng), dtype, scale=3.0), use_tanh)


def _gelu_backward(use_tanh: bool) -> Make:
    def make(rng, dtype):
        a = _randn(rng, _shape(rng), dtype, scale=3.0)
        return a, _randn(rng, a.shape, dtype), use_tanh

    return make


# ---------------------------------------------------------------------- cross-entropy


def _ce_inputs(rng, dtype, weighted, ignore_index, wide):
    n = int(rng.integers(1, 9))
    classes = int(rng.integers(300, 1200)) if wide else int(rng.integers(1, 40))
    logits = _randn(rng, (n, classes), dtype, scale=3.0)
    target = rng.integers(0, classes, n).astype(np.int64)
    if ignore_index is not None and n > 1:
        ignored = rng.random(n) < 0.3
        target[ignored] = ignore_index
    weight = (rng.uniform(0.2, 2.0, classes) if weighted else np.ones(classes)).astype(dtype)
    return logits, target, weight


def _ce_forward(weighted=False, ignore_index=None, smoothing=0.0, wide=False) -> Make:
    def make(rng, dtype):
        logits, target, weight = _ce_inputs(rng, dtype, weighted, ignore_index, wide)
        return logits, target, weight, -100 if ignore_index is None else ignore_index, smoothing

    return make


def _ce_backward(weighted=False, ignore_index=None, smoothing=0.0, wide=False) -> Make:
    def make(rng, dtype):
        logits, target, weight = _ce_inputs(rng, dtype, weighted, ignore_index, wide)
        x = logits.astype(np.float64)
        m = x.max(axis=1, keepdims=True)
        lse = (np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]).astype(dtype)
        row_grad = rng.uniform(0.1, 1.0, logits.shape[0]).astype(dtype)
        ii = -100 if ignore_index is None else ignore_index
        return logits, target, weight, lse, row_grad, ii, smoothing

    return make


# ---------------------------------------------------------------------- recurrent cells


def _active(rng, b):
    return (rng.random(b) < 0.7).astype(np.uint8)


def _lstm_forward(rng, dtype):
    b, h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    return (_randn(rng, (b, 4 * h), dtype), _randn(rng, (b, 4 * h), dtype), _randn(rng, (4 * h,), dtype),
            _randn(rng, (b, h), dtype), _randn(rng, (b, h), dtype), _active(rng, b),
            _randn(rng, (b, h), dtype), _randn(rng, (b, h), dtype))


def _lstm_backward(rng, dtype):
    b, h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    acts = _unit(rng, (b, 4 * h), dtype)
    acts[:, 2 * h : 3 * h] = rng.uniform(-0.95, 0.95, (b, h))  # the g gate is a tanh
    r = lambda: _randn(rng, (b, h), dtype)  # noqa: E731
    # acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total
    return acts, r(), r(), r(), r(), r(), r(), _active(rng, b), _randn(rng, (b, 4 * h), dtype), r()


def _gru_forward(rng, dtype):
    b, h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    return (_randn(rng, (b, 3 * h), dtype), _randn(rng, (b, 3 * h), dtype), _randn(rng, (3 * h,), dtype),
            _randn(rng, (h,), dtype), _randn(rng, (b, h), dtype), _active(rng, b), _randn(rng, (b, h), dtype))


def _gru_backward(rng, dtype):
    b, h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    acts = _unit(rng, (b, 3 * h), dtype)
    acts[:, 2 * h :] = rng.uniform(-0.95, 0.95, (b, h))  # n is a tanh
    r = lambda: _randn(rng, (b, h), dtype)  # noqa: E731
    g = lambda: _randn(rng, (b, 3 * h), dtype)  # noqa: E731
    # acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total
    return acts, g(), r(), r(), r(), r(), _active(rng, b), g(), g(), r()


def _rnn_forward(relu: bool) -> Make:
    def make(rng, dtype):
        b, h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
        return (_randn(rng, (b, h), dtype), _randn(rng, (b, h), dtype), _randn(rng, (h,), dtype),
                _randn(rng, (b, h), dtype), _active(rng, b), _randn(rng, (b, h), dtype), relu)

    return make


def _rnn_backward(relu: bool) -> Make:
    def make(rng, dtype):
        b, h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
        if relu:
            h_new = np.maximum(_randn(rng, (b, h), dtype), 0)
        else:
            h_new = rng.uniform(-0.95, 0.95, (b, h)).astype(dtype)
        r = lambda: _randn(rng, (b, h), dtype)  # noqa: E731
        # h_new, dout, carry, dh_rec, active, dgates, dh_total, relu
        return h_new, r(), r(), r(), _active(rng, b), r(), r(), relu

    return make


# ---------------------------------------------------------------------- optimizer updates


def _param_grad(rng, dtype, strided=False):
    shape = _shape(rng, max_dims=2, max_side=8) if not strided else (int(rng.integers(2, 8)), int(rng.integers(2, 8)))
    param = _randn(rng, shape, dtype)
    grad = _strided(rng, shape, dtype) if strided else _randn(rng, shape, dtype)
    return param, grad


def _sgd(momentum=0.0, dampening=0.0, nesterov=False, maximize=False, weight_decay=0.0, first=False) -> Make:
    def make(rng, dtype):
        param, grad = _param_grad(rng, dtype)
        buf = _randn(rng, param.shape, dtype) if momentum else None
        return param, grad, buf, 0.05, weight_decay, momentum, dampening, nesterov, maximize, first

    return make


def _adam(weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False, strided=False) -> Make:
    def make(rng, dtype):
        param, grad = _param_grad(rng, dtype, strided)
        beta1, beta2 = 0.9, 0.999
        step = int(rng.integers(1, 20))
        exp_avg = _randn(rng, param.shape, dtype, scale=0.1)
        exp_avg_sq = np.asarray(rng.uniform(0.001, 0.1, param.shape), dtype=dtype)
        vmax = np.asarray(exp_avg_sq * rng.uniform(0.5, 1.5, param.shape), dtype=dtype) if amsgrad else None
        return (param, grad, exp_avg, exp_avg_sq, vmax, 1e-2, beta1, beta2, 1e-8, weight_decay, decoupled, amsgrad,
                maximize, 1 - beta1**step, math.sqrt(1 - beta2**step))

    return make


def _rmsprop(momentum=0.0, centered=False, maximize=False, weight_decay=0.0) -> Make:
    def make(rng, dtype):
        param, grad = _param_grad(rng, dtype)
        grad_avg = _randn(rng, param.shape, dtype, scale=0.1) if centered else None
        # a mean square never below the squared mean, as it is after real steps
        base = grad_avg.astype(np.float64) ** 2 if centered else 0.0
        square_avg = np.asarray(base + rng.uniform(0.05, 0.5, param.shape), dtype=dtype)
        buf = _randn(rng, param.shape, dtype, scale=0.1) if momentum else None
        return param, grad, square_avg, grad_avg, buf, 1e-2, 0.99, 1e-8, weight_decay, momentum, centered, maximize

    return make


def _adagrad(maximize=False, weight_decay=0.0) -> Make:
    def make(rng, dtype):
        param, grad = _param_grad(rng, dtype)
        state_sum = np.asarray(rng.uniform(0.0, 1.0, param.shape), dtype=dtype)
        return param, grad, state_sum, 0.05, weight_decay, 1e-10, maximize

    return make


# ---------------------------------------------------------------------- embedding


def _embedding(padding: bool, n: int | None = None) -> Make:
    def make(rng, dtype):
        num, d = int(rng.integers(1, 9)), int(rng.integers(1, 6))
        count = int(rng.integers(1, 16)) if n is None else n
        indices = rng.integers(0, num, count).astype(np.int64)  # repeats: they must accumulate
        padding_idx = int(indices[0]) if padding and count else -1
        return indices, _randn(rng, (count, d), dtype), num, padding_idx

    return make


CASES: dict[str, list[Make]] = {
    "tanh_backward": [_unary_pair("tanh"), _unary_pair("tanh", strided=True)],
    "sigmoid_forward": [_sigmoid_forward(False), _sigmoid_forward(True)],
    "sigmoid_backward": [_unary_pair("sigmoid"), _unary_pair("sigmoid", strided=True)],
    "relu_backward": [_relu_backward],
    "gelu_forward": [_gelu_forward(False), _gelu_forward(True)],
    "gelu_backward": [_gelu_backward(False), _gelu_backward(True)],
    "cross_entropy_forward": [
        _ce_forward(),
        _ce_forward(weighted=True, ignore_index=-100, smoothing=0.1),
        _ce_forward(ignore_index=0, smoothing=0.25),
        _ce_forward(weighted=True, wide=True, smoothing=0.1, ignore_index=-100),
    ],
    "cross_entropy_backward": [
        _ce_backward(),
        _ce_backward(weighted=True, ignore_index=-100, smoothing=0.1),
        _ce_backward(ignore_index=0, smoothing=0.25),
        _ce_backward(weighted=True, wide=True, smoothing=0.1, ignore_index=-100),
    ],
    "lstm_cell_forward": [_lstm_forward],
    "lstm_cell_backward": [_lstm_backward],
    "gru_cell_forward": [_gru_forward],
    "gru_cell_backward": [_gru_backward],
    "rnn_cell_forward": [_rnn_forward(False), _rnn_forward(True)],
    "rnn_cell_backward": [_rnn_backward(False), _rnn_backward(True)],
    "sgd_update": [
        _sgd(),
        _sgd(momentum=0.9, first=True),
        _sgd(momentum=0.9, dampening=0.1, weight_decay=0.01),
        _sgd(momentum=0.8, nesterov=True, maximize=True, weight_decay=0.1),
    ],
    "adam_update": [
        _adam(),
        _adam(weight_decay=0.1),
        _adam(weight_decay=0.1, decoupled=True, amsgrad=True),
        _adam(maximize=True, amsgrad=True, strided=True),
    ],
    "rmsprop_update": [
        _rmsprop(),
        _rmsprop(momentum=0.9, centered=True),
        _rmsprop(maximize=True, weight_decay=0.1, momentum=0.5),
    ],
    "adagrad_update": [_adagrad(), _adagrad(maximize=True, weight_decay=0.1)],
    "embedding_backward": [_embedding(False), _embedding(True), _embedding(False, n=0)],
}

VARIANTS = [(name, index) for name, makes in CASES.items() for index in range(len(makes))]


def make_args(name: str, index: int, dtype: Any, seed: int) -> tuple:
    return CASES[name][index](np.random.default_rng(seed), np.dtype(dtype))


def run(fn: Callable, args: tuple, to_device: Callable = lambda a: a.copy()) -> list:
    """Call ``fn`` on copies of ``args`` (moved by ``to_device``) and return the results
    followed by every array argument as the call left it."""
    moved = [to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    result = fn(*moved)
    if result is None:
        result = ()
    elif not isinstance(result, tuple):
        result = (result,)
    return list(result) + [a for a, orig in zip(moved, args) if isinstance(orig, np.ndarray)]


def tolerances(dtype: Any) -> dict:
    """float32: a few ulps of the values (kernels and references round in different places);
    float64: near machine precision."""
    if np.dtype(dtype) == np.float32:
        return dict(rtol=2e-5, atol=2e-6)
    return dict(rtol=1e-10, atol=1e-12)
