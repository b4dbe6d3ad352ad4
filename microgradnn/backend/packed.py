"""The LSTM time loop on weights packed once per call, split by batch rows over OpenBLAS's threads.

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

Measured (T 64, float32, whole forward loop; 2-core EPYC Zen 5; the compiled per-step
driver it replaces first): B 32 H 64 0.64 -> 0.27 ms, H 128 1.40 -> 0.85, H 256 4.37 ->
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
from numba.extending import intrinsic

from . import cblas as _cblas
from .kernels_cpu import _RNN_OPTS, _lstm_cell_backward, _lstm_cell_forward, _slots

__all__ = ["AVAILABLE", "MIN_BATCH", "lstm_forward", "lstm_backward", "threads_for", "with_packed_loop"]

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


# --------------------------------------------------------------------------- packing


@njit(cache=True, nogil=True)
def _padded(rows):
    return -(-rows // _ROWS_ROUND) * _ROWS_ROUND


@njit(cache=True, nogil=True)
def _pack_weight(w, sa, transposed):
    """Pack W (rows, cols), C-contiguous, as the kernel's A in blocks of :data:`K_BLOCK` of its
    K: A = W (forward: M = rows, K = cols), or A = W^T (backward, ``transposed``: M = cols,
    K = rows). Block j starts at element ``_padded(M) * j * K_BLOCK`` of ``sa``."""
    rows, cols = w.shape
    size = w.itemsize
    M, K = (cols, rows) if transposed else (rows, cols)
    stride = _padded(M)
    k0 = 0
    while k0 < K:
        kb = min(K_BLOCK, K - k0)
        region = sa.ctypes.data + stride * k0 * size
        if transposed:  # A (cols x rows) stored along its M, K block = rows k0.. of W: "itcopy"
            source = w.ctypes.data + k0 * cols * size
            if size == 4:
                _sitcopy(kb, cols, source, cols, region)
            else:
                _ditcopy(kb, cols, source, cols, region)
        else:  # A (rows x cols) stored along its K, K block = columns k0.. of W: "incopy"
            source = w.ctypes.data + k0 * size
            if size == 4:
                _sincopy(kb, rows, source, cols, region)
            else:
                _dincopy(kb, rows, source, cols, region)
        k0 += kb


@njit(cache=True, nogil=True)
def _packed_product(sa, x, sb, c):
    """c += x @ A^T for the A packed by :func:`_pack_weight` (M = c's columns, K = x's
    columns). Per block of :data:`K_BLOCK`, x's part is packed into ``sb`` (this thread's),
    then the kernel runs over blocks of :data:`M_BLOCK` rows of A. Rows of x and c must be
    contiguous (any row stride)."""
    N, K = x.shape
    M = c.shape[1]
    size = x.itemsize
    ldx, ldc = x.strides[0] // size, c.strides[0] // size
    stride = _padded(M)
    k0 = 0
    while k0 < K:
        kb = min(K_BLOCK, K - k0)
        if size == 4:
            _soncopy(kb, N, x.ctypes.data + k0 * size, ldx, sb.ctypes.data)
        else:
            _doncopy(kb, N, x.ctypes.data + k0 * size, ldx, sb.ctypes.data)
        region = sa.ctypes.data + stride * k0 * size
        m0 = 0
        while m0 < M:
            mm = min(M_BLOCK, M - m0)
            a_block, c_block = region + m0 * kb * size, c.ctypes.data + m0 * size
            if size == 4:
                _skernel(mm, N, kb, np.float32(1.0), a_block, sb.ctypes.data, c_block, ldc)
            else:
                _dkernel(mm, N, kb, 1.0, a_block, sb.ctypes.data, c_block, ldc)
            m0 += mm
        k0 += kb


# --------------------------------------------------------------------------- one thread's rows


@njit(**_RNN_OPTS)
def _lstm_rows_forward(gates, sa, bias, hs, cs, mask, zeros, sb, b0, b1, reverse):
    """All T forward steps for batch rows [b0, b1) (the per-step driver's loop, on a slice)."""
    T = gates.shape[0]
    for s in range(T):
        t, p, n = _slots(T, s, reverse)
        _packed_product(sa, hs[p, b0:b1], sb, gates[t, b0:b1])  # gates_t += h_{t-1} W_hh^T
        _lstm_cell_forward(gates[t, b0:b1], zeros[b0:b1], bias, cs[p, b0:b1], hs[p, b0:b1], mask[t, b0:b1],
                           hs[n, b0:b1], cs[n, b0:b1])


@njit(**_RNN_OPTS)
def _lstm_rows_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, sa, sb, b0, b1, reverse,
                        needs_dh0):
    """All T backward steps for batch rows [b0, b1)."""
    T = acts.shape[0]
    record = dh_total.shape[0] == T  # else one (1, B, H) scratch step
    for k in range(T):
        t, p, n = _slots(T, T - 1 - k, reverse)
        total = dh_total[t] if record else dh_total[0]
        _lstm_cell_backward(acts[t, b0:b1], cs[p, b0:b1], cs[n, b0:b1], dout[t, b0:b1], carry[b0:b1], dh_rec[b0:b1],
                            dc[b0:b1], mask[t, b0:b1], dgates[t, b0:b1], total[b0:b1])
        if k != T - 1 or needs_dh0:  # the last product only feeds dL/dh0
            rec = dh_rec[b0:b1]
            rec[:] = 0
            _packed_product(sa, dgates[t, b0:b1], sb, rec)  # dh_rec = dgates_t W_hh


