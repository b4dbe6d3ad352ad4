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
import threading

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


# ----------------------------------------------------------------- exp, vectorised
#
# ``math.exp`` inside ``@njit`` is a call into libm, one element at a time: LLVM cannot
# vectorise a loop around it (there is no SVML here). For float32 the cross-entropy kernels
# use ``_act_exp``, Cephes' ``expf`` written out so LLVM turns the loop into SIMD code:
#
#   e^x = 2^n * e^r,  n = round(x / ln 2),  r = x - n ln 2  (|r| <= ln2 / 2),
#
# e^r from a degree-7 polynomial, and 2^n built directly as the float's bit pattern
# (exponent field n + 127). Rounding uses the 1.5 * 2^23 trick (adding it pushes the
# fraction bits out of a float32), so no float->int conversion is needed. Max error
# measured against float64: < 1 ulp (libm's is 0.5), 3-4x faster per element on the
# project's 2-core EPYC. float64 keeps ``math.exp``.

from llvmlite import ir as _ir  # noqa: E402
from numba import types as _nbt  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402
from numba.extending import overload as _overload_exp  # noqa: E402


@_intrinsic
def _float32_bits(typingctx, x):
    """The int32 whose bits are those of float32 ``x`` (no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.IntType(32))
    return _nbt.int32(_nbt.float32), codegen


@_intrinsic
def _bits_float32(typingctx, i):
    """The float32 whose bits are those of int32 ``i``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.FloatType())
    return _nbt.float32(_nbt.int32), codegen


def _act_exp(x):  # pragma: no cover - replaced by the overload inside jitted code
    return math.exp(x)


_EXP_LO, _EXP_HI = -87.33654, 88.37626  # e^x stays a normal float32 with 2^n in range
_EXP_ROUND = 12582912.0  # 1.5 * 2^23
_EXP_C1, _EXP_C2 = 0.693359375, -2.12194440e-4  # ln 2 split in two (Cody-Waite)
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


@_overload_exp(_act_exp)
def _act_exp_overload(x):
    if not (isinstance(x, _nbt.Float) and x.bitwidth == 32):
        return lambda x: math.exp(x)
    f32 = np.float32
    lo, hi, rnd = f32(_EXP_LO), f32(_EXP_HI), f32(_EXP_ROUND)
    log2e, c1, c2, one = f32(1.4426950408889634), f32(_EXP_C1), f32(_EXP_C2), f32(1.0)
    p5, p4, p3, p2, p1, p0 = (f32(c) for c in _EXP_P)
    rnd_bits = np.int32(np.array([_EXP_ROUND], np.float32).view(np.int32)[0])
    bias, shift = np.int32(127), np.int32(23)

    def exp32(x):
        x = min(max(x, lo), hi)
        t = x * log2e + rnd  # round(x / ln 2) sits in the low bits of t
        n = _float32_bits(t) - rnd_bits
        fx = t - rnd
        r = x - fx * c1
        r = r - fx * c2
        y = p5 * r + p4
        y = y * r + p3
        y = y * r + p2
        y = y * r + p1
        y = y * r + p0
        y = y * (r * r) + r + one
        return y * _bits_float32((n + bias) << shift)

    return exp32


# ----------------------------------------------------------------- cross-entropy
# One row at a time: the max, then e^(x - max) into a scratch row (one vectorised loop), its
# sum in float64, the log. Backward recomputes p = e^(x - lse) the same way.

_CE_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_CE_OPTS)
def _sum_float64(a):
    """sum(a) accumulated in float64 over four interleaved partial sums: one running sum
    would be a chain of dependent additions, four keep the adder busy."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = a.shape[0] - a.shape[0] % 4
    for c in range(0, n4, 4):
        s0 += a[c]
        s1 += a[c + 1]
        s2 += a[c + 2]
        s3 += a[c + 3]
    for c in range(n4, a.shape[0]):
        s0 += a[c]
    return (s0 + s1) + (s2 + s3)


@njit(**_CE_OPTS)
def _row_max(row):
    """max(row) over four interleaved running maxima. The row's e^(x - max) waits for it, and
    one running maximum is a chain of dependent compares as long as the row: with four, the
    char-LM's forward (2048 rows of 65) went from 0.24 to 0.16 ms (2-core Xeon). The same
    maximum as one running maximum (up to the sign of a zero), NaN included: a NaN in front
    stays, one further on is skipped by every compare (and then makes its row's sum NaN)."""
    n = row.shape[0]
    m0 = m1 = m2 = m3 = row[0]
    n4 = n - n % 4
    for c in range(0, n4, 4):
        a, b, d, e = row[c], row[c + 1], row[c + 2], row[c + 3]
        m0 = a if a > m0 else m0
        m1 = b if b > m1 else m1
        m2 = d if d > m2 else m2
        m3 = e if e > m3 else m3
    for c in range(n4, n):
        m0 = row[c] if row[c] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@njit(**_CE_OPTS)
def _cross_entropy_forward(logits, target, weight, ignore_index, smoothing, loss, lse, row_weight):
    n, classes = logits.shape
    shifted = np.empty(classes, dtype=logits.dtype)
    for i in range(n):
        row = logits[i]
        m = _row_max(row)
        for c in range(classes):
            shifted[c] = _act_exp(row[c] - m)
        total = _sum_float64(shifted)
        row_lse = math.log(total) + m
        lse[i] = row_lse
        t = target[i]
        if t == ignore_index:
            loss[i] = 0.0
            row_weight[i] = 0.0
            continue
        w = weight[t]
        row_weight[i] = w
        value = (1.0 - smoothing) * w * (row_lse - row[t])
        if smoothing != 0.0:
            smooth = 0.0
            for c in range(classes):
                smooth += weight[c] * (row_lse - row[c])
            value += smoothing * smooth / classes
        loss[i] = value


def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    n, classes = logits.shape
    loss = np.empty(n, dtype=logits.dtype)
    lse = np.empty(n, dtype=logits.dtype)
    row_weight = np.empty(n, dtype=logits.dtype)
    _cross_entropy_forward(logits, target, weight, int(ignore_index), float(label_smoothing), loss, lse, row_weight)
    return loss, lse, row_weight


@njit(**_CE_OPTS)
def _cross_entropy_backward(logits, target, weight, lse, row_grad, ignore_index, smoothing, out):
    n, classes = logits.shape
    weight_sum = 0.0
    for c in range(classes):
        weight_sum += weight[c]
    for i in range(n):
        t = target[i]
        row, grad = logits[i], out[i]
        if t == ignore_index:
            for c in range(classes):
                grad[c] = 0.0
            continue
        g = row_grad[i]
        hard = (1.0 - smoothing) * weight[t] * g
        row_lse = lse[i]
        # d/dx_c of w_t (lse - x_t) is w_t (p_c - [c == t]); the smoothing term adds (W p_c - w_c) / C
        if smoothing == 0.0:
            for c in range(classes):
                grad[c] = hard * _act_exp(row[c] - row_lse)
        else:
            soft = smoothing * g / classes
            for c in range(classes):
                p = _act_exp(row[c] - row_lse)
                grad[c] = hard * p + soft * (weight_sum * p - weight[c])
        grad[t] -= hard


def cross_entropy_backward(logits, target, weight, lse, row_grad, ignore_index, label_smoothing):
    out = np.empty_like(logits)
    _cross_entropy_backward(logits, target, weight, lse, row_grad, int(ignore_index), float(label_smoothing), out)
    return out


# ----------------------------------------------------------------- recurrent cells
#
# One call = one time step of one layer for the whole batch; microgradnn.ops.recurrent
# runs the loop and the GEMMs. Every kernel writes into arrays the caller allocated (no
# temporaries in the step loop). ``active`` is a (B,) uint8 mask: a row whose step is
# padding keeps its state and receives no gate gradient.
#
# Two numba details matter for speed. ``error_model="numpy"`` drops the division-by-zero
# check that otherwise stops LLVM from vectorising a loop with a division, and each gate
# is addressed through its own row view (``gates[b, H:2*H]``), which LLVM vectorises
# where ``gates[b, H + j]`` with a run-time H is not. Without SVML, ``math.tanh`` is a
# scalar libm call, so float32 uses a rational tanh (Eigen's, max error ~3e-7, i.e. float32
# rounding) built from multiplies, adds and one divide; float64 keeps the libm functions.

from numba import types as _nb_types  # noqa: E402
from numba.extending import overload as _overload  # noqa: E402

_TANH_CLAMP = 7.90531110763549805
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
           1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _act_tanh(x):  # pragma: no cover - replaced by the overload inside jitted code
    return math.tanh(x)


def _act_sigmoid(x):  # pragma: no cover - replaced by the overload inside jitted code
    return 1.0 / (1.0 + math.exp(-x))


def _is_float32(x):
    return isinstance(x, _nb_types.Float) and x.bitwidth == 32


@_overload(_act_tanh)
def _act_tanh_overload(x):
    if _is_float32(x):
        f32 = np.float32
        lim = f32(_TANH_CLAMP)
        p13, p11, p9, p7, p5, p3, p1 = (f32(c) for c in _TANH_P)
        q6, q4, q2, q0 = (f32(c) for c in _TANH_Q)

        def tanh32(x):
            x = min(max(x, -lim), lim)
            x2 = x * x
            p = x2 * p13 + p11
            p = x2 * p + p9
            p = x2 * p + p7
            p = x2 * p + p5
            p = x2 * p + p3
            p = x2 * p + p1
            q = x2 * q6 + q4
            q = x2 * q + q2
            q = x2 * q + q0
            return x * p / q

        return tanh32
    return lambda x: math.tanh(x)


@_overload(_act_sigmoid)
def _act_sigmoid_overload(x):
    if _is_float32(x):
        half = np.float32(0.5)
        return lambda x: half * _act_tanh(half * x) + half

    def sigmoid64(x):
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)  # e^x / (1 + e^x): never overflows for very negative x
        return e / (1.0 + e)

    return sigmoid64


