"""CuPy twins of the numba kernels in :mod:`microgradnn.backend.kernels_cpu`.

Every public function here has the same name, signature and meaning as its CPU twin (and
as the plain-``xp`` reference in :mod:`microgradnn.backend.reference`, minus its leading
``xp``); :mod:`microgradnn.backend.cuda` looks them up by name.

How the GPU versions are built, and why:

* **Elementwise work** (activation backward passes, optimizer updates, the cross-entropy
  backward) is a ``cupy.ElementwiseKernel``: we write the body for one element ``i`` in
  CUDA C++, CuPy writes the loop, the launch and the broadcasting. ``T`` in a parameter
  list is a type placeholder: one kernel object serves float32 and float64, and CuPy
  compiles (and caches, in memory and on disk under ``~/.cupy/kernel_cache``) one binary
  per dtype the first time that dtype is seen.
* **Row reductions** (the cross-entropy forward: max, sum of exponentials and the
  smoothing sum over each row) are a ``cupy.RawKernel``: one thread block per row, its
  threads each take a strided share of the columns and combine their partial results in
  shared memory. Its source is generated once per dtype (``typedef float T;``).
* **Scatter-add** (``embedding_backward``): every gradient element adds itself into its
  token's row with ``atomicAdd``, so repeated tokens accumulate correctly even when
  thousands of threads hit the same row at once. The summation order is not fixed, so
  float32 results may differ from the CPU in the last bits from run to run.

Numerics follow the CPU kernels: where numba computes in float64 (every optimizer
update, the cross-entropy sums), these do too, and round to the array's dtype when they
store. Arrays of other dtypes (float16, mixed dtypes) and non-contiguous state arrays go
to the reference twin, run with ``xp = cupy``, exactly as on the CPU.

Nothing here imports CuPy until a kernel is called, so importing this module (the test
suite does, to check that every CPU kernel has a twin) works on a machine without it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from . import reference
from .kernels_cuda_recurrent import (  # noqa: F401  (the recurrent twins live in their own file)
    gru_cell_backward,
    gru_cell_forward,
    lstm_cell_backward,
    lstm_cell_forward,
    rnn_cell_backward,
    rnn_cell_forward,
)

__all__ = [
    "tanh_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "relu_backward",
    "gelu_forward",
    "gelu_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "gru_cell_forward",
    "gru_cell_backward",
    "rnn_cell_forward",
    "rnn_cell_backward",
    "sgd_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "embedding_backward",
]

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_COEFF = 0.044715


def _cupy() -> Any:
    import cupy

    return cupy


def _reference(name: str):
    fn = getattr(reference, name)
    return lambda *args: fn(_cupy(), *args)


def _fused_float(*arrays: Any) -> bool:
    """The fused path handles float32 and float64 arrays that all share one dtype."""
    dtype = arrays[0].dtype
    return dtype.kind == "f" and dtype.itemsize >= 4 and all(a.dtype == dtype for a in arrays)


# --------------------------------------------------------------- elementwise kernels
#
# name -> (input parameters, output parameters, body). In a body, a non-raw parameter
# names this element's value (a reference for outputs, so ``p = ...`` stores), a ``raw``
# parameter is the whole array, indexed by hand with ``i``, the element's linear index.
# Scalars are typed explicitly (``float64 lr``) so a Python float arrives as a double.

_PREAMBLE = """
// torch's lerp, as in kernels_cpu._lerp: exact at both ends of the weight range
__device__ __forceinline__ double mg_lerp(double start, double end, double weight) {
    return weight < 0.5 ? start + weight * (end - start) : end - (end - start) * (1.0 - weight);
}
"""

_C = {  # constants spelled as C literals (repr keeps every digit)
    "SQRT_2_OVER_PI": repr(SQRT_2_OVER_PI),
    "INV_SQRT_2": repr(INV_SQRT_2),
    "INV_SQRT_2PI": repr(INV_SQRT_2PI),
    "GELU_TANH_COEFF": repr(GELU_TANH_COEFF),
}


def _fill(body: str) -> str:
    for name, literal in _C.items():
        body = body.replace("{" + name + "}", literal)
    return body


_ELEMENTWISE: dict[str, tuple[str, str, str]] = {
    "tanh_backward": ("T y, T grad", "T result", "result = grad * (T(1) - y * y);"),
    "sigmoid_forward": (
        "T a",
        "T result",
        # e^a / (1 + e^a) for negative a: e^-a would overflow there
        """
        if (a >= T(0)) { result = T(1) / (T(1) + exp(-a)); }
        else { const T e = exp(a); result = e / (T(1) + e); }
        """,
    ),
    "sigmoid_backward": ("T y, T grad", "T result", "result = grad * y * (T(1) - y);"),
    # the gradient at exactly 0 is 0, as PyTorch's
    "relu_backward": ("T a, T grad", "T result", "result = a > T(0) ? grad : T(0);"),
    "gelu_forward": (
        "T a, bool use_tanh",
        "T result",
        _fill("""
        const T x = a;
        if (use_tanh) {
            result = T(0.5) * x * (T(1) + tanh(T({SQRT_2_OVER_PI}) * (x + T({GELU_TANH_COEFF}) * x * x * x)));
        } else {
            result = T(0.5) * x * (T(1) + erf(x * T({INV_SQRT_2})));
        }
        """),
    ),
    "gelu_backward": (
        "T a, T grad, bool use_tanh",
        "T result",
        _fill("""
        const T x = a;
        if (use_tanh) {
            const T t = tanh(T({SQRT_2_OVER_PI}) * (x + T({GELU_TANH_COEFF}) * x * x * x));
            const T d_inner = T({SQRT_2_OVER_PI}) * (T(1) + T(3.0 * {GELU_TANH_COEFF}) * x * x);
            result = grad * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * d_inner);
        } else {
            const T cdf = T(0.5) * (T(1) + erf(x * T({INV_SQRT_2})));
            const T pdf = exp(T(-0.5) * x * x) * T({INV_SQRT_2PI});
            result = grad * (cdf + x * pdf);
        }
        """),
    ),
    # One element of d(loss)/d(logits): w_t (p_c - [c == t]) scaled by the row's incoming
    # gradient, plus label smoothing's (W p_c - w_c) / C; zero on ignored rows.
    "cross_entropy_backward": (
        "raw T logits, raw int64 target, raw T weight, raw T lse, raw T row_grad, raw float64 weight_sum, "
        "int64 classes, int64 ignore_index, float64 smoothing",
        "T dx",
        """
        const ptrdiff_t row = i / classes, c = i % classes;
        const long long t = target[row];
        if (t == ignore_index) {
            dx = T(0);
        } else {
            const double g = (double)row_grad[row];
            const double hard = (1.0 - smoothing) * (double)weight[t] * g;
            const T p = exp(logits[i] - lse[row]);
            double value = hard * (double)p;
            if (smoothing != 0.0) {
                value += smoothing * g / classes * (weight_sum[0] * (double)p - (double)weight[c]);
            }
            // the CPU kernel stores the value, then subtracts hard from the target column
            dx = c == t ? T((double)T(value) - hard) : T(value);
        }
        """,
    ),
    # ---- optimizer updates: in place on the parameter and its state, in float64.
    # Optional state (momentum buffer, amsgrad's max, centered average) is a raw
    # parameter: when it is off, the wrapper passes the parameter itself and the flags
    # keep the body from touching it.
    "sgd_update": (
        "T gr, float64 lr, float64 wd, float64 momentum, float64 dampening, bool nesterov, bool maximize, bool first",
        "T p, raw T buf",
        """
        double g = maximize ? -(double)gr : (double)gr;
        if (wd != 0.0) g = g + wd * (double)p;
        if (momentum != 0.0) {
            buf[i] = T(first ? g : momentum * (double)buf[i] + (1.0 - dampening) * g);
            g = nesterov ? g + momentum * (double)buf[i] : (double)buf[i];
        }
        p = T((double)p - lr * g);
        """,
    ),
    "adam_update": (
        "T gr, float64 beta1, float64 beta2, float64 eps, float64 wd, bool decoupled, bool amsgrad, "
        "bool maximize, float64 step_size, float64 decay, float64 bc2_sqrt",
        "T p, T m, T v, raw T vmax",
        """
        double g = maximize ? -(double)gr : (double)gr;
        if (wd != 0.0) {
            if (decoupled) p = T((double)p * decay);   // AdamW: shrink the weight itself
            else g = g + wd * (double)p;               // Adam: L2 penalty in the gradient
        }
        m = T(mg_lerp((double)m, g, 1.0 - beta1));
        v = T((double)v * beta2 + (1.0 - beta2) * g * g);
        double second = (double)v;
        if (amsgrad) {
            if (v > vmax[i]) vmax[i] = v;
            second = (double)vmax[i];
        }
        const double denom = sqrt(second) / bc2_sqrt + eps;
        p = T((double)p - step_size * (double)m / denom);
        """,
    ),
    "rmsprop_update": (
        "T gr, float64 lr, float64 alpha, float64 eps, float64 wd, float64 momentum, bool centered, bool maximize",
        "T p, T sq, raw T ga, raw T buf",
        """
        double g = maximize ? -(double)gr : (double)gr;
        if (wd != 0.0) g = g + wd * (double)p;
        const double w = 1.0 - alpha;
        sq = T((double)sq * alpha + w * g * g);
        double avg;
        if (centered) {
            ga[i] = T(mg_lerp((double)ga[i], g, w));
            avg = sqrt((double)sq - (double)ga[i] * (double)ga[i]);
        } else {
            avg = sqrt((double)sq);
        }
        avg = avg + eps;
        if (momentum > 0.0) {
            buf[i] = T((double)buf[i] * momentum + g / avg);
            p = T((double)p - lr * (double)buf[i]);
        } else {
            p = T((double)p - lr * g / avg);
        }
        """,
    ),
    "adagrad_update": (
        "T gr, float64 clr, float64 wd, float64 eps, bool maximize",
        "T p, T s",
        """
        double g = maximize ? -(double)gr : (double)gr;
        if (wd != 0.0) g = g + wd * (double)p;
        s = T((double)s + g * g);
        p = T((double)p - clr * g / (sqrt((double)s) + eps));
        """,
    ),
    # Scatter-add: element (n, j) of grad adds itself to out[indices[n], j]. Out-of-range
    # rows are skipped (the Embedding op has checked them already; this only keeps a
    # wrong call from writing outside the buffer).
    "embedding_backward": (
        "raw I indices, T g, int64 D, int64 num_embeddings, int64 padding_idx",
        "raw T table",
        """
        const long long row = (long long)indices[i / D];
        if (row != padding_idx && row >= 0 && row < num_embeddings) {
            atomicAdd(&table[row * D + i % D], g);
        }
        """,
    ),
}


@functools.lru_cache(maxsize=None)
def _elementwise(name: str) -> Any:
    """The ElementwiseKernel ``name``, built on first use (CuPy compiles it per dtype)."""
    in_params, out_params, body = _ELEMENTWISE[name]
    return _cupy().ElementwiseKernel(in_params, out_params, body, "mg_" + name, preamble=_PREAMBLE)


# ----------------------------------------------------------------- activations


def tanh_backward(out, grad):
    if not _fused_float(out, grad):
        return _reference("tanh_backward")(out, grad)
    return _elementwise("tanh_backward")(out, grad)


def sigmoid_forward(a):
    if not _fused_float(a):
        return _reference("sigmoid_forward")(a)
    return _elementwise("sigmoid_forward")(a)


def sigmoid_backward(out, grad):
    if not _fused_float(out, grad):
        return _reference("sigmoid_backward")(out, grad)
    return _elementwise("sigmoid_backward")(out, grad)


def relu_backward(a, grad):
    if not _fused_float(a, grad):
        return _reference("relu_backward")(a, grad)
    return _elementwise("relu_backward")(a, grad)


def gelu_forward(a, use_tanh):
    if not _fused_float(a):
        return _reference("gelu_forward")(a, use_tanh)
    return _elementwise("gelu_forward")(a, bool(use_tanh))


def gelu_backward(a, grad, use_tanh):
    if not _fused_float(a, grad):
        return _reference("gelu_backward")(a, grad, use_tanh)
    return _elementwise("gelu_backward")(a, grad, bool(use_tanh))


# ----------------------------------------------------------------- cross-entropy

_CE_BLOCK_MAX = 256

_CE_FORWARD_SOURCE = r"""
typedef {ctype} T;