# --------------------------------------------------------------------------- the threads' entry points
#
# OpenBLAS calls ``void f(void *)`` on each thread with a pointer to that thread's row of an
# int64 argument block: the sizes, the thread's rows, and the addresses of the arrays, which
# the job rebuilds with ``carray`` (all of them C-contiguous, checked by the callers below).

_FORWARD_FIELDS = ("T", "B", "H", "b0", "b1", "reverse", "gates", "sa", "sa_size", "bias", "hs", "cs", "mask",
                   "zeros", "sb", "sb_size")
_BACKWARD_FIELDS = ("T", "B", "H", "b0", "b1", "reverse", "needs_dh0", "steps", "acts", "cs", "dout", "carry",
                    "dh_rec", "dc", "mask", "dgates", "dh_total", "sa", "sa_size", "sb", "sb_size")
_F32, _F64, _U8 = np.zeros(0, np.float32), np.zeros(0, np.float64), np.zeros(0, np.uint8)


@intrinsic
def _pointer_like(typingctx, address, like):
    """The int ``address`` as a pointer to ``like``'s element type (for ``carray``)."""
    pointer = _t.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, like), codegen


@njit(**_RNN_OPTS)
def _forward_job(a, like):
    T, B, H, b0, b1, reverse = a[0], a[1], a[2], a[3], a[4], a[5] != 0
    GH = 4 * H
    gates = carray(_pointer_like(a[6], like), (T, B, GH))
    sa = carray(_pointer_like(a[7], like), (a[8],))
    bias = carray(_pointer_like(a[9], like), (GH,))
    hs = carray(_pointer_like(a[10], like), (T + 1, B, H))
    cs = carray(_pointer_like(a[11], like), (T + 1, B, H))
    mask = carray(_pointer_like(a[12], _U8), (T, B))
    zeros = carray(_pointer_like(a[13], like), (B, GH))
    sb = carray(_pointer_like(a[14], like), (a[15],))
    _lstm_rows_forward(gates, sa, bias, hs, cs, mask, zeros, sb, b0, b1, reverse)