_RNN_OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@njit(**_RNN_OPTS)
def _lstm_cell_forward(gates, hh, bias, c_prev, h_prev, active, h_new, c_new):
    H = c_prev.shape[1]
    for b in range(gates.shape[0]):
        pre, rec = gates[b], hh[b]
        # The pre-activations of all four gates, x W_ih^T + h W_hh^T + b, come first, in a
        # loop of their own. LLVM vectorises a loop only after checking, at run time and
        # once per row, that no array it writes overlaps one it reads: with three arrays
        # that is cheap, with the fourteen of one fused loop it was a third of the cell's
        # time (EPYC, B 32: H 128 10 -> 6.7 us per step, H 256 14 -> 12.7, same bits).
        for k in range(4 * H):
            pre[k] = pre[k] + rec[k] + bias[k]
        gi, gf, gg, go = pre[:H], pre[H : 2 * H], pre[2 * H : 3 * H], pre[3 * H :]
        cp, hp, cn, hn = c_prev[b], h_prev[b], c_new[b], h_new[b]
        if active[b]:
            for j in range(H):
                i = _act_sigmoid(gi[j])
                f = _act_sigmoid(gf[j])
                g = _act_tanh(gg[j])
                o = _act_sigmoid(go[j])
                c = f * cp[j] + i * g
                cn[j] = c
                hn[j] = o * _act_tanh(c)
                gi[j] = i
                gf[j] = f
                gg[j] = g
                go[j] = o
        else:
            for j in range(H):
                gi[j] = _act_sigmoid(gi[j])
                gf[j] = _act_sigmoid(gf[j])
                gg[j] = _act_tanh(gg[j])
                go[j] = _act_sigmoid(go[j])
                cn[j] = cp[j]
                hn[j] = hp[j]


def lstm_cell_forward(gates, hh, bias, c_prev, h_prev, active, h_new, c_new):
    """One LSTM step, in place: ``gates`` (B, 4H) holds x_t W_ih^T on entry and the
    activations i, f, g, o on exit; writes ``h_new``, ``c_new`` (B, H)."""
    if gates.dtype.itemsize < 4:
        return _reference("lstm_cell_forward")(gates, hh, bias, c_prev, h_prev, active, h_new, c_new)
    _lstm_cell_forward(gates, hh, bias, c_prev, h_prev, active, h_new, c_new)


@njit(**_RNN_OPTS)
def _lstm_cell_backward(acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total):
    H = c_prev.shape[1]
    one = acts.dtype.type(1.0)
    zero = acts.dtype.type(0.0)
    for b in range(acts.shape[0]):
        cr, dr, dy, tot = carry[b], dh_rec[b], dout[b], dh_total[b]
        if active[b]:
            # Three loops over a few arrays each, not one over fifteen: see the forward
            # kernel (B 32, H 128: 13 -> 8.7 us per step, same bits).
            for j in range(H):  # the gradient reaching h_t
                tot[j] = cr[j] + dr[j] + dy[j]
                cr[j] = zero
            ai, af, ag, ao = acts[b, :H], acts[b, H : 2 * H], acts[b, 2 * H : 3 * H], acts[b, 3 * H :]
            di, df, dg, do = dgates[b, :H], dgates[b, H : 2 * H], dgates[b, 2 * H : 3 * H], dgates[b, 3 * H :]
            cp, cn, dcb = c_prev[b], c_new[b], dc[b]
            for j in range(H):  # through h_t = o * tanh(c_t): to o, and dL/dc_t in full
                dh = tot[j]
                o = ao[j]
                tc = _act_tanh(cn[j])
                dcb[j] = dcb[j] + dh * o * (one - tc * tc)
                do[j] = dh * tc * o * (one - o)
            for j in range(H):  # through c_t = f * c_{t-1} + i * g: to i, f, g and c_{t-1}
                dcc = dcb[j]
                i = ai[j]
                f = af[j]
                g = ag[j]
                di[j] = dcc * g * i * (one - i)
                df[j] = dcc * cp[j] * f * (one - f)
                dg[j] = dcc * i * (one - g * g)
                dcb[j] = dcc * f
        else:
            di, df, dg, do = dgates[b, :H], dgates[b, H : 2 * H], dgates[b, 2 * H : 3 * H], dgates[b, 3 * H :]
            for j in range(H):
                dh = cr[j] + dr[j]
                tot[j] = dh
                cr[j] = dh
                di[j] = zero
                df[j] = zero
                dg[j] = zero
                do[j] = zero


