"""CuPy twins of the recurrent-cell kernels in kernels_cpu.py (lstm/gru/rnn_cell_forward and
_backward), used by microgradnn.ops.recurrent on the GPU.

Meant to live in kernels_cuda.py, which did not exist yet when they were written: that
module makes them visible to the CUDA backend with

    from .kernels_cuda_recurrent import (  # noqa: F401
        gru_cell_backward, gru_cell_forward, lstm_cell_backward, lstm_cell_forward,
        rnn_cell_backward, rnn_cell_forward,
    )

(or by pasting this file's body at its end). CuPy is imported on first use only.
"""

from __future__ import annotations

import functools as _functools

_RNN_SIGMOID = "static __device__ T _mg_sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }"


@_functools.lru_cache(maxsize=None)
def _rnn_cuda_kernels():
    import cupy

    def kernel(name, in_params, out_params, body):
        preamble = "template <typename T> " + _RNN_SIGMOID
        return cupy.ElementwiseKernel(in_params, out_params, body, "mg_" + name, preamble=preamble)

    k = {}
    k["lstm_cell_forward"] = kernel(
        "lstm_cell_forward",
        "T c_prev, T h_prev, raw T hh, raw T bias, raw uint8 active, int64 H",
        "raw T gates, T h_new, T c_new",
        """
        const ptrdiff_t b = i / H, j = i % H, r = b * 4 * H;
        const T ig = _mg_sigmoid<T>(gates[r + j] + hh[r + j] + bias[j]);
        const T fg = _mg_sigmoid<T>(gates[r + H + j] + hh[r + H + j] + bias[H + j]);
        const T gg = tanh(gates[r + 2 * H + j] + hh[r + 2 * H + j] + bias[2 * H + j]);
        const T og = _mg_sigmoid<T>(gates[r + 3 * H + j] + hh[r + 3 * H + j] + bias[3 * H + j]);
        gates[r + j] = ig;
        gates[r + H + j] = fg;
        gates[r + 2 * H + j] = gg;
        gates[r + 3 * H + j] = og;
        const T c = fg * c_prev + ig * gg;
        if (active[b]) { c_new = c; h_new = og * tanh(c); } else { c_new = c_prev; h_new = h_prev; }
        """,
    )
    k["lstm_cell_backward"] = kernel(
        "lstm_cell_backward",
        "T c_prev, T c_new, T dout, T dh_rec, raw T acts, raw uint8 active, int64 H",
        "T carry, T dc, raw T dgates, T dh_total",
        """
        const ptrdiff_t b = i / H, j = i % H, r = b * 4 * H;
        if (active[b]) {
            const T dh = carry + dh_rec + dout;
            dh_total = dh;
            carry = T(0);
            const T ig = acts[r + j], fg = acts[r + H + j], gg = acts[r + 2 * H + j], og = acts[r + 3 * H + j];
            const T tc = tanh(c_new);
            const T dcc = dc + dh * og * (T(1) - tc * tc);
            dgates[r + 3 * H + j] = dh * tc * og * (T(1) - og);
            dgates[r + j] = dcc * gg * ig * (T(1) - ig);
            dgates[r + H + j] = dcc * c_prev * fg * (T(1) - fg);
            dgates[r + 2 * H + j] = dcc * ig * (T(1) - gg * gg);
            dc = dcc * fg;
        } else {
            const T dh = carry + dh_rec;
            dh_total = dh;
            carry = dh;
            dgates[r + j] = T(0);
            dgates[r + H + j] = T(0);
            dgates[r + 2 * H + j] = T(0);
            dgates[r + 3 * H + j] = T(0);
        }
        """,
    )
    k["gru_cell_forward"] = kernel(
        "gru_cell_forward",
        "T h_prev, raw T bias, raw T b_hn, raw uint8 active, int64 H",
        "raw T gates, raw T hh, T h_new",
        """
        const ptrdiff_t b = i / H, j = i % H, r = b * 3 * H;
        const T rg = _mg_sigmoid<T>(gates[r + j] + hh[r + j] + bias[j]);
        const T zg = _mg_sigmoid<T>(gates[r + H + j] + hh[r + H + j] + bias[H + j]);
        const T nh = hh[r + 2 * H + j] + b_hn[j];
        const T ng = tanh(gates[r + 2 * H + j] + bias[2 * H + j] + rg * nh);
        gates[r + j] = rg;
        gates[r + H + j] = zg;
        gates[r + 2 * H + j] = ng;
        hh[r + 2 * H + j] = nh;
        h_new = active[b] ? ng + zg * (h_prev - ng) : h_prev;
        """,
    )
    k["gru_cell_backward"] = kernel(
        "gru_cell_backward",
        "T h_prev, T dout, T dh_rec, raw T acts, raw T hh, raw uint8 active, int64 H",
        "T carry, raw T dgx, raw T dgh, T dh_total",
        """
        const ptrdiff_t b = i / H, j = i % H, r = b * 3 * H;
        if (active[b]) {
            const T dh = carry + dh_rec + dout;
            dh_total = dh;
            const T rg = acts[r + j], zg = acts[r + H + j], ng = acts[r + 2 * H + j];
            const T dn = dh * (T(1) - zg) * (T(1) - ng * ng);
            const T dz = dh * (h_prev - ng) * zg * (T(1) - zg);
            const T dr = dn * hh[r + 2 * H + j] * rg * (T(1) - rg);
            carry = dh * zg;
            dgx[r + j] = dr; dgx[r + H + j] = dz; dgx[r + 2 * H + j] = dn;
            dgh[r + j] = dr; dgh[r + H + j] = dz; dgh[r + 2 * H + j] = dn * rg;
        } else {
            const T dh = carry + dh_rec;
            dh_total = dh;
            carry = dh;
            dgx[r + j] = T(0); dgx[r + H + j] = T(0); dgx[r + 2 * H + j] = T(0);
            dgh[r + j] = T(0); dgh[r + H + j] = T(0); dgh[r + 2 * H + j] = T(0);
        }
        """,
    )
    k["rnn_cell_forward"] = kernel(
        "rnn_cell_forward",
        "T gates, T hh, T h_prev, raw T bias, raw uint8 active, int64 H, bool relu",
        "T h_new",
        """
        const ptrdiff_t b = i / H, j = i % H;
        const T pre = gates + hh + bias[j];
        h_new = active[b] ? (relu ? (pre > T(0) ? pre : T(0)) : tanh(pre)) : h_prev;
        """,
    )
    k["rnn_cell_backward"] = kernel(
        "rnn_cell_backward",
        "T h_new, T dout, T dh_rec, raw uint8 active, int64 H, bool relu",
        "T carry, T dgates, T dh_total",
        """
        const ptrdiff_t b = i / H;
        if (active[b]) {
            const T dh = carry + dh_rec + dout;
            dh_total = dh;
            carry = T(0);
            dgates = relu ? (h_new > T(0) ? dh : T(0)) : dh * (T(1) - h_new * h_new);
        } else {
            const T dh = carry + dh_rec;
            dh_total = dh;
            carry = dh;
            dgates = T(0);
        }
        """,
    )
    return k