// Combine the blockDim.x partial values in buf (a power of two many) into buf[0].
__device__ void mg_block_reduce(double* buf, bool is_max) {{
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {{
        if (threadIdx.x < s) {{
            const double other = buf[threadIdx.x + s];
            buf[threadIdx.x] = is_max ? fmax(buf[threadIdx.x], other) : buf[threadIdx.x] + other;
        }}
        __syncthreads();
    }}
}}

// One block per row: log-sum-exp, the (weighted, smoothed) loss and the row's weight.
extern "C" __global__ void mg_cross_entropy_forward(
        const T* logits, const long long* target, const T* weight,
        const long long classes, const long long ignore_index, const double smoothing,
        T* loss, T* lse, T* row_weight) {{
    __shared__ double buf[{block_max}];
    const long long row = blockIdx.x;
    const T* x = logits + row * classes;
    const int tid = threadIdx.x;

    // 1. the row's max, so that exp never overflows
    double m = (double)x[0];
    for (long long c = tid; c < classes; c += blockDim.x) m = fmax(m, (double)x[c]);
    buf[tid] = m;
    __syncthreads();
    mg_block_reduce(buf, true);
    const T row_max = (T)buf[0];
    __syncthreads();

    // 2. log(sum exp(x - max)) + max; exp in T, the sum in double (as the CPU kernel)
    double total = 0.0;
    for (long long c = tid; c < classes; c += blockDim.x) total += (double)exp(x[c] - row_max);
    buf[tid] = total;
    __syncthreads();
    mg_block_reduce(buf, false);
    const double row_lse = log(buf[0]) + (double)row_max;
    __syncthreads();

    const long long t = target[row];
    if (t == ignore_index) {{   // the same for the whole block, so no thread skips a barrier
        if (tid == 0) {{ lse[row] = (T)row_lse; loss[row] = T(0); row_weight[row] = T(0); }}
        return;
    }}
    const double w = (double)weight[t];
    double value = (1.0 - smoothing) * w * (row_lse - (double)x[t]);

    // 3. label smoothing: the weighted mean of -log p over all classes
    if (smoothing != 0.0) {{
        double smooth = 0.0;
        for (long long c = tid; c < classes; c += blockDim.x) smooth += (double)weight[c] * (row_lse - (double)x[c]);
        buf[tid] = smooth;
        __syncthreads();
        mg_block_reduce(buf, false);
        value += smoothing * buf[0] / classes;
    }}
    if (tid == 0) {{ lse[row] = (T)row_lse; loss[row] = (T)value; row_weight[row] = (T)w; }}
}}
"""


@functools.lru_cache(maxsize=None)
def _cross_entropy_forward_kernel(dtype_name: str) -> Any:
    ctype = {"float32": "float", "float64": "double"}[dtype_name]
    source = _CE_FORWARD_SOURCE.format(ctype=ctype, block_max=_CE_BLOCK_MAX)
    return _cupy().RawKernel(source, "mg_cross_entropy_forward")


def _block_size(classes: int) -> int:
    """A power of two from 32 (one warp) to 256 covering the row when it can."""
    size = 32
    while size < classes and size < _CE_BLOCK_MAX:
        size *= 2
    return size


def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    cp = _cupy()
    if not _fused_float(logits, weight) or logits.shape[1] == 0:
        return _reference("cross_entropy_forward")(logits, target, weight, ignore_index, label_smoothing)
    n, classes = logits.shape
    loss = cp.empty(n, dtype=logits.dtype)
    lse = cp.empty(n, dtype=logits.dtype)
    row_weight = cp.empty(n, dtype=logits.dtype)
    if n == 0:
        return loss, lse, row_weight
    kernel = _cross_entropy_forward_kernel(logits.dtype.name)
    kernel(
        (n,),
        (_block_size(classes),),
        (
            cp.ascontiguousarray(logits),
            cp.ascontiguousarray(target, dtype=cp.int64),
            cp.ascontiguousarray(weight),
            np.int64(classes),
            np.int64(ignore_index),
            np.float64(label_smoothing),
            loss,
            lse,
            row_weight,
        ),
    )
    return loss, lse, row_weight


def cross_entropy_backward(logits, target, weight, lse, row_grad, ignore_index, label_smoothing):
    cp = _cupy()
    if not _fused_float(logits, weight, lse, row_grad):
        return _reference("cross_entropy_backward")(logits, target, weight, lse, row_grad, ignore_index,
                                                    label_smoothing)
    n, classes = logits.shape
    if label_smoothing:
        weight_sum = weight.sum(dtype=cp.float64).reshape(1)
    else:
        weight_sum = cp.zeros(1, dtype=cp.float64)  # unused: the body reads it only when smoothing
    out = cp.empty((n, classes), dtype=logits.dtype)
    _elementwise("cross_entropy_backward")(
        cp.ascontiguousarray(logits),
        cp.ascontiguousarray(target, dtype=cp.int64),
        cp.ascontiguousarray(weight),
        cp.ascontiguousarray(lse),
        cp.ascontiguousarray(row_grad),
        weight_sum,
        int(classes),
        int(ignore_index),
        float(label_smoothing),
        out,
    )
    return out


# ----------------------------------------------------------------- optimizer updates


def _opt_fused_ok(grad, *inplace) -> bool:
    """As on the CPU: one float dtype, and state arrays written in place are contiguous
    (a raw parameter is indexed by the element's linear index)."""
    dtype = grad.dtype
    return (dtype.kind == "f" and dtype.itemsize >= 4
            and all(a.dtype == dtype and a.flags.c_contiguous for a in inplace))


def sgd_update(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize, first_step):
    """SGD with optional momentum/dampening/nesterov/weight decay, in place."""
    used = [param] + ([momentum_buffer] if momentum != 0 else [])
    if not _opt_fused_ok(grad, *used) or grad.shape != param.shape:
        return _reference("sgd_update")(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening,
                                        nesterov, maximize, first_step)
    buf = param if momentum_buffer is None or momentum == 0 else momentum_buffer
    _elementwise("sgd_update")(grad, float(lr), float(weight_decay), float(momentum), float(dampening),
                               bool(nesterov), bool(maximize), bool(first_step), param, buf)


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                decoupled, amsgrad, maximize, bias_correction1, bias_correction2_sqrt):
    """Adam / AdamW (``decoupled``) with optional amsgrad, in place."""
    used = [param, exp_avg, exp_avg_sq] + ([max_exp_avg_sq] if amsgrad else [])
    if not _opt_fused_ok(grad, *used) or grad.shape != param.shape:
        return _reference("adam_update")(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                                         weight_decay, decoupled, amsgrad, maximize, bias_correction1,
                                         bias_correction2_sqrt)
    vmax = param if max_exp_avg_sq is None or not amsgrad else max_exp_avg_sq
    _elementwise("adam_update")(
        grad, float(beta1), float(beta2), float(eps), float(weight_decay), bool(decoupled), bool(amsgrad),
        bool(maximize), float(lr) / float(bias_correction1), 1.0 - float(lr) * float(weight_decay),
        float(bias_correction2_sqrt), param, exp_avg, exp_avg_sq, vmax,
    )


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
                   centered, maximize):
    """RMSprop with optional momentum and centering, in place."""
    used = [param, square_avg] + ([grad_avg] if centered else []) + ([momentum_buffer] if momentum > 0 else [])
    if not _opt_fused_ok(grad, *used) or grad.shape != param.shape:
        return _reference("rmsprop_update")(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                                            weight_decay, momentum, centered, maximize)
    ga = param if grad_avg is None or not centered else grad_avg
    buf = param if momentum_buffer is None or not momentum > 0 else momentum_buffer
    _elementwise("rmsprop_update")(grad, float(lr), float(alpha), float(eps), float(weight_decay), float(momentum),
                                   bool(centered), bool(maximize), param, square_avg, ga, buf)