def lstm_cell_backward(acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total):
    """Backward of one LSTM step, in place. The gradient reaching h_t is
    ``carry + dh_rec + dout`` (dout counts only where the step is active); it is written to
    ``dh_total``. Writes the pre-activation gate gradients to ``dgates`` (B, 4H), updates
    ``dc`` to dL/dc_{t-1} and ``carry`` to the part of dL/dh_{t-1} that does not go
    through W_hh (zero on active rows, everything on padded rows)."""
    if acts.dtype.itemsize < 4:
        return _reference("lstm_cell_backward")(acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total)
    _lstm_cell_backward(acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total)


@njit(**_RNN_OPTS)
def _gru_cell_forward(gates, hh, bias, b_hn, h_prev, active, h_new):
    H = h_prev.shape[1]
    bn = bias[2 * H :]
    for b in range(gates.shape[0]):
        pre, rec = gates[b], hh[b]
        # loops over a few arrays each, as in the LSTM kernel (B 32, H 128: 5.3 -> 4.4 us)
        for k in range(2 * H):  # the pre-activations of r and z
            pre[k] = pre[k] + rec[k] + bias[k]
        rn = rec[2 * H :]
        for j in range(H):  # W_hn h_{t-1} + b_hn, which r scales (kept for backward)
            rn[j] = rn[j] + b_hn[j]
        gr, gz, gn = pre[:H], pre[H : 2 * H], pre[2 * H :]
        for j in range(H):
            r = _act_sigmoid(gr[j])
            n = _act_tanh(gn[j] + bn[j] + r * rn[j])
            gr[j] = r
            gz[j] = _act_sigmoid(gz[j])
            gn[j] = n
        hp, hn = h_prev[b], h_new[b]
        if active[b]:
            for j in range(H):
                n = gn[j]
                hn[j] = n + gz[j] * (hp[j] - n)
        else:
            for j in range(H):
                hn[j] = hp[j]


def gru_cell_forward(gates, hh, bias, b_hn, h_prev, active, h_new):
    """One GRU step, in place: ``gates`` (B, 3H) holds x_t W_ih^T on entry and r, z, n on
    exit; ``hh`` (B, 3H) holds h_{t-1} W_hh^T on entry and its n slice becomes
    W_hn h_{t-1} + b_hn (backward needs it). ``bias`` is (b_ir+b_hr, b_iz+b_hz, b_in)."""
    if gates.dtype.itemsize < 4:
        return _reference("gru_cell_forward")(gates, hh, bias, b_hn, h_prev, active, h_new)
    _gru_cell_forward(gates, hh, bias, b_hn, h_prev, active, h_new)


@njit(**_RNN_OPTS)
def _gru_cell_backward(acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total):
    H = h_prev.shape[1]
    one = acts.dtype.type(1.0)
    zero = acts.dtype.type(0.0)
    for b in range(acts.shape[0]):
        hp, dy, cr, dr, tot = h_prev[b], dout[b], carry[b], dh_rec[b], dh_total[b]
        xr, xz, xn = dgx[b, :H], dgx[b, H : 2 * H], dgx[b, 2 * H :]
        hr, hz, hn = dgh[b, :H], dgh[b, H : 2 * H], dgh[b, 2 * H :]
        if active[b]:
            # three loops over a few arrays each (B 32, H 128: 14.7 -> 8.2 us per step)
            for j in range(H):  # the gradient reaching h_t
                tot[j] = cr[j] + dr[j] + dy[j]
            ar, az, an = acts[b, :H], acts[b, H : 2 * H], acts[b, 2 * H :]
            nh = hh[b, 2 * H :]
            for j in range(H):  # through h_t = n + z * (h_{t-1} - n): to z, n and h_{t-1}
                dh = tot[j]
                z = az[j]
                n = an[j]
                dn = dh * (one - z) * (one - n * n)
                dz = dh * (hp[j] - n) * z * (one - z)
                cr[j] = dh * z
                xz[j] = dz
                xn[j] = dn
                hz[j] = dz
            for j in range(H):  # through n = tanh(.. + r * (W_hn h_{t-1} + b_hn)): to r
                r = ar[j]
                dn = xn[j]
                drr = dn * nh[j] * r * (one - r)
                xr[j] = drr
                hr[j] = drr
                hn[j] = dn * r
        else:
            for j in range(H):
                dh = cr[j] + dr[j]
                tot[j] = dh
                cr[j] = dh
                xr[j] = zero
                xz[j] = zero
                xn[j] = zero
                hr[j] = zero
                hz[j] = zero
                hn[j] = zero


def gru_cell_backward(acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total):
    """Backward of one GRU step, in place. Writes the gate gradients seen by W_ih
    (``dgx``) and by W_hh (``dgh``, whose n slice is scaled by r) and updates ``carry`` to
    the direct part z * dh of dL/dh_{t-1} (all of it on padded rows)."""
    if acts.dtype.itemsize < 4:
        return _reference("gru_cell_backward")(acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total)
    _gru_cell_backward(acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total)


@njit(**_RNN_OPTS)
def _rnn_cell_forward(gates, hh, bias, h_prev, active, h_new, relu):
    H = h_prev.shape[1]
    zero = gates.dtype.type(0.0)
    for b in range(gates.shape[0]):
        g, r, hp, hn = gates[b], hh[b], h_prev[b], h_new[b]
        if active[b]:
            if relu:
                for j in range(H):
                    hn[j] = max(g[j] + r[j] + bias[j], zero)
            else:
                for j in range(H):
                    hn[j] = _act_tanh(g[j] + r[j] + bias[j])
        else:
            for j in range(H):
                hn[j] = hp[j]


def rnn_cell_forward(gates, hh, bias, h_prev, active, h_new, relu):
    """One Elman RNN step: ``h_new = act(gates + hh + bias)`` on active rows, ``h_prev``
    elsewhere; ``act`` is relu when ``relu`` else tanh."""
    if gates.dtype.itemsize < 4:
        return _reference("rnn_cell_forward")(gates, hh, bias, h_prev, active, h_new, relu)
    _rnn_cell_forward(gates, hh, bias, h_prev, active, h_new, bool(relu))