@njit(**_RNN_OPTS)
def _backward_job(a, like):
    T, B, H, b0, b1, reverse, needs_dh0, steps = a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6] != 0, a[7]
    GH = 4 * H
    acts = carray(_pointer_like(a[8], like), (T, B, GH))
    cs = carray(_pointer_like(a[9], like), (T + 1, B, H))
    dout = carray(_pointer_like(a[10], like), (T, B, H))
    carry = carray(_pointer_like(a[11], like), (B, H))
    dh_rec = carray(_pointer_like(a[12], like), (B, H))
    dc = carray(_pointer_like(a[13], like), (B, H))
    mask = carray(_pointer_like(a[14], _U8), (T, B))
    dgates = carray(_pointer_like(a[15], like), (T, B, GH))
    dh_total = carray(_pointer_like(a[16], like), (steps, B, H))
    sa = carray(_pointer_like(a[17], like), (a[18],))
    sb = carray(_pointer_like(a[19], like), (a[20],))
    _lstm_rows_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, sa, sb, b0, b1, reverse,
                        needs_dh0)


_FORWARD_WIDTH, _BACKWARD_WIDTH = len(_FORWARD_FIELDS), len(_BACKWARD_FIELDS)


# The entry points, one per job and dtype (a C signature has no type parameters); compiled
# by :func:`_worker` on first use, and kept by numba's disk cache.
def _forward_f32(argument_block):
    _forward_job(carray(argument_block, (_FORWARD_WIDTH,), np.int64), _F32)


def _forward_f64(argument_block):
    _forward_job(carray(argument_block, (_FORWARD_WIDTH,), np.int64), _F64)


def _backward_f32(argument_block):
    _backward_job(carray(argument_block, (_BACKWARD_WIDTH,), np.int64), _F32)


def _backward_f64(argument_block):
    _backward_job(carray(argument_block, (_BACKWARD_WIDTH,), np.int64), _F64)


_ENTRIES = {("forward", "f"): _forward_f32, ("forward", "d"): _forward_f64,
            ("backward", "f"): _backward_f32, ("backward", "d"): _backward_f64}
_workers: dict = {}
_workers_lock = threading.Lock()


def _worker(kind: str, dtype) -> int:
    """The address of the C entry point ``void f(void *)`` of ``kind`` for ``dtype``, for OpenBLAS."""
    key = (kind, np.dtype(dtype).char)
    with _workers_lock:
        if key not in _workers:
            _workers[key] = cfunc(_t.void(_t.voidptr), cache=True)(_ENTRIES[key])
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


def _contiguous(*arrays) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


