"""The LSTM (with or without a projection), GRU and RNN time loops on weights packed once per
call, split by batch rows over OpenBLAS's threads.

Why. A per-step product ``h_{t-1} @ W_hh^T`` through ``cblas_sgemm`` copies W_hh into
OpenBLAS's blocked layout ("packs" it) on every call, then splits a 32-row product over two
threads that must meet at its end: at B 32, H 256 on a 2-core EPYC (Zen 5, avx512) that
ran at 240-310 GFLOP/s of the 430 the two cores reach, and the cell kernel between two
products ran on one core. Here W_hh is packed once per call of the layer, by OpenBLAS's own
packing routine for this core, and each step runs OpenBLAS's own kernel on it (backend/cblas.py,
:data:`~microgradnn.backend.cblas.PACKED`): 207-220 GFLOP/s on ONE core, its peak.

How the second core helps. The rows of a batch are independent through the whole
recurrence: row b's h_t depends on row b's h_{t-1} only. So thread k takes rows
[b_k, b_{k+1}) and runs ALL T steps for them (product, then the cell kernel on its rows)
with no meeting point until the end of the sequence. The threads are OpenBLAS's own
(:func:`~microgradnn.backend.cblas.run_on_blas_threads`), as many as it uses for a product
now, so a ``threadpoolctl`` limit or ``train.threads`` applies here too and no second pool
spins beside OpenBLAS's. Each row gets the same arithmetic whatever the split: in float32
one thread or two give the same bits on Haswell's and Skylake-X's kernels (tested); in
float64, and on Nehalem's kernels, the edge panels are summed in an order that depends on
the number of rows, so there the last bit can move.

The GRU and the Elman RNN (tanh, relu) run the same loop around their own cell kernels: their
per-step products are as small as the LSTM's, and on a 2-core Xeon (AVX-512) the issue-3 step
went from 0.74x to 0.55x torch's time (GRU) and from 0.88x to 0.65x (RNN) with them
(benchmarks/README.md). The LSTM with a projection (``proj_size``) runs it too, with two packed
weights: W_hh for r_{t-1} W_hh^T and W_hr for the projection r_t = h_t W_hr^T (and their
transposes backward), so each step is two kernel calls around the same cell kernel.

Around the loops, the same parts of OpenBLAS do three more jobs. The backward loop of the LSTM
(with or without a projection) and of the RNN makes the input's gradient too, dx_t = dgates_t
W_ih, from the dgates its recurrent product packs anyway (:func:`_gate_grads`, where W_ih is
at most :data:`INPUT_GRAD_BYTES`). The weight and bias gradients over all steps are one pass
that packs the gate gradients once for all of them (:func:`weight_grads`, which ``Linear``
uses too). And a big weight is packed by the threads, a range of rows each (:func:`_pack`).

Measured for the LSTM (T 64, float32, whole forward loop; 2-core EPYC Zen 5; the compiled
per-step driver it replaces first): B 32 H 64 0.64 -> 0.27 ms, H 128 1.40 -> 0.85, H 256 4.37 ->
3.00, B 64 H 256 8.4 -> 6.1; B 8 H 128 0.59 -> 0.43; at B 4 it lost (0.31 -> 0.45: four
rows give the kernel too little to do per pass over W_hh), so batches under
:data:`MIN_BATCH` keep the per-step driver. Packing W_hh costs 100 us (forward layout) and
37 us (backward) at H 256, ~2% of the layer's time: packing once per call, not per step,
is what the speed needs. Nothing packed is kept between calls: in training every forward
follows an optimizer step, so a cache would never hit there, and writes no version counter
sees (through ``.numpy()``, ``gradcheck``'s nudges) would leave it stale without a sign.

The packed product, in OpenBLAS's column-major terms: ``C (M x N) += A (M x K) B (K x N)``.
Our row-major ``out (N rows, M)`` is that C with ``ldc`` its row stride; the forward A is
W_hh (M = 4H gate rows, stored along K) and B is h_{t-1}^T; the backward A is W_hh^T
(M = H, stored along M) and B is dgates_t^T. The kernel adds into C: the forward product
adds straight into the step's gate buffer, which already holds x_t W_ih^T, and the cell
kernel is handed a zero block for its ``hh`` (the same sums and roundings as the per-step
driver: ``(x W_ih^T + h W_hh^T) + 0 + b``).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import carray, cfunc, njit
from numba import types as _t

from . import cblas as _cblas
from .kernels_cpu import (_RNN_OPTS, _gru_cell_backward, _gru_cell_forward, _keep_padded_rows, _lstm_cell_backward,
                          _lstm_cell_forward, _projected_grad_step, _rnn_cell_backward, _rnn_cell_forward, _slots, _view)

__all__ = ["AVAILABLE", "MIN_BATCH", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward",
           "rnn_backward", "lstmp_forward", "lstmp_backward", "threads_for", "weight_grads", "with_packed_loop"]

AVAILABLE: bool = _cblas.PACKED

#: The smallest batch the packed loop takes, and the fewest rows a thread gets.
MIN_BATCH = 8
MIN_ROWS_PER_THREAD = 4
#: Gate rows per kernel call: the block of packed W_hh one call streams (256 rows x K), so
#: it stays in L2 while the kernel sweeps the batch's columns. A multiple of every core's
#: panel height, so a block starts on a panel boundary.
M_BLOCK = 256
#: The longest sum (K) one kernel call takes. OpenBLAS's own GEMM never hands its kernel more
#: than its block depth GEMM_Q (a few hundred), and some kernels rely on it: Sandy Bridge's
#: sgemm kernel crashed at K 730 and beyond. Longer sums go in blocks of K_BLOCK, packed as
#: such, each call adding its part into C, as OpenBLAS's GEMM does.
K_BLOCK = 512
#: Room per K block of a packed operand: its rows rounded up to this (any core's panel).
_ROWS_ROUND = 64

_i64 = _t.int64


def _part(name: str, real):
    copy = not name.endswith("gemm_kernel")
    signature = _t.int32(_i64, _i64, _i64, _i64, _i64) if copy else _t.int32(_i64, _i64, _i64, real, _i64, _i64, _i64, _i64)
    return _t.ExternalFunction(_cblas.PACKED_ALIAS.format(name), signature)


_skernel, _dkernel = _part("sgemm_kernel", _t.float32), _part("dgemm_kernel", _t.float64)
_sincopy, _dincopy = _part("sgemm_incopy", None), _part("dgemm_incopy", None)
_sitcopy, _ditcopy = _part("sgemm_itcopy", None), _part("dgemm_itcopy", None)
_soncopy, _doncopy = _part("sgemm_oncopy", None), _part("dgemm_oncopy", None)
_sotcopy, _dotcopy = _part("sgemm_otcopy", None), _part("dgemm_otcopy", None)


# --------------------------------------------------------------------------- packing


@njit(cache=True, nogil=True)
def _padded(rows):
    return -(-rows // _ROWS_ROUND) * _ROWS_ROUND


@njit(cache=True, nogil=True)
def _pack_weight(w, rows, cols, size, sa, transposed, m0, m1):
    """Pack rows m0..m1 of the kernel's A from W (rows, cols), C-contiguous at address ``w``, into
    ``sa`` (an address), in blocks of :data:`K_BLOCK` of its K: A = W (forward: M = rows,
    K = cols), or A = W^T (backward, ``transposed``: M = cols, K = rows). Block j starts at
    element ``_padded(M) * j * K_BLOCK``, its row m at ``m * kb`` in it (for m0 on a panel
    edge: a multiple of :data:`_ROWS_ROUND`), so threads can pack parts of one A."""
    M, K = (cols, rows) if transposed else (rows, cols)
    stride = _padded(M)
    k0 = 0
    while k0 < K:
        kb = min(K_BLOCK, K - k0)
        region = sa + (stride * k0 + m0 * kb) * size
        if transposed:  # A (cols x rows) stored along its M, K block = rows k0.. of W: "itcopy"
            source = w + (k0 * cols + m0) * size
            if size == 4:
                _sitcopy(kb, m1 - m0, source, cols, region)
            else:
                _ditcopy(kb, m1 - m0, source, cols, region)
        else:  # A (rows x cols) stored along its K, K block = columns k0.. of W: "incopy"
            source = w + (m0 * cols + k0) * size
            if size == 4:
                _sincopy(kb, m1 - m0, source, cols, region)
            else:
                _dincopy(kb, m1 - m0, source, cols, region)
        k0 += kb


@njit(cache=True, nogil=True)
def _packed_product(sa, x, sb, c):
    """c += x @ A^T for the A packed by :func:`_pack_weight` (M = c's columns, K = x's
    columns). Per block of :data:`K_BLOCK`, x's part is packed into ``sb`` (this thread's),
    then the kernel runs over blocks of :data:`M_BLOCK` rows of A. Rows of x and c must be
    contiguous (any row stride)."""
    _packed_products(x, sb, sa, c, sa, c[:, :0])


@njit(cache=True, nogil=True)
def _packed_products(x, sb, sa, c, sa2, c2):
    """c += x @ A^T and c2 += x @ A2^T, as :func:`_packed_product`, with x packed once per
    block of K for both; a c (or c2) of no columns is skipped."""
    N, K = x.shape
    size = x.itemsize
    k0 = 0
    while k0 < K:
        kb = min(K_BLOCK, K - k0)
        if size == 4:
            _soncopy(kb, N, x.ctypes.data + k0 * size, x.strides[0] // size, sb.ctypes.data)
        else:
            _doncopy(kb, N, x.ctypes.data + k0 * size, x.strides[0] // size, sb.ctypes.data)
        _blocks(sa.ctypes.data + _padded(c.shape[1]) * k0 * size, c.shape[1], N, kb, sb.ctypes.data, c.ctypes.data,
                c.strides[0] // size, size)
        _blocks(sa2.ctypes.data + _padded(c2.shape[1]) * k0 * size, c2.shape[1], N, kb, sb.ctypes.data,
                c2.ctypes.data, c2.strides[0] // size, size)
        k0 += kb


@njit(cache=True, nogil=True)
def _blocks(region, M, N, kb, b, c, ldc, size):
    """C (M x N, ldc) += A B over blocks of :data:`M_BLOCK` rows of the packed A at ``region``
    (its K block of ``kb``); ``b`` and ``c`` are addresses."""
    m0 = 0
    while m0 < M:
        mm = min(M_BLOCK, M - m0)
        _kernel(mm, N, kb, region + m0 * kb * size, b, c + m0 * size, ldc, size)
        m0 += mm


@njit(cache=True, nogil=True)
def _kernel(m, n, k, a, b, c, ldc, size):
    """C (m x n, column-major, ``ldc``) += A B on packed blocks at addresses ``a`` and ``b``."""
    if size == 4:
        _skernel(m, n, k, np.float32(1.0), a, b, c, ldc)
    else:
        _dkernel(m, n, k, 1.0, a, b, c, ldc)


# --------------------------------------------------------------------------- one thread's rows
#
# Each runs all T steps of one cell for batch rows [b0, b1): the per-step driver's loop
# (kernels_cpu.py) on a slice, with the product on the packed weights. The forward products
# ADD: the LSTM's and the RNN's add straight into the step's gate buffer, which holds
# x_t W_ih^T, and the cell kernel is handed a zero block for its ``hh`` (the same sums and
# roundings as the per-step driver: ``(x W_ih^T + h W_hh^T) + 0 + b``); the GRU keeps
# h W_hh^T apart (r scales its n slice), so its rows of ``hh[t]`` are zeroed first, as are
# the rows of the projected LSTM's r_t and of every backward product's output.


@njit(**_RNN_OPTS)
def _lstm_rows_forward(gates, sa, bias, hs, cs, mask, zeros, sb, b0, b1, reverse):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _packed_product(sa, hs[p, b0:b1], sb, gates[t, b0:b1])  # gates_t += h_{t-1} W_hh^T
        _lstm_cell_forward(gates[t, b0:b1], zeros[b0:b1], bias, cs[p, b0:b1], hs[p, b0:b1], mask[t, b0:b1],
                           hs[n, b0:b1], cs[n, b0:b1])


@njit(**_RNN_OPTS)
def _gru_rows_forward(gates, hh, sa, bias, b_hn, hs, mask, sb, b0, b1, reverse):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        rec = hh[t, b0:b1]
        rec[:] = 0
        _packed_product(sa, hs[p, b0:b1], sb, rec)  # hh_t = h_{t-1} W_hh^T
        _gru_cell_forward(gates[t, b0:b1], rec, bias, b_hn, hs[p, b0:b1], mask[t, b0:b1], hs[n, b0:b1])


@njit(**_RNN_OPTS)
def _rnn_rows_forward(gates, sa, bias, hs, mask, zeros, sb, b0, b1, reverse, relu):
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _packed_product(sa, hs[p, b0:b1], sb, gates[t, b0:b1])
        _rnn_cell_forward(gates[t, b0:b1], zeros[b0:b1], bias, hs[p, b0:b1], mask[t, b0:b1], hs[n, b0:b1], relu)


@njit(**_RNN_OPTS)
def _lstmp_rows_forward(gates, sa, sa2, bias, rs, hs, cs, mask, zeros, sb, b0, b1, reverse):
    """The LSTM with a projection (kernels_cpu._lstmp_sequence_forward): the recurrent input is
    r_{t-1} (P wide), and r_t = h_t W_hr^T is the second product, on W_hr packed as ``sa2``."""
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _packed_product(sa, rs[p, b0:b1], sb, gates[t, b0:b1])  # gates_t += r_{t-1} W_hh^T
        _lstm_cell_forward(gates[t, b0:b1], zeros[b0:b1], bias, cs[p, b0:b1], hs[p, b0:b1], mask[t, b0:b1],
                           hs[n, b0:b1], cs[n, b0:b1])
        r = rs[n, b0:b1]
        r[:] = 0
        _packed_product(sa2, hs[n, b0:b1], sb, r)  # r_t = h_t W_hr^T
        _keep_padded_rows(mask[t, b0:b1], rs[p, b0:b1], r)


@njit(**_RNN_OPTS)
def _recurrent_grad(sa, dgates, sb, dh_rec):
    """dh_rec = dgates W_hh (for these rows): what flows to h_{t-1} through the recurrence."""
    dh_rec[:] = 0
    _packed_product(sa, dgates, sb, dh_rec)


@njit(cache=True, nogil=True)
def _gate_grads(sa, dgates, sb, dh_rec, recurrent, sx, dx):
    """dh_rec = dgates W_hh (if ``recurrent``) and dx = dgates W_ih (if ``dx`` has columns), for
    these rows, with dgates packed once per K block for both: ``sa`` is W_hh^T packed, ``sx``
    W_ih^T. The input's gradient comes from the step's dgates while they are in cache, and with
    no packing of its own, instead of one (T*B, G*H) x (G*H, I) GEMM after the loop (2-core
    Xeon, the loop of 32 rows on two threads, H 256: I 64 6.05 -> 5.65 ms with the GEMM's time
    counted in, I 128 6.5 -> 6.2; see :data:`INPUT_GRAD_BYTES` for where it stops paying)."""
    if recurrent:
        dh_rec[:] = 0
    dx[:] = 0
    _packed_products(dgates, sb, sa, dh_rec if recurrent else dh_rec[:, :0], sx, dx)


@njit(**_RNN_OPTS)
def _lstm_rows_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, sa, sb, b0, b1, reverse,
                        needs_dh0, sx, dx):
    T = acts.shape[0]
    record = dh_total.shape[0] == T  # else one (1, B, H) scratch step
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        total = dh_total[t] if record else dh_total[0]
        _lstm_cell_backward(acts[t, b0:b1], cs[p, b0:b1], cs[n, b0:b1], dout[t, b0:b1], carry[b0:b1], dh_rec[b0:b1],
                            dc[b0:b1], mask[t, b0:b1], dgates[t, b0:b1], total[b0:b1])
        # the last recurrent product only feeds dL/dh0
        _gate_grads(sa, dgates[t, b0:b1], sb, dh_rec[b0:b1], k != T - 1 or needs_dh0, sx, dx[t, b0:b1])


@njit(**_RNN_OPTS)
def _lstmp_rows_backward(acts, cs, dout, carry, dr_rec, dc, mask, dgates, dr, dh, zeros, scratch, dr_total, sa, sa2,
                         sb, b0, b1, reverse, needs_dh0, sx, dx):
    """kernels_cpu._lstmp_sequence_backward on rows: ``sa`` is W_hh^T packed, ``sa2`` W_hr^T."""
    T = acts.shape[0]
    record = dr_total.shape[0] == T
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        total = dr_total[t] if record else dr_total[0]
        _projected_grad_step(dout[t, b0:b1], carry[b0:b1], dr_rec[b0:b1], mask[t, b0:b1], dr[t, b0:b1],
                             total[b0:b1])
        _recurrent_grad(sa2, dr[t, b0:b1], sb, dh[b0:b1])  # dL/dh_t = dr_t W_hr
        _lstm_cell_backward(acts[t, b0:b1], cs[p, b0:b1], cs[n, b0:b1], dh[b0:b1], zeros[b0:b1], zeros[b0:b1],
                            dc[b0:b1], mask[t, b0:b1], dgates[t, b0:b1], scratch[b0:b1])
        # dL/dr_{t-1} through W_hh, and dL/dx_t
        _gate_grads(sa, dgates[t, b0:b1], sb, dr_rec[b0:b1], k != T - 1 or needs_dh0, sx, dx[t, b0:b1])


@njit(**_RNN_OPTS)
def _gru_rows_backward(acts, hh, hs, dout, carry, dh_rec, mask, dgx, dgh, dh_total, sa, sb, b0, b1, reverse,
                       needs_dh0):
    T = acts.shape[0]
    record = dh_total.shape[0] == T
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        total = dh_total[t] if record else dh_total[0]
        _gru_cell_backward(acts[t, b0:b1], hh[t, b0:b1], hs[p, b0:b1], dout[t, b0:b1], carry[b0:b1], dh_rec[b0:b1],
                           mask[t, b0:b1], dgx[t, b0:b1], dgh[t, b0:b1], total[b0:b1])
        if k != T - 1 or needs_dh0:
            _recurrent_grad(sa, dgh[t, b0:b1], sb, dh_rec[b0:b1])


@njit(**_RNN_OPTS)
def _rnn_rows_backward(hs, dout, carry, dh_rec, mask, dgates, dh_total, sa, sb, b0, b1, reverse, needs_dh0, relu,
                       sx, dx):
    T = dgates.shape[0]
    record = dh_total.shape[0] == T
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        total = dh_total[t] if record else dh_total[0]
        _rnn_cell_backward(hs[n, b0:b1], dout[t, b0:b1], carry[b0:b1], dh_rec[b0:b1], mask[t, b0:b1],
                           dgates[t, b0:b1], total[b0:b1], relu)
        _gate_grads(sa, dgates[t, b0:b1], sb, dh_rec[b0:b1], k != T - 1 or needs_dh0, sx, dx[t, b0:b1])


# --------------------------------------------------------------------------- the threads' entry points
#
# OpenBLAS calls ``void f(void *)`` on each thread with a pointer to that thread's row of an
# int64 argument block: a header (the cell, the sizes, the thread's rows, flags, the packed
# weights and the thread's packing block), then the addresses of the cell's arrays in the
# order its ``*_rows_*`` function takes them, which the job rebuilds with ``carray`` (all of
# them C-contiguous, checked by the drivers below).

LSTM, GRU, RNN, LSTMP = 0, 1, 2, 3  # LSTMP: the LSTM with a projection (proj_size P)
_HEADER = ("cell", "T", "B", "H", "P", "b0", "b1", "reverse", "needs_dh0", "steps", "relu", "sa", "sa_size", "sa2",
           "sa2_size", "sb", "sb_size", "I", "sx", "sx_size", "dx")  # I = 0: no input gradient in the loop
_MOST_ARRAYS = 13  # the projected LSTM's backward
_WIDTH = len(_HEADER) + _MOST_ARRAYS
_F32, _F64, _U8 = np.zeros(0, np.float32), np.zeros(0, np.float64), np.zeros(0, np.uint8)


@njit(**_RNN_OPTS)
def _header(a, like):
    """The header's fields but the cell, P and sa2: (T, B, H, b0, b1, reverse, needs_dh0, steps,
    relu, sa, sb, arrays)."""
    sa, sb = _view(a[11], like, (a[12],)), _view(a[15], like, (a[16],))
    return a[1], a[2], a[3], a[5], a[6], a[7] != 0, a[8] != 0, a[9], a[10] != 0, sa, sb, a[len(_HEADER):]


@njit(**_RNN_OPTS)
def _input_grad(a, like):
    """The header's W_ih^T packed and the (T, B, I) input gradient the backward loop writes
    (zero-sized where the loop leaves it to a GEMM)."""
    return _view(a[18], like, (a[19],)), _view(a[20], like, (a[1], a[2], a[17]))


@njit(**_RNN_OPTS)
def _lstm_forward_job(a, like):
    T, B, H, b0, b1, reverse, _, _, _, sa, sb, arg = _header(a, like)
    GH = 4 * H
    _lstm_rows_forward(_view(arg[0], like, (T, B, GH)), sa, _view(arg[1], like, (GH,)),
                       _view(arg[2], like, (T + 1, B, H)), _view(arg[3], like, (T + 1, B, H)),
                       _view(arg[4], _U8, (T, B)), _view(arg[5], like, (B, GH)), sb, b0, b1, reverse)


@njit(**_RNN_OPTS)
def _gru_forward_job(a, like):
    T, B, H, b0, b1, reverse, _, _, _, sa, sb, arg = _header(a, like)
    GH = 3 * H
    _gru_rows_forward(_view(arg[0], like, (T, B, GH)), _view(arg[1], like, (T, B, GH)), sa,
                      _view(arg[2], like, (GH,)), _view(arg[3], like, (H,)), _view(arg[4], like, (T + 1, B, H)),
                      _view(arg[5], _U8, (T, B)), sb, b0, b1, reverse)


@njit(**_RNN_OPTS)
def _rnn_forward_job(a, like):
    T, B, H, b0, b1, reverse, _, _, relu, sa, sb, arg = _header(a, like)
    _rnn_rows_forward(_view(arg[0], like, (T, B, H)), sa, _view(arg[1], like, (H,)),
                      _view(arg[2], like, (T + 1, B, H)), _view(arg[3], _U8, (T, B)), _view(arg[4], like, (B, H)),
                      sb, b0, b1, reverse, relu)


@njit(**_RNN_OPTS)
def _lstmp_forward_job(a, like):
    T, B, H, b0, b1, reverse, _, _, _, sa, sb, arg = _header(a, like)
    P, sa2, GH = a[4], _view(a[13], like, (a[14],)), 4 * H
    _lstmp_rows_forward(_view(arg[0], like, (T, B, GH)), sa, sa2, _view(arg[1], like, (GH,)),
                        _view(arg[2], like, (T + 1, B, P)), _view(arg[3], like, (T + 1, B, H)),
                        _view(arg[4], like, (T + 1, B, H)), _view(arg[5], _U8, (T, B)), _view(arg[6], like, (B, GH)),
                        sb, b0, b1, reverse)


@njit(**_RNN_OPTS)
def _lstmp_backward_job(a, like):
    T, B, H, b0, b1, reverse, needs_dh0, steps, _, sa, sb, arg = _header(a, like)
    sx, dx = _input_grad(a, like)
    P, sa2, GH = a[4], _view(a[13], like, (a[14],)), 4 * H
    _lstmp_rows_backward(_view(arg[0], like, (T, B, GH)), _view(arg[1], like, (T + 1, B, H)),
                         _view(arg[2], like, (T, B, P)), _view(arg[3], like, (B, P)), _view(arg[4], like, (B, P)),
                         _view(arg[5], like, (B, H)), _view(arg[6], _U8, (T, B)), _view(arg[7], like, (T, B, GH)),
                         _view(arg[8], like, (T, B, P)), _view(arg[9], like, (B, H)), _view(arg[10], like, (B, H)),
                         _view(arg[11], like, (B, H)), _view(arg[12], like, (steps, B, P)), sa, sa2, sb, b0, b1,
                         reverse, needs_dh0, sx, dx)


@njit(**_RNN_OPTS)
def _lstm_backward_job(a, like):
    T, B, H, b0, b1, reverse, needs_dh0, steps, _, sa, sb, arg = _header(a, like)
    sx, dx = _input_grad(a, like)
    GH = 4 * H
    _lstm_rows_backward(_view(arg[0], like, (T, B, GH)), _view(arg[1], like, (T + 1, B, H)),
                        _view(arg[2], like, (T, B, H)), _view(arg[3], like, (B, H)), _view(arg[4], like, (B, H)),
                        _view(arg[5], like, (B, H)), _view(arg[6], _U8, (T, B)), _view(arg[7], like, (T, B, GH)),
                        _view(arg[8], like, (steps, B, H)), sa, sb, b0, b1, reverse, needs_dh0, sx, dx)


@njit(**_RNN_OPTS)
def _gru_backward_job(a, like):
    T, B, H, b0, b1, reverse, needs_dh0, steps, _, sa, sb, arg = _header(a, like)
    GH = 3 * H
    _gru_rows_backward(_view(arg[0], like, (T, B, GH)), _view(arg[1], like, (T, B, GH)),
                       _view(arg[2], like, (T + 1, B, H)), _view(arg[3], like, (T, B, H)),
                       _view(arg[4], like, (B, H)), _view(arg[5], like, (B, H)), _view(arg[6], _U8, (T, B)),
                       _view(arg[7], like, (T, B, GH)), _view(arg[8], like, (T, B, GH)),
                       _view(arg[9], like, (steps, B, H)), sa, sb, b0, b1, reverse, needs_dh0)


@njit(**_RNN_OPTS)
def _rnn_backward_job(a, like):
    T, B, H, b0, b1, reverse, needs_dh0, steps, relu, sa, sb, arg = _header(a, like)
    sx, dx = _input_grad(a, like)
    _rnn_rows_backward(_view(arg[0], like, (T + 1, B, H)), _view(arg[1], like, (T, B, H)),
                       _view(arg[2], like, (B, H)), _view(arg[3], like, (B, H)), _view(arg[4], _U8, (T, B)),
                       _view(arg[5], like, (T, B, H)), _view(arg[6], like, (steps, B, H)), sa, sb, b0, b1,
                       reverse, needs_dh0, relu, sx, dx)


# The entry points, one per job and dtype: a C signature has no type parameters, and one entry
# per cell means a run compiles only the cells it uses (one entry for all three cells doubled
# the first `mgnn train` of the LSTM example, 5.4 -> 10.4 s). Plain functions, not made by a
# factory: numba's disk cache missed closures between processes. Compiled by :func:`_worker`
# on first use, and kept by numba's disk cache.
@njit(**_RNN_OPTS)
def _block(argument_block):
    return carray(argument_block, (_WIDTH,), np.int64)


def _lstm_forward_f32(argument_block):
    _lstm_forward_job(_block(argument_block), _F32)


def _lstm_forward_f64(argument_block):
    _lstm_forward_job(_block(argument_block), _F64)


def _lstm_backward_f32(argument_block):
    _lstm_backward_job(_block(argument_block), _F32)


def _lstm_backward_f64(argument_block):
    _lstm_backward_job(_block(argument_block), _F64)


def _gru_forward_f32(argument_block):
    _gru_forward_job(_block(argument_block), _F32)


def _gru_forward_f64(argument_block):
    _gru_forward_job(_block(argument_block), _F64)


def _gru_backward_f32(argument_block):
    _gru_backward_job(_block(argument_block), _F32)


def _gru_backward_f64(argument_block):
    _gru_backward_job(_block(argument_block), _F64)


def _rnn_forward_f32(argument_block):
    _rnn_forward_job(_block(argument_block), _F32)


def _rnn_forward_f64(argument_block):
    _rnn_forward_job(_block(argument_block), _F64)


def _rnn_backward_f32(argument_block):
    _rnn_backward_job(_block(argument_block), _F32)


def _rnn_backward_f64(argument_block):
    _rnn_backward_job(_block(argument_block), _F64)


def _lstmp_forward_f32(argument_block):
    _lstmp_forward_job(_block(argument_block), _F32)


def _lstmp_forward_f64(argument_block):
    _lstmp_forward_job(_block(argument_block), _F64)


def _lstmp_backward_f32(argument_block):
    _lstmp_backward_job(_block(argument_block), _F32)


def _lstmp_backward_f64(argument_block):
    _lstmp_backward_job(_block(argument_block), _F64)


_ENTRIES = {(kind, cell, char): globals()[f"_{name}_{kind}_{bits}"]
            for cell, name in ((LSTM, "lstm"), (GRU, "gru"), (RNN, "rnn"), (LSTMP, "lstmp"))
            for kind in ("forward", "backward") for char, bits in (("f", "f32"), ("d", "f64"))}
_workers: dict = {}
_workers_lock = threading.Lock()


def _worker(kind: str, cell: int, dtype) -> int:
    """The address of the C entry point ``void f(void *)`` of ``kind`` for ``cell`` and ``dtype``."""
    key = (kind, cell, np.dtype(dtype).char)
    with _workers_lock:
        if key not in _workers:
            _workers[key] = cfunc(_t.void(_t.voidptr), cache=True)(_ENTRIES[key])
    return _workers[key].address


# --------------------------------------------------------------------------- weight gradients
#
# After the backward time loop, each weight's gradient is one product over all T*B rows:
# dW_ih = dgates^T x, dW_hh = dgates^T h_{t-1}, and the bias's is dgates' column sums. As
# separate numpy GEMMs each packs dgates again (the big operand, T*B x G*H, read back from
# memory every time) and the sums read it once more. Here a block of GRAD_K_BLOCK rows of
# dgates is packed once, as the kernel's B, and every product runs on it while it is still in
# cache: x's block and h's block are packed as A in turn, and the sums are the product with
# a row of ones. Threads split dgates' columns (the gate rows of the gradients), so each
# output element is one thread's, summed over the row blocks in order.
#
# Measured on a 2-core Xeon (AVX-512), T*B 2048 rows, G*H 1024, float32, 2 threads, against
# numpy's two GEMMs and ``ones @ dgates``: x 64 wide 3.8 vs 4.5-4.7 ms, x 256 wide 5.6-6.1 vs
# 6.6-7.1 (benchmarks/README.md). Blocks of 256 rows beat 384 and 512 there.

#: Rows of the gradient packed per pass (the K of each kernel call).
GRAD_K_BLOCK = 256
_GRAD_HEADER = ("itemsize", "rows", "cols", "c0", "c1", "inputs", "grad", "sb", "sa", "ones", "sums", "part", "parts")
_MOST_INPUTS = 3  # x, h_{t-1} and one more: what a layer's weights need
_GRAD_WIDTH = len(_GRAD_HEADER) + 3 * _MOST_INPUTS  # then (address, width, output) per input


@njit(cache=True, nogil=True)
def _zero(address, rows, cols, r0, r1, c0, c1, size):
    """Zero [r0:r1, c0:c1] of the C-contiguous (rows, cols) array at ``address``."""
    if size == 4:
        _view(address, _F32, (rows, cols))[r0:r1, c0:c1] = 0
    else:
        _view(address, _F64, (rows, cols))[r0:r1, c0:c1] = 0


@njit(cache=True, nogil=True)
def _weight_grads_job(a):
    size, rows, cols, c0, c1, count = a[0], a[1], a[2], a[3], a[4], a[5]
    grad, sb, sa, ones, sums, part, parts = a[6], a[7], a[8], a[9], a[10], a[11], a[12]
    n = c1 - c0  # this thread's columns of the gradient
    # the kernel adds into C: this thread zeroes its own part of every output first (in its
    # cache, where the kernel then finds it)
    for i in range(count):
        at = len(_GRAD_HEADER) + 3 * i
        width = a[at + 1]
        w0, w1 = width * part // parts, width * (part + 1) // parts
        _zero(a[at + 2], cols, width, c0, c1, w0, w1, size)
    if sums:
        _zero(sums, cols, 1, c0, c1, 0, 1, size)
    k0 = 0
    while k0 < rows:
        kb = min(GRAD_K_BLOCK, rows - k0)
        # B = rows k0.. of the gradient, columns c0..c1: stored along N
        if size == 4:
            _sotcopy(kb, n, grad + (k0 * cols + c0) * size, cols, sb)
        else:
            _dotcopy(kb, n, grad + (k0 * cols + c0) * size, cols, sb)
        for i in range(count):
            at = len(_GRAD_HEADER) + 3 * i
            x, width, out = a[at], a[at + 1], a[at + 2]
            w0, w1 = width * part // parts, width * (part + 1) // parts  # this thread's part of x's width
            if w1 == w0:
                continue
            # A = x^T (M = w1 - w0 of x's columns), rows k0.. of x: stored along M. out (cols,
            # width) is the column-major C (width x cols), ldc = width
            if size == 4:
                _sitcopy(kb, w1 - w0, x + (k0 * width + w0) * size, width, sa)
            else:
                _ditcopy(kb, w1 - w0, x + (k0 * width + w0) * size, width, sa)
            _blocks(sa, w1 - w0, n, kb, sb, out + (c0 * width + w0) * size, width, size)
        if sums:  # A = a row of ones (M = 1): C (1 x cols) is the column sums, ldc = 1
            _kernel(1, n, kb, ones, sb, sums + c0 * size, 1, size)
        k0 += kb


@njit(cache=True, nogil=True)
def _grad_block(argument_block):
    return carray(argument_block, (_GRAD_WIDTH,), np.int64)


def _weight_grads_entry(argument_block):
    _weight_grads_job(_grad_block(argument_block))


_PACK_WIDTH = 8  # (w, rows, cols, itemsize, sa, transposed, m0, m1): _pack_weight's arguments


@njit(cache=True, nogil=True)
def _pack_block(argument_block):
    return carray(argument_block, (_PACK_WIDTH,), np.int64)


def _pack_entry(argument_block):
    a = _pack_block(argument_block)
    _pack_weight(a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7])


def _entry_point(entry) -> int:
    """The address of the C entry point ``void f(void *)`` made of ``entry`` (compiled on first use),
    for jobs that serve both dtypes (the kernels are chosen by ``itemsize`` at run time)."""
    key = (entry.__name__,)
    with _workers_lock:
        if key not in _workers:
            _workers[key] = cfunc(_t.void(_t.voidptr), cache=True)(entry)
    return _workers[key].address


# --------------------------------------------------------------------------- what the drivers call


_local = threading.local()  # each Python thread its own packing buffers (two layers may run at once)


def _buffer(role: str, size: int, dtype) -> np.ndarray:
    """A page-aligned scratch block of at least ``size`` elements, kept per thread for reuse."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (role, np.dtype(dtype).char)
    block = buffers.get(key)
    if block is None or block.size < size:
        block = buffers[key] = _cblas.aligned_zeros(size, dtype)
    return block[:size]