@njit(**_RNN_OPTS)
def _rnn_cell_backward(h_new, dout, carry, dh_rec, active, dgates, dh_total, relu):
    H = h_new.shape[1]
    one = h_new.dtype.type(1.0)
    zero = h_new.dtype.type(0.0)
    for b in range(h_new.shape[0]):
        hn, dy, cr, dr, dg, tot = h_new[b], dout[b], carry[b], dh_rec[b], dgates[b], dh_total[b]
        if active[b]:
            for j in range(H):
                dh = cr[j] + dr[j] + dy[j]
                tot[j] = dh
                cr[j] = zero
                h = hn[j]
                if relu:
                    dg[j] = dh if h > zero else zero
                else:
                    dg[j] = dh * (one - h * h)
        else:
            for j in range(H):
                dh = cr[j] + dr[j]
                tot[j] = dh
                cr[j] = dh
                dg[j] = zero


def rnn_cell_backward(h_new, dout, carry, dh_rec, active, dgates, dh_total, relu):
    """Backward of one Elman RNN step, in place (see :func:`lstm_cell_backward`)."""
    if h_new.dtype.itemsize < 4:
        return _reference("rnn_cell_backward")(h_new, dout, carry, dh_rec, active, dgates, dh_total, relu)
    _rnn_cell_backward(h_new, dout, carry, dh_rec, active, dgates, dh_total, bool(relu))


# ----------------------------------------------------------------- whole-sequence drivers
# The time loop of a fused recurrent layer, compiled: per step one BLAS product (numpy's own
# OpenBLAS, see backend/cblas.py; with an OpenBLAS transpose after it on most routes) and one
# of the cell kernels above, with no return to the
# interpreter in between. ops/recurrent.py calls them through ``backend.sequence_driver``;
# they are a CPU-side structure, not kernels every backend must have (the CUDA backend runs
# the same per-step kernels from its Python loop), so they are not in the kernel tables the
# parity test compares. Their reference is that per-step loop: tests/test_sequence_drivers.py
# checks both give the same numbers. Weights are used in PyTorch's own (G*H, H) layout: the
# forward product h @ W_hh^T is a GEMM with a transposed operand, so there is no copy of
# W_hh to prepare or to refresh after an optimizer step.

from numba import carray as _carray  # noqa: E402
from numba import types as _t  # noqa: E402

from . import cblas as _cblas  # noqa: E402


@_intrinsic
def _pointer_like(typingctx, address, like):
    """The int ``address`` as a pointer to ``like``'s element type (for ``carray``)."""
    pointer = _t.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, like), codegen


@njit(cache=True, nogil=True)
def _view(address, like, shape):
    """The array of ``shape`` at ``address`` (compiled code that OpenBLAS's threads run gets its
    arrays as addresses in an int64 argument block), typed like the array ``like``."""
    return _carray(_pointer_like(address, like), shape)


_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_i32, _i64 = _t.int32, _t.int64
_gemm_args = lambda real: (_i32, _i32, _i32, _i64, _i64, _i64, real, _i64, _i64, _i64, _i64, real, _i64, _i64)  # noqa: E731
_gemv_args = lambda real: (_i32, _i32, _i64, _i64, real, _i64, _i64, _i64, _i64, real, _i64, _i64)  # noqa: E731
_sgemm = _t.ExternalFunction(_cblas.SGEMM, _t.void(*_gemm_args(_t.float32)))
_dgemm = _t.ExternalFunction(_cblas.DGEMM, _t.void(*_gemm_args(_t.float64)))
_sgemv = _t.ExternalFunction(_cblas.SGEMV, _t.void(*_gemv_args(_t.float32)))
_dgemv = _t.ExternalFunction(_cblas.DGEMV, _t.void(*_gemv_args(_t.float64)))
_omatcopy_args = lambda real: (_i32, _i32, _i64, _i64, real, _i64, _i64, _i64, _i64)  # noqa: E731
_somatcopy = _t.ExternalFunction(_cblas.SOMATCOPY, _t.void(*_omatcopy_args(_t.float32)))
_domatcopy = _t.ExternalFunction(_cblas.DOMATCOPY, _t.void(*_omatcopy_args(_t.float64)))


@njit(cache=True, nogil=True)
def _gemm(a, b, c, trans_b, beta):
    """c = a @ b (or a @ b.T when ``trans_b``) + beta * c. Rows of a, b, c must be
    contiguous (any row stride); all three share one float dtype."""
    M, K = a.shape
    N = c.shape[1]
    size = a.itemsize
    lda, ldb, ldc = a.strides[0] // size, b.strides[0] // size, c.strides[0] // size
    tb = _TRANS if trans_b else _NO_TRANS
    if size == 4:
        _sgemm(_ROW_MAJOR, _NO_TRANS, tb, M, N, K, np.float32(1.0), a.ctypes.data, max(lda, 1),
               b.ctypes.data, max(ldb, 1), np.float32(beta), c.ctypes.data, max(ldc, 1))
    else:
        _dgemm(_ROW_MAJOR, _NO_TRANS, tb, M, N, K, 1.0, a.ctypes.data, max(lda, 1),
               b.ctypes.data, max(ldb, 1), beta, c.ctypes.data, max(ldc, 1))


@njit(cache=True, nogil=True)
def _gemv(w, x, y, beta):
    """y = w @ x + beta * y for a C-contiguous (M, N) w and contiguous x (N,), y (M,)."""
    M, N = w.shape
    if w.itemsize == 4:
        _sgemv(_ROW_MAJOR, _NO_TRANS, M, N, np.float32(1.0), w.ctypes.data, max(N, 1), x.ctypes.data, 1,
               np.float32(beta), y.ctypes.data, 1)
    else:
        _dgemv(_ROW_MAJOR, _NO_TRANS, M, N, 1.0, w.ctypes.data, max(N, 1), x.ctypes.data, 1, beta, y.ctypes.data, 1)


@njit(cache=True, nogil=True)
def _transpose_into(a, out):
    """out = a.T for an (M, N) a and an (N, M) out, rows of both contiguous (any row stride).

    OpenBLAS's ``omatcopy``: a compiled element-by-element loop of ours took 55-60 us for the
    (1024, 32) block of an LSTM step at H 256 right after the GEMM that wrote it, omatcopy ~12."""
    M, N = a.shape
    size = a.itemsize
    lda, ldo = a.strides[0] // size, out.strides[0] // size
    if size == 4:
        _somatcopy(_ROW_MAJOR, _TRANS, M, N, np.float32(1.0), a.ctypes.data, max(lda, 1), out.ctypes.data, max(ldo, 1))
    else:
        _domatcopy(_ROW_MAJOR, _TRANS, M, N, 1.0, a.ctypes.data, max(lda, 1), out.ctypes.data, max(ldo, 1))