def _packed_size(M: int, K: int) -> int:
    """Elements :func:`_pack_weight` writes for an A of M x K, rounded up to whole pages."""
    return _panel_size(-(-M // _ROWS_ROUND) * _ROWS_ROUND, K)


def _panel_size(rows: int, cols: int) -> int:
    """Elements of a packed block of a (rows, cols) matrix, with room for any core's panel
    edges, rounded up to whole pages (so the next thread's block starts on a page too)."""
    page = _cblas.PACKED_ALIGN // 4  # in float32 elements: a whole page for float64 as well
    return -(-((rows + 64) * cols + 1024) // page) * page


def _run_split(kind: str, dtype, batch: int, threads: int, depth: int, row) -> None:
    """Split ``batch`` rows over ``threads``, give each thread a packing block for its rows'
    part of a sum of ``depth``, and run ``kind``'s entry point on OpenBLAS's threads with
    ``row(b0, b1, sb)`` as thread k's argument row (rows [b0, b1), its block ``sb``)."""
    bounds = _row_bounds(batch, threads)
    sb_size = _panel_size(max(b - a for a, b in zip(bounds, bounds[1:])), min(depth, K_BLOCK))
    blocks = _buffer("rows", threads * sb_size, dtype)
    width = len(_FORWARD_FIELDS if kind == "forward" else _BACKWARD_FIELDS)
    args = np.empty((threads, width), np.int64)
    for k in range(threads):
        args[k] = row(bounds[k], bounds[k + 1], blocks[k * sb_size : (k + 1) * sb_size])
    _cblas.run_on_blas_threads(_worker(kind, dtype), args)


def lstm_forward(gates, w_hh, bias, hs, cs, mask, hh, reverse, threads) -> None:
    """The LSTM forward time loop (the per-step driver's contract, ``hh`` used as the zero block)."""
    T, B, GH = gates.shape
    H = GH // 4
    sa = _buffer("weights", _packed_size(GH, H), gates.dtype)
    _pack_weight(w_hh, sa, False)
    hh.fill(0)

    def row(b0, b1, sb):
        return (T, B, H, b0, b1, int(reverse), gates.ctypes.data, sa.ctypes.data, sa.size, bias.ctypes.data,
                hs.ctypes.data, cs.ctypes.data, mask.ctypes.data, hh.ctypes.data, sb.ctypes.data, sb.size)

    _run_split("forward", gates.dtype, B, threads, H, row)


def lstm_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh, reverse, needs_dh0,
                  threads) -> None:
    """The LSTM backward time loop (the per-step driver's contract)."""
    T, B, GH = acts.shape
    H = GH // 4
    sa = _buffer("weights", _packed_size(H, GH), acts.dtype)
    _pack_weight(w_hh, sa, True)

    def row(b0, b1, sb):
        return (T, B, H, b0, b1, int(reverse), int(needs_dh0), dh_total.shape[0], acts.ctypes.data, cs.ctypes.data,
                dout.ctypes.data, carry.ctypes.data, dh_rec.ctypes.data, dc.ctypes.data, mask.ctypes.data,
                dgates.ctypes.data, dh_total.ctypes.data, sa.ctypes.data, sa.size, sb.ctypes.data, sb.size)

    _run_split("backward", acts.dtype, B, threads, GH, row)


def forward_accepts(gates, w_hh, bias, hs, cs, mask, hh) -> bool:
    """Whether :func:`lstm_forward` can take these arrays (every one C-contiguous, one float dtype)."""
    return gates.dtype in (np.float32, np.float64) and _contiguous(gates, w_hh, bias, hs, cs, mask, hh)


def backward_accepts(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh) -> bool:
    return acts.dtype in (np.float32, np.float64) and _contiguous(acts, cs, dout, carry, dh_rec, dc, mask, dgates,
                                                                  dh_total, w_hh)


# --------------------------------------------------------------------------- the drivers the backend hands out


def _packed_or_per_step_forward(per_step):
    """The LSTM forward driver: the packed, batch-split loop where it applies (a batch of at
    least :data:`MIN_BATCH` rows, float32/64, contiguous arrays), else ``per_step``."""
    def drive(gates, w_hh, bias, hs, cs, mask, hh, reverse):
        threads = threads_for(gates.shape[1])
        if threads and forward_accepts(gates, w_hh, bias, hs, cs, mask, hh):
            return lstm_forward(gates, w_hh, bias, hs, cs, mask, hh, reverse, threads)
        return per_step(gates, w_hh, bias, hs, cs, mask, hh, reverse)
    drive.__name__ = drive.__qualname__ = "lstm_sequence_forward"
    return drive


def _packed_or_per_step_backward(per_step):
    """The LSTM backward driver, chosen as :func:`_packed_or_per_step_forward` chooses."""
    def drive(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh, reverse, needs_dh0):
        threads = threads_for(acts.shape[1])
        if threads and backward_accepts(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh):
            return lstm_backward(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh, reverse, needs_dh0,
                                 threads)
        return per_step(acts, cs, dout, carry, dh_rec, dc, mask, dgates, dh_total, w_hh, reverse, needs_dh0)
    drive.__name__ = drive.__qualname__ = "lstm_sequence_backward"
    return drive


_CHOOSERS = {"lstm_sequence_forward": _packed_or_per_step_forward,
             "lstm_sequence_backward": _packed_or_per_step_backward}
_chosen: dict = {}


def with_packed_loop(name: str, per_step):
    """The driver the CPU backend hands out for ``name``: ``per_step`` (from
    ``kernels_cpu.SEQUENCE_DRIVERS``) itself, or for the LSTM's a driver that runs the packed
    loop where it applies and ``per_step`` elsewhere. One wrapper per driver, made once."""
    if not AVAILABLE or name not in _CHOOSERS:
        return per_step
    key = (name, per_step)
    if key not in _chosen:
        _chosen[key] = _CHOOSERS[name](per_step)
    return _chosen[key]