def threads_for(batch: int) -> int:
    """How many of OpenBLAS's threads the packed loop splits ``batch`` rows over; 0: the batch
    is too small for it (the per-step driver runs instead)."""
    if not AVAILABLE or batch < MIN_BATCH:
        return 0
    return max(1, min(_cblas.blas_threads(), batch // MIN_ROWS_PER_THREAD))


def _row_bounds(batch: int, threads: int) -> list:
    return [batch * k // threads for k in range(threads + 1)]


def _packed_size(M: int, K: int) -> int:
    """Elements :func:`_pack_weight` writes for an A of M x K, rounded up to whole pages."""
    return _panel_size(-(-M // _ROWS_ROUND) * _ROWS_ROUND, K)


def _panel_size(rows: int, cols: int) -> int:
    """Elements of a packed block of a (rows, cols) matrix, with room for any core's panel
    edges, rounded up to whole pages (so the next thread's block starts on a page too)."""
    page = _cblas.PACKED_ALIGN // 4  # in float32 elements: a whole page for float64 as well
    return -(-((rows + 64) * cols + 1024) // page) * page


#: The largest W_ih (in bytes) whose input gradient the backward loop makes step by step: its
#: packed block then shares each core's L2 (2 MB here) with W_hh's. Measured on the char-LM
#: step (2-core Xeon, six alternating blocks): H 128 x2 15.11 -> 14.63 ms with layer 1's W_ih
#: (64 wide) in the loop, 14.52 with layer 2's as well; H 256 x2 42.52 -> 41.93, but 42.06
#: with layer 2's (1 MB, W_hh^T's 1 MB beside it): there the GEMM after the loop does better.
INPUT_GRAD_BYTES = 1 << 19

#: The fewest rows of A a thread packs (below it one thread packs the whole weight).
MIN_PACK_ROWS = 128


def _pack(role: str, w, transposed: bool) -> np.ndarray:
    """``w`` packed as a kernel's A: A = w (M = its rows), or A = w^T (``transposed``). A big
    weight is packed by OpenBLAS's threads, each a range of A's rows: it is read from memory
    (an optimizer step wrote it), and one core does not draw all the bandwidth there is (2-core
    Xeon, the char-LM step at H 256 x2, its four packs of W_hh: 0.69 ms on one thread, 0.44 on
    two)."""
    M, K = w.shape[::-1] if transposed else w.shape
    sa = _buffer(role, _packed_size(M, K), w.dtype)
    rows, cols = w.shape
    threads = min(_cblas.blas_threads(), M // MIN_PACK_ROWS)
    if threads < 2:
        _pack_weight(w.ctypes.data, rows, cols, w.itemsize, sa.ctypes.data, transposed, 0, M)
        return sa
    bounds = [0] + [M * k // threads // _ROWS_ROUND * _ROWS_ROUND for k in range(1, threads)] + [M]
    args = np.zeros((threads, _PACK_WIDTH), np.int64)
    for k in range(threads):
        args[k] = (w.ctypes.data, rows, cols, w.itemsize, sa.ctypes.data, transposed, bounds[k], bounds[k + 1])
    _cblas.run_on_blas_threads(_entry_point(_pack_entry), args)
    return sa


def _run(kind: str, cell: int, w_hh, arrays: tuple, T: int, reverse: bool, threads: int, needs_dh0=False,
         steps=0, relu=False, w_hr=None, input_grad=None) -> bool:
    """Pack ``w_hh`` (G*H, H) for ``kind``'s product (and ``w_hr`` (P, H), the projection, for
    the second), split the batch over ``threads``, give each thread a packing block for its
    rows, and run ``kind``'s entry point for ``cell`` on OpenBLAS's threads with ``arrays``
    (the cell's, in its rows function's order). Backward, ``input_grad`` = (dx (T, B, I),
    W_ih (G*H, I)) asks for dx = dgates W_ih too, step by step (see :func:`_gate_grads`): done
    where the packed W_ih^T is at most :data:`INPUT_GRAD_BYTES`; returns whether it was."""
    backward = kind == "backward"  # forward A = W_hh (and W_hr), backward A = W_hh^T (and W_hr^T)
    GH, S = w_hh.shape  # S: the state's width, P with a projection, else H
    H = S if w_hr is None else w_hr.shape[1]
    B = arrays[0].shape[1]
    sa = _pack("weights", w_hh, backward)
    sa2 = sa if w_hr is None else _pack("projection", w_hr, backward)
    # the longest sum of a step's products, what a thread's packing block must hold: forward
    # h W_hh^T sums over S (and h W_hr^T over H), backward dgates W_hh over G*H (and dr W_hr over P)
    depth = GH if backward else max(S, H)
    dx, sx = None, None
    if input_grad is not None:
        dx, w_ih = input_grad
        if (w_ih.size * w_ih.itemsize > INPUT_GRAD_BYTES or not w_ih.flags.c_contiguous or w_ih.dtype != w_hh.dtype
                or dx.shape != (T, B, w_ih.shape[1]) or dx.dtype != w_hh.dtype or not dx.flags.c_contiguous):
            dx = None
        else:
            sx = _pack("inputs", w_ih, True)  # A = W_ih^T: M = I, K = G*H
    bounds = _row_bounds(B, threads)
    sb_size = _panel_size(max(b - a for a, b in zip(bounds, bounds[1:])), min(depth, K_BLOCK))
    blocks = _buffer("rows", threads * sb_size, w_hh.dtype)
    args = np.zeros((threads, _WIDTH), np.int64)
    for k in range(threads):
        sb = blocks[k * sb_size : (k + 1) * sb_size]
        args[k, : len(_HEADER)] = (cell, T, B, H, S, bounds[k], bounds[k + 1], reverse, needs_dh0, steps, relu,
                                   sa.ctypes.data, sa.size, sa2.ctypes.data, sa2.size, sb.ctypes.data, sb.size,
                                   0 if dx is None else dx.shape[2], 0 if sx is None else sx.ctypes.data,
                                   0 if sx is None else sx.size, 0 if dx is None else dx.ctypes.data)
        args[k, len(_HEADER) : len(_HEADER) + len(arrays)] = [a.ctypes.data for a in arrays]
    _cblas.run_on_blas_threads(_worker(kind, cell, w_hh.dtype), args)
    return dx is not None


# Each takes its per-step driver's arguments (kernels_cpu.py) and the thread count.


def lstm_forward(gates, w_hh, bias, hs, cs, mask, hh, reverse, threads) -> None:
    """The LSTM forward time loop (``hh`` used as the zero block)."""
    hh.fill(0)
    _run("forward", LSTM, w_hh, (gates, bias, hs, cs, mask, hh), gates.shape[0], reverse, threads)


def lstm_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh, reverse, needs_dh0,
                  threads, input_grad=None) -> bool:
    """The LSTM backward time loop; with ``input_grad`` (dx, W_ih) it may fill dx as well (see
    :func:`_run`) and says whether it did."""
    return _run("backward", LSTM, w_hh, (acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total), acts.shape[0],
                reverse, threads, needs_dh0, dh_total.shape[0], input_grad=input_grad)


def gru_forward(gates, w_hh, bias, b_hn, hs, mask, hh, reverse, threads) -> None:
    _run("forward", GRU, w_hh, (gates, hh, bias, b_hn, hs, mask), gates.shape[0], reverse, threads)


def gru_backward(acts, hh, hs, dout, carry, dh_rec, mask, dgx, dgh, dh_total, w_hh, reverse, needs_dh0,
                 threads) -> None:
    _run("backward", GRU, w_hh, (acts, hh, hs, dout, carry, dh_rec, mask, dgx, dgh, dh_total), acts.shape[0],
         reverse, threads, needs_dh0, dh_total.shape[0])


def rnn_forward(gates, w_hh, bias, hs, mask, hh, reverse, relu, threads) -> None:
    """The Elman RNN forward time loop (``hh`` used as the zero block)."""
    hh.fill(0)
    _run("forward", RNN, w_hh, (gates, bias, hs, mask, hh), gates.shape[0], reverse, threads, relu=relu)


def rnn_backward(hs, dout, carry, dh_rec, mask, dgates, dh_total, w_hh, reverse, needs_dh0, relu, threads,
                 input_grad=None) -> bool:
    return _run("backward", RNN, w_hh, (hs, dout, carry, dh_rec, mask, dgates, dh_total), dgates.shape[0], reverse,
                threads, needs_dh0, dh_total.shape[0], relu, input_grad=input_grad)


def lstmp_forward(gates, w_hh, w_hr, bias, rs, hs, cs, mask, hh, reverse, threads) -> None:
    """The projected LSTM's forward time loop (``hh`` used as the zero block)."""
    hh.fill(0)
    _run("forward", LSTMP, w_hh, (gates, bias, rs, hs, cs, mask, hh), gates.shape[0], reverse, threads, w_hr=w_hr)


def lstmp_backward(acts, cs, dout, carry, dr_rec, dc, mask, dgates, dr, dh, zeros, scratch, dr_total, w_hh, w_hr,
                   reverse, needs_dh0, threads, input_grad=None) -> bool:
    return _run("backward", LSTMP, w_hh, (acts, cs, dout, carry, dr_rec, dc, mask, dgates, dr, dh, zeros, scratch,
                                         dr_total), acts.shape[0], reverse, threads, needs_dh0, dr_total.shape[0],
                w_hr=w_hr, input_grad=input_grad)


def accepts(*args) -> bool:
    """Whether the packed loop can take a driver's arguments: one float dtype (float32/64),
    every array C-contiguous (the jobs rebuild them from their addresses)."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    return arrays[0].dtype in (np.float32, np.float64) and all(a.flags.c_contiguous for a in arrays)


#: The fewest gradient columns a thread of :func:`weight_grads` takes.
MIN_GRAD_COLUMNS = 16


def weight_grads(grad, inputs, sums: bool):
    """``([grad^T x for x in inputs], grad's column sums if sums)``, None kept for a None input:
    a layer's weight and bias gradients over all its rows, with ``grad`` (rows, cols) packed
    once per block of rows for all of them (see "weight gradients" above). None where this
    route does not apply (no packed kernels, not float32/64, not C-contiguous 2-D arrays of
    one dtype and ``rows``, an empty side): the caller then runs matmul and column sums."""
    present = [x for x in inputs if x is not None]
    if not present and not sums:
        return [None] * len(inputs), None
    if (not AVAILABLE or not isinstance(grad, np.ndarray) or grad.ndim != 2 or grad.dtype not in (np.float32, np.float64)
            or not grad.flags.c_contiguous or 0 in grad.shape or len(present) > _MOST_INPUTS):
        return None
    rows, cols = grad.shape
    for x in present:
        if (not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] != rows or x.shape[1] == 0
                or x.dtype != grad.dtype or not x.flags.c_contiguous):
            return None
    dtype = grad.dtype
    outs = [np.empty((cols, x.shape[1]), dtype) for x in present]  # each thread zeroes its part
    totals = np.empty(cols, dtype) if sums else None
    # Each thread packs its part of the gradient's columns and all of every x, or all of the
    # gradient and its part of every x's columns: per row, cols / t + width or cols + width / t
    # elements. The second is less when the gradient is the narrower (a Linear head's few
    # outputs over a wide input); one thread's outputs never overlap another's either way.
    width = sum(x.shape[1] for x in present)
    by_columns = cols >= width
    threads = max(1, min(_cblas.blas_threads(), (cols if by_columns else width) // MIN_GRAD_COLUMNS))
    bounds = _row_bounds(cols, threads if by_columns else 1)
    kb = min(GRAD_K_BLOCK, rows)
    sb_size = _panel_size(max(b - a for a, b in zip(bounds, bounds[1:])), kb)
    widest = max([x.shape[1] for x in present], default=1)
    sa_size = _packed_size(widest if by_columns else -(-widest // threads), kb)
    b_blocks = _buffer("gradient rows", threads * sb_size, dtype)
    a_blocks = _buffer("input rows", threads * sa_size, dtype)
    ones = _buffer("ones", _panel_size(1, kb), dtype)
    ones.fill(1)
    args = np.zeros((threads, _GRAD_WIDTH), np.int64)
    for k in range(threads):
        c0, c1 = (bounds[k], bounds[k + 1]) if by_columns else (0, cols)
        part, parts = (0, 1) if by_columns else (k, threads)
        sums_here = totals is not None and (by_columns or k == 0)
        args[k, : len(_GRAD_HEADER)] = (dtype.itemsize, rows, cols, c0, c1, len(present), grad.ctypes.data,
                                        b_blocks[k * sb_size :].ctypes.data, a_blocks[k * sa_size :].ctypes.data,
                                        ones.ctypes.data, totals.ctypes.data if sums_here else 0, part, parts)
        for i, (x, out) in enumerate(zip(present, outs)):
            args[k, len(_GRAD_HEADER) + 3 * i : len(_GRAD_HEADER) + 3 * i + 3] = (x.ctypes.data, x.shape[1],
                                                                                 out.ctypes.data)
    _cblas.run_on_blas_threads(_entry_point(_weight_grads_entry), args)
    found = iter(outs)
    return [None if x is None else next(found) for x in inputs], totals


# --------------------------------------------------------------------------- the drivers the backend hands out

#: driver name -> the packed loop (a name in this module, looked up per call) that replaces it
_PACKED_LOOPS = {"lstm_sequence_forward": "lstm_forward", "lstm_sequence_backward": "lstm_backward",
                 "gru_sequence_forward": "gru_forward", "gru_sequence_backward": "gru_backward",
                 "rnn_sequence_forward": "rnn_forward", "rnn_sequence_backward": "rnn_backward",
                 "lstmp_sequence_forward": "lstmp_forward", "lstmp_sequence_backward": "lstmp_backward"}
_chosen: dict = {}


def _packed_or_per_step(name: str, per_step):
    """The driver ``name``: the packed, batch-split loop where it applies (a batch of at least
    :data:`MIN_BATCH` rows, float32/64, contiguous arrays), else ``per_step``. Every driver's
    first array has the batch on its axis 1."""
    loop = _PACKED_LOOPS[name]

    def drive(*args, **options):
        # options (``input_grad``) go to the packed loop only; the per-step driver has none
        threads = threads_for(args[0].shape[1])
        if threads and accepts(*args):
            return globals()[loop](*args, threads, **options)
        return per_step(*args)
    drive.__name__ = drive.__qualname__ = name
    return drive


def with_packed_loop(name: str, per_step):
    """The driver the CPU backend hands out for ``name``: ``per_step`` (from
    ``kernels_cpu.SEQUENCE_DRIVERS``) itself, or for the LSTM's (with or without a projection),
    GRU's and RNN's a driver that runs the packed loop where it applies and ``per_step`` elsewhere. One wrapper per driver,
    made once."""
    if not AVAILABLE or name not in _PACKED_LOOPS:
        return per_step
    key = (name, per_step)
    if key not in _chosen:
        _chosen[key] = _packed_or_per_step(name, per_step)
    return _chosen[key]