#: The batch sizes, widths and weight sizes at which ``_times_transposed`` and ``_times_weight``
#: change route.
_GEMV_ROWS = 4
_SMALL_GEMM_BYTES = 2 << 20
_TRANSPOSED_ROWS = 128
_BACKWARD_TRANSPOSED_ROWS = 32
_BACKWARD_TRANSPOSED_WIDTH = 256


@njit(cache=True, nogil=True)
def _times_transposed(h, w, out, small):
    """out = h @ w.T for the forward recurrent product, w in PyTorch's (G*H, H) layout.

    A GEMM packs its operands into its own blocked layout on every call, whatever the
    number of rows, and with a batch of a few rows packing w is most of the work. Three
    routes, by batch size (per step, 2 threads; H 128: GEMV 7 vs GEMM 38 us at 1 row):

    * one matrix-vector product per row, reading w's rows where they lie: for 1 row, and
      up to ``_GEMV_ROWS`` rows unless ``small`` and w fits in ``_SMALL_GEMM_BYTES``;
    * up to ``_TRANSPOSED_ROWS`` rows, the product the other way round, ``out.T = w @ h.T``,
      into a scratch block that OpenBLAS's ``omatcopy`` then transposes into ``out``: OpenBLAS
      gives w the role its kernels pack cheaply (Xeon, avx512, 2 threads, LSTM H 256: 134 vs
      184 us at 32 rows, 217 vs 241 at 64, 515 vs 563 at 128; H 128, 8 rows: 20 vs 33). With
      ``small`` (OpenBLAS's small-matrix kernels, ``cblas.SMALL_GEMM``) h.T is first copied
      out so the GEMM is the plain NN one, which those kernels run without packing anything
      (EPYC, avx512, 2 threads, LSTM H 128: 3.5 vs 9.0 us for 4 rows by GEMVs, 7.2 vs 8.0 for
      8 rows; H 64, 8 rows: 2.1 vs 3.6; on Haswell's kernels no gain, so it is not taken);
    * beyond, the plain GEMM (not measured there).
    """
    B = h.shape[0]
    if B == 1 or (B <= _GEMV_ROWS and not (small and w.size * w.itemsize <= _SMALL_GEMM_BYTES)):
        for b in range(B):
            _gemv(w, h[b], out[b], 0.0)
    elif B <= _TRANSPOSED_ROWS:
        block = np.empty((w.shape[0], B), out.dtype)
        if small:
            h_t = np.empty((h.shape[1], B), h.dtype)
            _transpose_into(h, h_t)
            _gemm(w, h_t, block, False, 0.0)
        else:
            _gemm(w, h, block, True, 0.0)
        _transpose_into(block, out)
    else:
        _gemm(h, w, out, True, 0.0)


@njit(cache=True, nogil=True)
def _times_weight(g, w, out):
    """out = g @ w for the backward recurrent product (g (B, G*H) gate gradients, w (G*H, H)).

    For a wide layer and a small batch, ``out.T = w.T @ g.T`` (both operands transposed) and
    one ``omatcopy`` is faster, for the same reason as in :func:`_times_transposed` (Xeon,
    2 threads, LSTM H 256, 32 rows: 144 vs 186 us; H 512, 32 rows: 743 vs 792); with 64
    rows or more, or H 128 and less, the plain GEMM is (H 128, 32 rows: 47 vs 50)."""
    B, H = g.shape[0], w.shape[1]
    if _GEMV_ROWS < B <= _BACKWARD_TRANSPOSED_ROWS and H >= _BACKWARD_TRANSPOSED_WIDTH:
        G = w.shape[0]
        block = np.empty((H, B), out.dtype)
        size = g.itemsize
        ldw, ldg = w.strides[0] // size, g.strides[0] // size
        if size == 4:
            _sgemm(_ROW_MAJOR, _TRANS, _TRANS, H, B, G, np.float32(1.0), w.ctypes.data, max(ldw, 1),
                   g.ctypes.data, max(ldg, 1), np.float32(0.0), block.ctypes.data, max(B, 1))
        else:
            _dgemm(_ROW_MAJOR, _TRANS, _TRANS, H, B, G, 1.0, w.ctypes.data, max(ldw, 1),
                   g.ctypes.data, max(ldg, 1), 0.0, block.ctypes.data, max(B, 1))
        _transpose_into(block, out)
    else:
        _gemm(g, w, out, False, 0.0)


@njit(cache=True, nogil=True)
def _slots(T, s, reverse):
    """Step s of the processing order: (t, slot of h_{t-1}, slot of h_t) (ops/recurrent._steps)."""
    if reverse:
        t = T - 1 - s
        return t, t + 1, t
    return s, s, s + 1


@njit(**_RNN_OPTS)
def _lstm_sequence_forward(gates, w_hh, bias, hs, cs, mask, hh, reverse, small):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _times_transposed(hs[p], w_hh, hh, small)
        _lstm_cell_forward(gates[t], hh, bias, cs[p], hs[p], mask[t], hs[n], cs[n])


@njit(**_RNN_OPTS)
def _lstm_sequence_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh, reverse, needs_dh0):
    T = acts.shape[0]
    record = dh_total.shape[0] == T  # else one (1, B, H) scratch step
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)  # backward visits the last processed step first
        _lstm_cell_backward(acts[t], cs[p], cs[n], dout[t], carry, dh_rec, dc, mask[t], dgates[t],
                            dh_total[t] if record else dh_total[0])
        if k != T - 1 or needs_dh0:  # the last product only feeds dL/dh0
            _times_weight(dgates[t], w_hh, dh_rec)


# The LSTM with a projection (PyTorch's ``proj_size``): the cell's h_t = o * tanh(c_t) (H
# wide) is projected down, r_t = h_t @ W_hr^T (P wide), and r is what the layer outputs and
# what the next step reads (W_hh is (4H, P)). The drivers reuse the plain LSTM cell kernels
# unchanged and add one GEMM per step on each side:
#   forward   hh = r_{t-1} W_hh^T ; cell -> h_t, c_t ; r_t = h_t W_hr^T ; padded rows keep r_{t-1}
#   backward  dr = what reaches r_t ; dh = dr W_hr ; cell backward with dout = dh ; dr_rec = dgates W_hh
# ``hs`` holds the H-wide h's (slot of h0 zeroed: only r is a state; on padded rows the cell
# copies the previous h, so every slot stays finite for the dW_hr GEMM, where dr is 0 there).


@njit(**_RNN_OPTS)
def _keep_padded_rows(active, r_prev, r_new):
    """A padded step carries the projected state unchanged: r_new[b] = r_prev[b] there."""
    for b in range(r_new.shape[0]):
        if not active[b]:
            r_new[b, :] = r_prev[b, :]