def lstm_cell_forward(gates, hh, bias, c_prev, h_prev, active, h_new, c_new):
    H = c_prev.shape[1]
    _rnn_cuda_kernels()["lstm_cell_forward"](c_prev, h_prev, hh, bias, active, H, gates, h_new, c_new)


def lstm_cell_backward(acts, c_prev, c_new, dout, carry, dh_rec, dc, active, dgates, dh_total):
    H = c_prev.shape[1]
    _rnn_cuda_kernels()["lstm_cell_backward"](c_prev, c_new, dout, dh_rec, acts, active, H, carry, dc, dgates, dh_total)


def gru_cell_forward(gates, hh, bias, b_hn, h_prev, active, h_new):
    H = h_prev.shape[1]
    _rnn_cuda_kernels()["gru_cell_forward"](h_prev, bias, b_hn, active, H, gates, hh, h_new)


def gru_cell_backward(acts, hh, h_prev, dout, carry, dh_rec, active, dgx, dgh, dh_total):
    H = h_prev.shape[1]
    _rnn_cuda_kernels()["gru_cell_backward"](h_prev, dout, dh_rec, acts, hh, active, H, carry, dgx, dgh, dh_total)


def rnn_cell_forward(gates, hh, bias, h_prev, active, h_new, relu):
    H = h_prev.shape[1]
    _rnn_cuda_kernels()["rnn_cell_forward"](gates, hh, h_prev, bias, active, H, bool(relu), h_new)


def rnn_cell_backward(h_new, dout, carry, dh_rec, active, dgates, dh_total, relu):
    H = h_new.shape[1]
    _rnn_cuda_kernels()["rnn_cell_backward"](h_new, dout, dh_rec, active, H, bool(relu), carry, dgates, dh_total)