def adagrad_update(param, grad, state_sum, clr, weight_decay, eps, maximize):
    """Adagrad, in place; ``clr`` is the decayed rate ``lr / (1 + (step - 1) * lr_decay)``."""
    if not _opt_fused_ok(grad, param, state_sum) or grad.shape != param.shape:
        return _reference("adagrad_update")(param, grad, state_sum, clr, weight_decay, eps, maximize)
    _elementwise("adagrad_update")(grad, float(clr), float(weight_decay), float(eps), bool(maximize),
                                   param, state_sum)


# ----------------------------------------------------------------- embedding


def embedding_backward(indices, grad, num_embeddings, padding_idx):
    """Scatter-add ``grad`` (N, D) rows into a zero (num_embeddings, D) buffer at ``indices`` (N,);
    the ``padding_idx`` row (-1: none) stays zero."""
    cp = _cupy()
    if not _fused_float(grad) or grad.ndim != 2:
        return _reference("embedding_backward")(indices, grad, num_embeddings, padding_idx)
    n, d = grad.shape
    out = cp.zeros((num_embeddings, d), dtype=grad.dtype)
    if n == 0 or d == 0:
        return out
    _elementwise("embedding_backward")(cp.ascontiguousarray(indices), grad, int(d), int(num_embeddings),
                                       int(padding_idx), out)
    return out