@njit(**_RNN_OPTS)
def _projected_grad_step(dout, carry, dr_rec, active, dr, dr_total):
    """The gradient reaching r_t, the projected state (what the cell backward does for h).

    On an active row it is ``carry + dr_rec + dout`` and all of it goes into ``dr`` (to flow
    through W_hr into the cell); on a padded row r_t is r_{t-1} carried over, so the output
    (0 there) adds nothing and the whole gradient moves on in ``carry`` (``dr`` is 0)."""
    zero = dr.dtype.type(0.0)
    for b in range(dr.shape[0]):
        dy, cr, rec, d, tot = dout[b], carry[b], dr_rec[b], dr[b], dr_total[b]
        if active[b]:
            for j in range(dr.shape[1]):
                g = cr[j] + rec[j] + dy[j]
                tot[j] = g
                d[j] = g
                cr[j] = zero
        else:
            for j in range(dr.shape[1]):
                g = cr[j] + rec[j]
                tot[j] = g
                d[j] = zero
                cr[j] = g


@njit(**_RNN_OPTS)
def _lstmp_sequence_forward(gates, w_hh, w_hr, bias, rs, hs, cs, mask, hh, reverse, small):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _times_transposed(rs[p], w_hh, hh, small)  # the recurrent input is the projected state r_{t-1}
        _lstm_cell_forward(gates[t], hh, bias, cs[p], hs[p], mask[t], hs[n], cs[n])
        _times_transposed(hs[n], w_hr, rs[n], small)  # r_t = h_t W_hr^T
        _keep_padded_rows(mask[t], rs[p], rs[n])


@njit(**_RNN_OPTS)
def _lstmp_sequence_backward(acts, cs, dout, carry, dr_rec, dc, mask, dgates, dr, dh, zeros, scratch, dr_total,
                             w_hh, w_hr, reverse, needs_dh0):
    T = acts.shape[0]
    record = dr_total.shape[0] == T  # else one (1, B, P) scratch step
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        _projected_grad_step(dout[t], carry, dr_rec, mask[t], dr[t], dr_total[t] if record else dr_total[0])
        _times_weight(dr[t], w_hr, dh)  # dL/dh_t = dr_t W_hr (0 on padded rows)
        # The plain cell backward with dh as its only incoming gradient: carry and dh_rec are
        # the same all-zero (B, H) array (it stays zero: active rows reset it to 0, padded
        # rows write 0 + 0), padded rows get zero gate gradients and pass dc on unchanged.
        _lstm_cell_backward(acts[t], cs[p], cs[n], dh, zeros, zeros, dc, mask[t], dgates[t], scratch)
        if k != T - 1 or needs_dh0:  # the last product only feeds dL/dh0
            _times_weight(dgates[t], w_hh, dr_rec)


@njit(**_RNN_OPTS)
def _gru_sequence_forward(gates, w_hh, bias, b_hn, hs, mask, hh, reverse, small):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _times_transposed(hs[p], w_hh, hh[t], small)
        _gru_cell_forward(gates[t], hh[t], bias, b_hn, hs[p], mask[t], hs[n])


@njit(**_RNN_OPTS)
def _gru_sequence_backward(acts, hh, hs, dout, carry, dh_rec, mask, dgx, dgh, dh_total, w_hh, reverse, needs_dh0):
    T = acts.shape[0]
    record = dh_total.shape[0] == T  # else one (1, B, H) scratch step
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        _gru_cell_backward(acts[t], hh[t], hs[p], dout[t], carry, dh_rec, mask[t], dgx[t], dgh[t],
                           dh_total[t] if record else dh_total[0])
        if k != T - 1 or needs_dh0:
            _times_weight(dgh[t], w_hh, dh_rec)


@njit(**_RNN_OPTS)
def _rnn_sequence_forward(gates, w_hh, bias, hs, mask, hh, reverse, relu, small):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _times_transposed(hs[p], w_hh, hh, small)
        _rnn_cell_forward(gates[t], hh, bias, hs[p], mask[t], hs[n], relu)


@njit(**_RNN_OPTS)
def _rnn_sequence_backward(hs, dout, carry, dh_rec, mask, dgates, dh_total, w_hh, reverse, needs_dh0, relu):
    T = dgates.shape[0]
    record = dh_total.shape[0] == T  # else one (1, B, H) scratch step
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        _rnn_cell_backward(hs[n], dout[t], carry, dh_rec, mask[t], dgates[t], dh_total[t] if record else dh_total[0], relu)
        if k != T - 1 or needs_dh0:
            _times_weight(dgates[t], w_hh, dh_rec)


# One time step of a batch-1 layer for sampling (nn/sampling.py): two matrix-vector
# products in PyTorch's weight layout and the cell kernel, in one compiled call. ``x`` and
# the states are (1, n) rows; ``gates`` and ``hh`` are (1, G*H) scratch rows.


@njit(**_RNN_OPTS)
def _lstm_sample_step(w_ih, w_hh, bias, x, h, c, gates, hh, h_new, c_new, active):
    _gemv(w_ih, x[0], gates[0], 0.0)
    _gemv(w_hh, h[0], hh[0], 0.0)
    _lstm_cell_forward(gates, hh, bias, c, h, active, h_new, c_new)


@njit(**_RNN_OPTS)
def _gru_sample_step(w_ih, w_hh, bias, b_hn, x, h, gates, hh, h_new, active):
    _gemv(w_ih, x[0], gates[0], 0.0)
    _gemv(w_hh, h[0], hh[0], 0.0)
    _gru_cell_forward(gates, hh, bias, b_hn, h, active, h_new)


@njit(**_RNN_OPTS)
def _rnn_sample_step(w_ih, w_hh, bias, x, h, gates, hh, h_new, active, relu):
    _gemv(w_ih, x[0], gates[0], 0.0)
    _gemv(w_hh, h[0], hh[0], 0.0)
    _rnn_cell_forward(gates, hh, bias, h, active, h_new, relu)


@njit(cache=True, nogil=True)
def _affine_row(w, x, b, y):
    """y = w @ x + b for one row: the projection of an LSTM with proj_size and the head."""
    y[:] = b
    _gemv(w, x, y, 1.0)


def _with_route(driver, small: bool):
    """``driver`` with its last argument, the forward product's route flag, bound."""
    def bound(*args):
        return driver(*args, small)
    bound.__name__ = bound.__qualname__ = driver.__name__
    return bound


def _sequence_drivers(small_gemm: bool | None = None) -> dict:
    """name -> compiled whole-sequence driver; empty where numpy's BLAS can't be called
    from compiled code (then ops/recurrent.py keeps its per-step loop).

    The forward drivers get the route of :func:`_times_transposed` bound: ``small_gemm``,
    by default whether this process's OpenBLAS has its small-matrix kernels. It is an
    argument, not a constant compiled in, because numba's disk cache outlives the choice
    (``OPENBLAS_CORETYPE`` can change it between two runs on one machine)."""
    if not _cblas.AVAILABLE:
        return {}
    small = _cblas.SMALL_GEMM if small_gemm is None else bool(small_gemm)
    return {
        "lstm_sequence_forward": _with_route(_lstm_sequence_forward, small),
        "lstm_sequence_backward": _lstm_sequence_backward,
        "lstmp_sequence_forward": _with_route(_lstmp_sequence_forward, small),
        "lstmp_sequence_backward": _lstmp_sequence_backward,
        "gru_sequence_forward": _with_route(_gru_sequence_forward, small),
        "gru_sequence_backward": _gru_sequence_backward,
        "rnn_sequence_forward": _with_route(_rnn_sequence_forward, small),
        "rnn_sequence_backward": _rnn_sequence_backward,
        "lstm_sample_step": _lstm_sample_step,
        "gru_sample_step": _gru_sample_step,
        "rnn_sample_step": _rnn_sample_step,
        "affine_row": _affine_row,
    }


SEQUENCE_DRIVERS = _sequence_drivers()


# ----------------------------------------------------------------- optimizer updates
# One pass over memory per parameter, in place on the parameter and its state; the grad is
# only read. The arithmetic is torch.optim's (see reference.py), done in float64 and stored
# in the arrays' dtype. Non-contiguous or mixed-dtype arrays go to the reference twin, which
# is in place too. Unused optional state (None) is replaced by ``param``: the flags keep the
# kernel from touching it.

_OPT_OPTS = dict(cache=True, nogil=True, error_model="numpy")


def _opt_fused_ok(grad, *inplace) -> bool:
    """The numba path needs one float dtype and contiguous in-place arrays (a strided grad
    is only read, so the wrapper makes it contiguous)."""
    dtype = grad.dtype
    return (dtype.kind == "f" and dtype.itemsize >= 4
            and all(a.dtype == dtype and a.flags.c_contiguous for a in inplace))


def _opt_args(param, *optional):
    return tuple(param.reshape(-1) if a is None else a.reshape(-1) for a in optional)


@njit(**_OPT_OPTS)
def _lerp(start, end, weight):
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


@njit(**_OPT_OPTS)
def _sgd_update(p, gr, buf, lr, wd, momentum, dampening, nesterov, maximize, first):
    for i in range(p.size):
        g = -gr[i] if maximize else gr[i]
        if wd != 0.0:
            g = g + wd * p[i]
        if momentum != 0.0:
            if first:
                b = g
            else:
                b = momentum * buf[i] + (1.0 - dampening) * g
            buf[i] = b
            if nesterov:
                g = g + momentum * buf[i]
            else:
                g = buf[i]
        p[i] = p[i] - lr * g


def sgd_update(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening, nesterov, maximize, first_step):
    """SGD with optional momentum/dampening/nesterov/weight decay, in place. On the first
    step the momentum buffer is set to the (decayed) gradient, as in torch."""
    used = [param] + ([momentum_buffer] if momentum != 0 else [])
    if not _opt_fused_ok(grad, *used):
        return _reference("sgd_update")(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening,
                                        nesterov, maximize, first_step)
    (buf,) = _opt_args(param, momentum_buffer)
    _sgd_update(param.reshape(-1), _flat(grad), buf, float(lr), float(weight_decay), float(momentum),
                float(dampening), bool(nesterov), bool(maximize), bool(first_step))


@njit(**_OPT_OPTS)
def _adam_update_plain(p, gr, m, v, decay, step_size, beta2, eps, w1, w2, bc2_sqrt):
    # The general loop below without amsgrad, maximize or coupled weight decay: the same
    # arithmetic (``p * 1.0`` is exact when there is no decoupled decay), in a loop LLVM
    # vectorises (SIMD sqrt and divide). The general loop stays scalar in that case: its
    # unused ``vmax`` is ``p`` itself (see _opt_args), a conditional store through an
    # alias that LLVM's run-time overlap checks cannot rule out. Measured 2.7 ms -> 0.3 ms
    # for 262k float32 parameters (the benchmark LSTM's W_hh): ~2 ms of a 37 ms step.
    for i in range(p.size):
        g = gr[i]
        m[i] = _lerp(m[i], g, w1)
        v[i] = v[i] * beta2 + w2 * g * g
        p[i] = p[i] * decay  # stored (rounded) first, as the general loop does
        p[i] = p[i] - step_size * m[i] / (math.sqrt(v[i]) / bc2_sqrt + eps)


@njit(**_OPT_OPTS)
def _adam_update(p, gr, m, v, vmax, lr, beta1, beta2, eps, wd, decoupled, amsgrad, maximize, bc1, bc2_sqrt):
    step_size = lr / bc1
    decay = 1.0 - lr * wd
    w1 = 1.0 - beta1
    w2 = 1.0 - beta2
    if not amsgrad and not maximize and (wd == 0.0 or decoupled):
        _adam_update_plain(p, gr, m, v, decay if wd != 0.0 else 1.0, step_size, beta2, eps, w1, w2, bc2_sqrt)
        return
    for i in range(p.size):
        g = -gr[i] if maximize else gr[i]
        if wd != 0.0:
            if decoupled:
                p[i] = p[i] * decay
            else:
                g = g + wd * p[i]
        m[i] = _lerp(m[i], g, w1)
        v[i] = v[i] * beta2 + w2 * g * g
        if amsgrad:
            if v[i] > vmax[i]:
                vmax[i] = v[i]
            second = vmax[i]
        else:
            second = v[i]
        denom = math.sqrt(second) / bc2_sqrt + eps
        p[i] = p[i] - step_size * m[i] / denom


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                decoupled, amsgrad, maximize, bias_correction1, bias_correction2_sqrt):
    """Adam / AdamW (``decoupled``) with optional amsgrad, in place."""
    used = [param, exp_avg, exp_avg_sq] + ([max_exp_avg_sq] if amsgrad else [])
    if not _opt_fused_ok(grad, *used):
        return _reference("adam_update")(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                                         weight_decay, decoupled, amsgrad, maximize, bias_correction1,
                                         bias_correction2_sqrt)
    (vmax,) = _opt_args(param, max_exp_avg_sq)
    arrays = (param.reshape(-1), _flat(grad), exp_avg.reshape(-1), exp_avg_sq.reshape(-1), vmax)
    scalars = (float(lr), float(beta1), float(beta2), float(eps), float(weight_decay), bool(decoupled),
               bool(amsgrad), bool(maximize), float(bias_correction1), float(bias_correction2_sqrt))
    threads = _update_threads(param.size)
    if threads > 1:
        _adam_on_threads(arrays, scalars, threads)
    else:
        _adam_update(*arrays, *scalars)


# An update is elementwise, so slices of a parameter can go to different threads and give the
# same bits as one pass. It is bound by memory (Adam reads four arrays and writes three), and
# one core does not draw all the bandwidth there is: the benchmark char-LM's 870k float32
# parameters took 1.18 ms on one thread, 0.71 on OpenBLAS's two (2-core Xeon; torch's
# for-loop Adam on its two OpenMP threads: 1.35). The threads are OpenBLAS's own, as for the
# packed time loops (cblas.run_on_blas_threads), so threadpoolctl and ``train.threads`` limit
# them too; each takes one contiguous slice of the flat arrays.

#: The fewest elements per thread worth handing out: float32 Adam in cache on that Xeon, one
#: thread against two, 16k elements 25 vs 33 us, 32k 46 vs 43, 64k 91 vs 66, 128k 177 vs 108.
UPDATE_SLICE = 1 << 15


def _update_threads(size: int) -> int:
    """Threads an elementwise update of ``size`` elements runs on (1: the calling thread alone)."""
    if not _cblas.PACKED:
        return 1
    return max(1, min(_cblas.blas_threads(), size // UPDATE_SLICE))


_ADAM_ARRAYS = 5  # param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (flat, one dtype)
_SLICE_WIDTH = 3 + _ADAM_ARRAYS + 1  # start, stop, size, the arrays' addresses, the scalars' address
_F32_LIKE, _F64_LIKE = np.zeros(0, np.float32), np.zeros(0, np.float64)  # dtype tags for _view


@njit(**_OPT_OPTS)
def _adam_slice(a, like):
    start, stop, size = a[0], a[1], a[2]
    p, gr, m, v, vmax = (_view(a[3], like, (size,)), _view(a[4], like, (size,)), _view(a[5], like, (size,)),
                         _view(a[6], like, (size,)), _view(a[7], like, (size,)))
    s = _view(a[8], _F64_LIKE, (10,))
    _adam_update(p[start:stop], gr[start:stop], m[start:stop], v[start:stop], vmax[start:stop], s[0], s[1], s[2],
                 s[3], s[4], s[5] != 0.0, s[6] != 0.0, s[7] != 0.0, s[8], s[9])


@njit(**_OPT_OPTS)
def _slice_block(argument_block):
    return _carray(argument_block, (_SLICE_WIDTH,), np.int64)


# one C entry point per dtype (a C signature has no type parameters), compiled on first use
def _adam_slice_f32(argument_block):
    _adam_slice(_slice_block(argument_block), _F32_LIKE)


def _adam_slice_f64(argument_block):
    _adam_slice(_slice_block(argument_block), _F64_LIKE)


_slice_entries: dict = {}
_slice_entries_lock = threading.Lock()


def _adam_on_threads(arrays: tuple, scalars: tuple, threads: int) -> None:
    dtype = arrays[0].dtype
    with _slice_entries_lock:
        if dtype.char not in _slice_entries:
            from numba import cfunc

            entry = _adam_slice_f32 if dtype == np.float32 else _adam_slice_f64
            _slice_entries[dtype.char] = cfunc(_t.void(_t.voidptr), cache=True)(entry)
    size = arrays[0].size
    numbers = np.array(scalars, np.float64)
    args = np.zeros((threads, _SLICE_WIDTH), np.int64)
    for k in range(threads):
        args[k] = (size * k // threads, size * (k + 1) // threads, size, *(a.ctypes.data for a in arrays),
                   numbers.ctypes.data)
    _cblas.run_on_blas_threads(_slice_entries[dtype.char].address, args)


@njit(**_OPT_OPTS)
def _rmsprop_update(p, gr, sq, ga, buf, lr, alpha, eps, wd, momentum, centered, maximize):
    w = 1.0 - alpha
    for i in range(p.size):
        g = -gr[i] if maximize else gr[i]
        if wd != 0.0:
            g = g + wd * p[i]
        sq[i] = sq[i] * alpha + w * g * g
        if centered:
            ga[i] = _lerp(ga[i], g, w)
            avg = math.sqrt(sq[i] - ga[i] * ga[i])
        else:
            avg = math.sqrt(sq[i])
        avg = avg + eps
        if momentum > 0.0:
            buf[i] = buf[i] * momentum + g / avg
            p[i] = p[i] - lr * buf[i]
        else:
            p[i] = p[i] - lr * g / avg


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
                   centered, maximize):
    """RMSprop with optional momentum and centering, in place."""
    used = [param, square_avg] + ([grad_avg] if centered else []) + ([momentum_buffer] if momentum > 0 else [])
    if not _opt_fused_ok(grad, *used):
        return _reference("rmsprop_update")(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                                            weight_decay, momentum, centered, maximize)
    ga, buf = _opt_args(param, grad_avg, momentum_buffer)
    _rmsprop_update(param.reshape(-1), _flat(grad), square_avg.reshape(-1), ga, buf, float(lr), float(alpha),
                    float(eps), float(weight_decay), float(momentum), bool(centered), bool(maximize))


@njit(**_OPT_OPTS)
def _adagrad_update(p, gr, s, clr, wd, eps, maximize):
    for i in range(p.size):
        g = -gr[i] if maximize else gr[i]
        if wd != 0.0:
            g = g + wd * p[i]
        s[i] = s[i] + g * g
        p[i] = p[i] - clr * g / (math.sqrt(s[i]) + eps)


def adagrad_update(param, grad, state_sum, clr, weight_decay, eps, maximize):
    """Adagrad, in place; ``clr`` is the decayed rate ``lr / (1 + (step - 1) * lr_decay)``."""
    if not _opt_fused_ok(grad, param, state_sum):
        return _reference("adagrad_update")(param, grad, state_sum, clr, weight_decay, eps, maximize)
    _adagrad_update(param.reshape(-1), _flat(grad), state_sum.reshape(-1), float(clr), float(weight_decay),
                    float(eps), bool(maximize))


# ----------------------------------------------------------------- embedding


@njit(cache=True, nogil=True)
def _embedding_backward(indices, grad, padding_idx, out):
    n, d = grad.shape
    for i in range(n):
        row = indices[i]
        if row == padding_idx:  # padding never trains its vector
            continue
        for j in range(d):
            out[row, j] += grad[i, j]


def embedding_backward(indices, grad, num_embeddings, padding_idx):
    """Scatter-add ``grad`` (N, D) rows into a zero (num_embeddings, D) buffer at ``indices`` (N,).

    One pass over the gradient, no (N, num_embeddings) one-hot matrix and no ``np.add.at``
    (which is slow: it dispatches once per element)."""
    if grad.dtype not in (np.float32, np.float64):
        return _reference("embedding_backward")(indices, grad, num_embeddings, padding_idx)
    out = np.zeros((num_embeddings, grad.shape[1]), dtype=grad.dtype)
    _embedding_backward(np.ascontiguousarray(indices, dtype=np.int64), np.ascontiguousarray(grad),
                        int(padding_idx), out)
    return out
