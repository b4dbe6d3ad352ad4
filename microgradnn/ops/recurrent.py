"""Fused whole-sequence recurrent primitives: one layer, one direction, time-major.

``lstm_sequence``, ``gru_sequence`` and ``rnn_sequence`` run a whole sequence as ONE
autograd node, with PyTorch's gate layouts and equations (LSTM gates i, f, g, o; GRU
gates r, z, n with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``). Where the time goes,
and so the shape of the code:

* forward: the input projection of all T steps is one GEMM ``(T*B, I) @ W_ih^T``; then
  each step is one GEMM ``h_{t-1} @ W_hh^T`` plus one fused kernel that adds the biases,
  applies the gate nonlinearities, updates the state and stores what backward needs
  (gate activations; the c's and h's live in one (T+1, B, H) buffer each);
* backward: each step is one kernel (gate derivatives, padding mask) plus one GEMM
  ``dgates_t @ W_hh`` for the recurrent part of dL/dh_{t-1}; the weight and bias gradients
  are then products over all steps (``dgates^T @ h_prev``, ``dgates^T @ x``, the column sums
  of dgates: on the CPU one pass, ``backend.weight_gradients``) and dx is one GEMM
  ``dgates @ W_ih`` (or, in the CPU's packed loop for a small W_ih, made step by step from
  the dgates the recurrent product packs anyway).

Nothing is allocated inside the step loop: GEMMs write with ``out=`` into preallocated
buffers and the kernels work in place. The kernels come from ``ctx.backend.kernel`` (numba
on the CPU, CuPy on the GPU) and the code here only uses ``ctx.xp``, so one body serves
both devices.

On the CPU the step loop itself is compiled: ``ctx.backend.sequence_driver(name)`` hands
out a numba function that runs all T steps (per step the same GEMM, through numpy's own
OpenBLAS, and the same cell kernel) without coming back to the interpreter
(backend/kernels_cpu.py, backend/cblas.py). A batch of at least 8 rows goes further for every
cell here (backend/packed.py): W_hh (and W_hr) is packed once per call into OpenBLAS's
blocked layout, each step runs OpenBLAS's own GEMM kernel on it, and the batch rows are
split over OpenBLAS's threads, each thread running every step for its rows (rows are
independent through the recurrence, so the threads never wait for each other inside the
loop). Other backends, float16, and a
numpy without those BLAS symbols run the Python loop below; all give the same numbers
(tested). The weights are read in PyTorch's (G*H, H) layout on every call (packed per call
where the packed loop runs): nothing prepared is kept between calls, so nothing can go
stale after an optimizer step, a ``load_state_dict``, a LoRA merge or a raw write through
``.numpy()``.

Variable lengths (``lengths``, (B,) ints in 1..T) follow PyTorch's packed sequences: at a
step ``t >= lengths[b]`` row b keeps its state and outputs 0, so ``h_n`` is each
sequence's state at its own end; with ``reverse=True`` each sequence runs from its own last
valid step back to 0.

``grad_norms``: pass a list and backward appends a numpy (T,) array, the L2 norm over
(batch, hidden) of the total gradient dL/dh_t reaching each step's hidden state (what the
output at t receives plus what flows back from later steps): the vanishing/exploding
gradient picture. Entry t belongs to time step t in both directions; at a padded step it
is the gradient of the state carried through that step. With a projection it is the
gradient reaching the projected state r_t (P wide), what the generic path records too.

The LSTM with a projection (PyTorch's ``proj_size``, ``w_hr`` (P, H)) runs here as well:
the state the next step reads, and the output, is r_t = h_t W_hr^T, and W_hh is (4H, P).
Per step that is one more GEMM each way around the same cell kernels (forward r_{t-1}
W_hh^T in, h_t W_hr^T out; backward dL/dh_t = dL/dr_t W_hr in, dgates W_hh out), and
dW_hr is one GEMM over all steps. Padded steps keep r and output 0, as PyTorch's packed
sequences; the drivers are ``lstmp_sequence_forward/backward``.

Kernels (``ctx.backend.kernel(name)``; numba in backend/kernels_cpu.py, plain-xp twins in
backend/reference.py, CuPy twins in backend/kernels_cuda.py), one call per time step,
writing into arrays the caller allocated: ``lstm_cell_forward``, ``lstm_cell_backward``,
``gru_cell_forward``, ``gru_cell_backward``, ``rnn_cell_forward``, ``rnn_cell_backward``
(signatures and in-place contract documented in kernels_cpu.py).

What was measured (2-core EPYC, float32, I 128, H 256, T 64, B 32; see
benchmarks/bench_rnn_step.py), and what it taught:

* GEMMs are ~85% of an LSTM training step. The big all-steps GEMMs run at ~180 GFLOP/s,
  close to OpenBLAS's peak; the per-step ones (B = 32 rows) at ~145: they set the floor.
  torch's oneDNN RNN pre-packs W_hh and beats that, so the LSTM step stayed ~1.2-1.3x
  torch, while GRU and tanh/relu RNN (where torch is far from GEMM peak) run ~0.7x.
  Packing W_hh once per call and running OpenBLAS's kernel on it, one thread per half of
  the batch (backend/packed.py), brought the LSTM step to 0.8-1.0x torch (2026-12-03,
  benchmarks/README.md): per-step products at the cores' peak, cells on both cores.
* Fresh multi-MB buffers cost a page fault per 4 KiB page every step (glibc returns them
  to the kernel): ~9 ms of a 45 ms step. Internal buffers come from a small workspace;
  arrays the caller keeps (the state buffer the output views, weight gradients) cannot,
  and the CPU backend's malloc settings (backend/cpu.py) keep those from faulting.
* Operands aligned to 64 bytes made the per-step GEMMs ~20% faster than numpy's default
  16-byte alignment when measured for the first round; the whole-sequence drivers use W_hh
  where it lies (no copy per call) and the state buffers stay 64-byte aligned.
* Python overhead was ~2.5 us per step (a GEMM call plus a numba dispatch), ~1% at this
  size but most of the step at H <= 128: the reason for the compiled drivers.
* numba ``parallel=True`` kernels collide with OpenBLAS's spinning worker threads (10x
  slower); the kernels stay single-threaded. A feature-major layout ((H, B) states) makes
  the per-step GEMMs ~20% faster, but its kernels vectorise over only the B = 32 batch
  lanes and lose more than that (measured again: at best 26 vs 16 us per forward step).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..autograd import Function, Variable
from ..backend import to_host
from .linalg import weight_gradients

__all__ = ["LSTMSequence", "GRUSequence", "RNNSequence", "lstm_sequence", "gru_sequence", "rnn_sequence"]


# --------------------------------------------------------------------------- workspace


def _empty(xp, shape: tuple, dtype: Any):
    """``xp.empty`` aligned to 64 bytes on the CPU.

    numpy aligns large blocks to 16 bytes only; OpenBLAS's small per-step GEMMs run ~20%
    slower on operands that do not start on a cache line (measured with W_hh^T)."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _driver(ctx, name: str, dtype: Any):
    """The backend's compiled whole-sequence loop ``name`` (CPU, float32/float64), or None:
    then the op runs the same per-step kernels from its own Python loop."""
    if np.dtype(dtype) not in (np.float32, np.float64):
        return None
    return ctx.backend.sequence_driver(name)



class _Workspace:
    """Large scratch arrays kept for reuse across calls (numpy only).

    A training step allocates tens of MB of gate buffers and frees them again. glibc hands
    such blocks back to the kernel and the next step pays a page fault per 4 KiB page when
    it touches them (measured: ~9 ms of a 45 ms LSTM step). Internal buffers therefore
    come from here and go back when the last reference to their :class:`_Lease` is gone:
    at the end of backward (the node releases what forward saved), or at once when the
    forward ran without recording a graph. Arrays a caller can see are never leased.
    CuPy has a memory pool of its own, so on the GPU this is a plain ``xp.empty``."""

    def __init__(self, limit_bytes: int = 256 << 20, per_key: int = 4):
        self.limit_bytes = limit_bytes
        self.per_key = per_key
        self.free: dict = {}  # (shape, dtype) -> [arrays]; insertion order = least recently used first
        self.nbytes = 0
        # re-entrant: a lease can die (and give) while its own thread is inside take/give
        self.lock = threading.RLock()

    def take(self, shape: tuple, dtype: Any) -> np.ndarray:
        key = (shape, np.dtype(dtype).str)
        with self.lock:
            arrays = self.free.pop(key, None)
            if arrays:
                array = arrays.pop()
                self.nbytes -= array.nbytes
                if arrays:
                    self.free[key] = arrays  # re-inserted: most recently used goes last
                return array
        return _empty(np, shape, dtype)

    def give(self, array: np.ndarray) -> None:
        if array.nbytes > self.limit_bytes:
            return
        key = (array.shape, array.dtype.str)
        with self.lock:
            arrays = self.free.get(key)
            if arrays is None:
                arrays = self.free[key] = []
            if len(arrays) >= self.per_key:
                return
            arrays.append(array)
            self.nbytes += array.nbytes
            while self.nbytes > self.limit_bytes and self.free:  # evict the least recently used
                oldest = next(iter(self.free))
                victims = self.free[oldest]
                if victims:
                    self.nbytes -= victims.pop(0).nbytes
                if not victims:
                    del self.free[oldest]

    def clear(self) -> None:
        with self.lock:
            self.free.clear()
            self.nbytes = 0


_WORKSPACE = _Workspace()


class _Lease:
    """Owns a workspace array; gives it back when the last reference to the lease goes."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array

    def __del__(self) -> None:
        try:
            _WORKSPACE.give(self.array)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _scratch(xp, leases: list, shape: tuple, dtype: Any):
    """An uninitialised array for internal use; its lease is appended to ``leases``."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    array = _WORKSPACE.take(shape, dtype)
    leases.append(_Lease(array))
    return array


# --------------------------------------------------------------------------- helpers


def _check(name, gate_count, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None):
    """Validate shapes and dtypes; return (T, B, I, H, dtype).

    With a projection ``w_hr`` (P, H) the state h0 and W_hh's columns are P wide."""
    if x.ndim != 3:
        raise ValueError(f"{name}: input must be 3-D (T, B, input_size), got shape {tuple(x.shape)}")
    T, B, I = x.shape
    if T == 0:
        raise ValueError(f"{name}: input has no time steps")
    if w_hr is not None and w_hr.ndim != 2:
        raise ValueError(f"{name}: weight_hr must be (proj_size, hidden_size), got {tuple(w_hr.shape)}")
    if w_hh.ndim != 2 or w_hh.shape[0] % gate_count:
        state = "hidden_size" if w_hr is None else "proj_size"
        raise ValueError(f"{name}: weight_hh must be ({gate_count}*hidden_size, {state}), got {tuple(w_hh.shape)}")
    # the sizes come from W_hh: (G*H, H), or (4H, P) with a projection (then W_hr is (P, H))
    H = w_hh.shape[1] if w_hr is None else w_hh.shape[0] // gate_count
    S = w_hh.shape[1]  # the width of the state h (P with a projection)
    GH = gate_count * H
    expected = [("weight_ih", w_ih, (GH, I)), ("weight_hh", w_hh, (GH, S))]
    if w_hr is not None:
        expected.append(("weight_hr", w_hr, (S, H)))
    expected.append(("h0", h0, (B, S)))
    if c0 is not None:
        expected.append(("c0", c0, (B, H)))
    for label, array, shape in expected + [("bias_ih", b_ih, (GH,)), ("bias_hh", b_hh, (GH,))]:
        if array is None:
            continue
        shape_ok = tuple(array.shape) == shape
        if not shape_ok and label in ("h0", "c0"):  # (1, H) or (H,) broadcast over the batch
            shape_ok = array.ndim <= 2 and all(a in (1, s) for a, s in zip(array.shape[::-1], shape[::-1]))
        if not shape_ok:
            raise ValueError(f"{name}: {label} must have shape {shape}, got {tuple(array.shape)}")
        if array.dtype != x.dtype:
            raise TypeError(f"{name}: {label} has dtype {array.dtype} but the input has {x.dtype}; use one dtype")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point input, got {x.dtype}")
    return T, B, I, H, x.dtype


def _mask(xp, lengths, T, B, name):
    """(T, B) uint8: 1 where step t of sequence b is real, 0 where it is padding."""
    if lengths is None:
        return xp.ones((T, B), dtype=np.uint8)
    if isinstance(lengths, Variable):
        lengths = lengths.array
    lengths = np.asarray(to_host(lengths) if not isinstance(lengths, (list, tuple)) else lengths)
    if lengths.shape != (B,) or lengths.dtype.kind not in "iu":
        raise ValueError(f"{name}: lengths must be {B} integers (one per sequence), got shape {lengths.shape} dtype {lengths.dtype}")
    if B and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"{name}: every length must be in 1..{T} (the number of time steps), got {lengths.tolist()}")
    return xp.asarray((np.arange(T)[:, None] < lengths[None, :]).astype(np.uint8))


def _bias(xp, b_ih, b_hh, size, dtype):
    if b_ih is None and b_hh is None:
        return xp.zeros(size, dtype=dtype)
    if b_ih is None:
        return xp.ascontiguousarray(b_hh)
    if b_hh is None:
        return xp.ascontiguousarray(b_ih)
    return b_ih + b_hh


def _steps(T, reverse):
    """(t, slot of h_{t-1}, slot of h_t) in processing order.

    States live in a (T+1, B, H) buffer: forward reads slot t and writes slot t+1;
    reverse reads slot t+1 and writes slot t (slot T holds h0)."""
    if reverse:
        return [(t, t + 1, t) for t in range(T - 1, -1, -1)]
    return [(t, t, t + 1) for t in range(T)]


def _project_inputs(xp, leases, x, w_ih, T, B, I, GH, dtype):
    """x (T, B, I) @ W_ih^T for all steps at once: one GEMM into a (T, B, G*H) buffer."""
    x2 = xp.ascontiguousarray(x.reshape(T * B, I))
    gates = _scratch(xp, leases, (T, B, GH), dtype)
    xp.matmul(x2, w_ih.T, out=gates.reshape(T * B, GH))
    return x2, gates


def _outputs(xp, hs, mask, reverse, lengths):
    """The (T, B, H) output: a view of the state buffer, zeroed at padded steps."""
    out = hs[:-1] if reverse else hs[1:]
    if lengths is not None:
        out = out * mask[:, :, None].astype(out.dtype)
    return out


def _record_norms(xp, grad_norms, dh_total, T):
    if grad_norms is None:
        return
    sq = (dh_total.reshape(T, -1).astype(np.float64) ** 2).sum(axis=1)
    grad_norms.append(np.sqrt(to_host(sq)))


def _input_grad_request(ctx, xp, w_ih, T, B, I, dtype):
    """(dx, W_ih) for a backward driver that can make dx inside its time loop (the CPU's packed
    loop: each step's dgates W_ih while they are in cache), or None where dx is not needed."""
    if not ctx.needs_input_grad[0]:
        return None
    return xp.empty((T, B, I), dtype=dtype), xp.ascontiguousarray(w_ih)


def _input_and_weight_grads(ctx, xp, dgx, dgh, x2, h_prev, w_ih, T, B, I, dx=None):
    """The GEMMs over all steps: dx, dW_ih, dW_hh, db_ih, db_hh (None where not needed).

    ``dgx`` are the gate gradients W_ih sees, ``dgh`` those W_hh sees (the same array
    except for the GRU). Gradients one array of gate gradients feeds are made together
    (:func:`~microgradnn.ops.linalg.weight_gradients`: on the CPU that array is packed once
    for all of them). ``dx``: the input's gradient where the time loop made it already."""
    needs = ctx.needs_input_grad
    w = ctx.w_index
    GH = dgx.shape[-1]
    gx = dgx.reshape(T * B, GH)
    gh = dgh.reshape(T * B, GH)
    hp = h_prev.reshape(T * B, -1)
    if needs[0] and dx is None:
        dx = xp.matmul(gx, w_ih).reshape(T, B, I)
    if dgh is dgx:  # one array of gate gradients feeds both weights (all but the GRU)
        (dw_ih, dw_hh), db = weight_gradients(ctx.backend, xp, gx, [x2 if needs[w] else None,
                                                                    hp if needs[w + 1] else None],
                                              needs[w + 2] or needs[w + 3])
        db_ih = db if needs[w + 2] else None
        db_hh = (db.copy() if needs[w + 2] else db) if needs[w + 3] else None
    else:
        (dw_ih,), db_ih = weight_gradients(ctx.backend, xp, gx, [x2 if needs[w] else None], needs[w + 2])
        (dw_hh,), db_hh = weight_gradients(ctx.backend, xp, gh, [hp if needs[w + 1] else None], needs[w + 3])
    return dx, dw_ih, dw_hh, db_ih, db_hh


def _backward_steps(T, reverse):
    """The steps of :func:`_steps` in the order backward visits them (last processed first)."""
    return _steps(T, reverse)[::-1]


def _prev_states(hs, reverse):
    """h_{t-1} for every t, as one contiguous (T, B, H) view (what dW_hh needs)."""
    return hs[1:] if reverse else hs[:-1]


# --------------------------------------------------------------------------- LSTM


class LSTMSequence(Function):
    """``(out, h_n, c_n) = LSTMSequence.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths=, reverse=, grad_norms=)``.

    ``w_hr`` (P, H) or None: PyTorch's projection (``proj_size``); see :meth:`_forward_projected`."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, lengths=None, reverse=False, grad_norms=None):
        if w_hr is not None:
            return LSTMSequence._forward_projected(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                                                   grad_norms)
        xp = ctx.xp
        T, B, I, H, dtype = _check("lstm_sequence", 4, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        GH = 4 * H
        mask = _mask(xp, lengths, T, B, "lstm_sequence")
        ctx.leases = leases = []
        x2, gates = _project_inputs(xp, leases, x, w_ih, T, B, I, GH, dtype)
        bias = _bias(xp, b_ih, b_hh, GH, dtype)
        w_hh = xp.ascontiguousarray(w_hh)  # PyTorch's layout, used as it is (no per-call copy)
        hs = _empty(xp, (T + 1, B, H), dtype)  # not leased: the output is a view of it
        cs = _scratch(xp, leases, (T + 1, B, H), dtype)
        first = T if reverse else 0
        hs[first] = h0
        cs[first] = c0
        hh = _scratch(xp, leases, (B, GH), dtype)
        drive = _driver(ctx, "lstm_sequence_forward", dtype)
        if drive is not None:
            drive(gates, w_hh, bias, hs, cs, mask, hh, reverse)
        else:
            kernel = ctx.backend.kernel("lstm_cell_forward")
            matmul, w_hh_t = xp.matmul, w_hh.T
            for t, p, n in _steps(T, reverse):
                h_prev = hs[p]
                matmul(h_prev, w_hh_t, out=hh)
                kernel(gates[t], hh, bias, cs[p], h_prev, mask[t], hs[n], cs[n])
        last = 0 if reverse else T
        ctx.saved = (x2, gates, hs, cs, w_ih, w_hh, mask)
        ctx.reverse, ctx.grad_norms, ctx.w_index, ctx.projected = reverse, grad_norms, 3, False
        return _outputs(xp, hs, mask, reverse, lengths), hs[last], cs[last].copy()

    @staticmethod
    def backward(ctx, dout, dh_n, dc_n):
        if ctx.projected:
            return LSTMSequence._backward_projected(ctx, dout, dh_n, dc_n)
        xp = ctx.xp
        x2, gates, hs, cs, w_ih, w_hh, mask = ctx.saved
        T, B, GH = gates.shape
        H, I, dtype = GH // 4, x2.shape[1], gates.dtype
        dout = xp.ascontiguousarray(dout, dtype=dtype)
        carry = xp.array(dh_n, dtype=dtype, order="C")  # copies: the kernel updates it in place
        dc = xp.array(dc_n, dtype=dtype, order="C")
        dh_rec = xp.zeros((B, H), dtype=dtype)
        leases = []  # returned to the workspace when backward returns
        dgates = _scratch(xp, leases, (T, B, GH), dtype)
        dh_total = xp.empty((T, B, H), dtype=dtype) if ctx.grad_norms is not None else None
        scratch = xp.empty((B, H), dtype=dtype)
        w_hh = xp.ascontiguousarray(w_hh)
        needs_dh0, t_first = ctx.needs_input_grad[1], (T - 1 if ctx.reverse else 0)
        drive = _driver(ctx, "lstm_sequence_backward", dtype)
        asked, dx = _input_grad_request(ctx, xp, w_ih, T, B, I, dtype), None
        if drive is not None:
            if drive(gates, cs, dout, carry, dh_rec, dc, mask, dgates, scratch[None] if dh_total is None else dh_total,
                     w_hh, ctx.reverse, needs_dh0, input_grad=asked) and asked is not None:
                dx = asked[0]
        else:
            kernel = ctx.backend.kernel("lstm_cell_backward")
            for t, p, n in _backward_steps(T, ctx.reverse):
                kernel(gates[t], cs[p], cs[n], dout[t], carry, dh_rec, dc, mask[t], dgates[t],
                       scratch if dh_total is None else dh_total[t])
                if t != t_first or needs_dh0:  # the last product only feeds dL/dh0
                    xp.matmul(dgates[t], w_hh, out=dh_rec)
        _record_norms(xp, ctx.grad_norms, dh_total, T)
        needs = ctx.needs_input_grad
        dh0 = carry + dh_rec if needs[1] else None
        dc0 = dc if needs[2] else None
        dx, dw_ih, dw_hh, db_ih, db_hh = _input_and_weight_grads(
            ctx, xp, dgates, dgates, x2, _prev_states(hs, ctx.reverse), w_ih, T, B, I, dx
        )
        return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh

    # ------------------------------------------------------------------ with a projection
    #
    # PyTorch's proj_size: the cell computes h_t = o * tanh(c_t) (H wide) as usual, and the
    # state the next step reads, and the layer outputs, is its projection r_t = h_t W_hr^T
    # (P wide). So per step there is one more GEMM each way, and the plain cell kernels are
    # reused unchanged: forward feeds them hh = r_{t-1} W_hh^T; backward turns the gradient
    # reaching r_t into dL/dh_t = dr_t W_hr and hands that to the cell backward as its only
    # incoming gradient (with an all-zero carry: in H space nothing is carried, the carried
    # state is r). The bookkeeping of padded steps (r kept, output 0) happens in P space.

    @staticmethod
    def _forward_projected(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, grad_norms):
        xp = ctx.xp
        T, B, I, H, dtype = _check("lstm_sequence", 4, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        P, GH = w_hr.shape[0], 4 * H
        mask = _mask(xp, lengths, T, B, "lstm_sequence")
        ctx.leases = leases = []
        x2, gates = _project_inputs(xp, leases, x, w_ih, T, B, I, GH, dtype)
        bias = _bias(xp, b_ih, b_hh, GH, dtype)
        w_hh, w_hr = xp.ascontiguousarray(w_hh), xp.ascontiguousarray(w_hr)
        rs = _empty(xp, (T + 1, B, P), dtype)  # the projected states: not leased, the output views it
        hs = _scratch(xp, leases, (T + 1, B, H), dtype)  # the cell's h before projection (dW_hr needs it)
        cs = _scratch(xp, leases, (T + 1, B, H), dtype)
        first = T if reverse else 0
        rs[first] = h0
        hs[first] = 0  # not a state; zeroed so that padded rows copy finite values
        cs[first] = c0
        hh = _scratch(xp, leases, (B, GH), dtype)
        drive = _driver(ctx, "lstmp_sequence_forward", dtype)
        if drive is not None:
            drive(gates, w_hh, w_hr, bias, rs, hs, cs, mask, hh, reverse)
        else:
            kernel = ctx.backend.kernel("lstm_cell_forward")
            matmul, w_hh_t, w_hr_t = xp.matmul, w_hh.T, w_hr.T
            padded = None if lengths is None else mask == 0
            for t, p, n in _steps(T, reverse):
                matmul(rs[p], w_hh_t, out=hh)
                kernel(gates[t], hh, bias, cs[p], hs[p], mask[t], hs[n], cs[n])
                matmul(hs[n], w_hr_t, out=rs[n])
                if padded is not None:  # a padded step keeps r_{t-1}
                    xp.copyto(rs[n], rs[p], where=padded[t][:, None])
        last = 0 if reverse else T
        ctx.saved = (x2, gates, rs, hs, cs, w_ih, w_hh, w_hr, mask)
        ctx.reverse, ctx.grad_norms, ctx.w_index, ctx.projected = reverse, grad_norms, 3, True
        return _outputs(xp, rs, mask, reverse, lengths), rs[last], cs[last].copy()

    @staticmethod
    def _backward_projected(ctx, dout, dh_n, dc_n):
        xp = ctx.xp
        x2, gates, rs, hs, cs, w_ih, w_hh, w_hr, mask = ctx.saved
        T, B, GH = gates.shape
        H, I, P, dtype = GH // 4, x2.shape[1], w_hr.shape[0], gates.dtype
        dout = xp.ascontiguousarray(dout, dtype=dtype)
        carry = xp.array(dh_n, dtype=dtype, order="C")  # P space: what passes padded steps unchanged
        dc = xp.array(dc_n, dtype=dtype, order="C")
        dr_rec = xp.zeros((B, P), dtype=dtype)  # dgates_{t+1} W_hh: the recurrent part of dL/dr_t
        leases = []  # returned to the workspace when backward returns
        dgates = _scratch(xp, leases, (T, B, GH), dtype)
        dr = _scratch(xp, leases, (T, B, P), dtype)  # dL/dr_t on active rows, 0 on padded ones (for dW_hr)
        dh = xp.empty((B, H), dtype=dtype)
        zeros = xp.zeros((B, H), dtype=dtype)
        scratch = xp.empty((B, H), dtype=dtype)
        dr_total = xp.empty((T, B, P), dtype=dtype) if ctx.grad_norms is not None else None
        needs_dh0, t_first = ctx.needs_input_grad[1], (T - 1 if ctx.reverse else 0)
        drive = _driver(ctx, "lstmp_sequence_backward", dtype)
        asked, dx = _input_grad_request(ctx, xp, w_ih, T, B, I, dtype), None
        if drive is not None:
            norms_out = xp.empty((1, B, P), dtype=dtype) if dr_total is None else dr_total  # else one scratch step
            if drive(gates, cs, dout, carry, dr_rec, dc, mask, dgates, dr, dh, zeros, scratch, norms_out,
                     w_hh, w_hr, ctx.reverse, needs_dh0, input_grad=asked) and asked is not None:
                dx = asked[0]
        else:
            kernel = ctx.backend.kernel("lstm_cell_backward")
            active = mask.astype(dtype)[:, :, None]  # 1 on real steps, 0 on padding
            padded = 1 - active
            tot = xp.empty((B, P), dtype=dtype)
            for t, p, n in _backward_steps(T, ctx.reverse):
                # what reaches r_t: all of it flows into the cell on active rows, on padded
                # rows (r_t = r_{t-1}, output 0) it moves on unchanged in the carry
                g = dr_total[t] if dr_total is not None else tot
                xp.add(carry, dr_rec, out=g)
                g += dout[t] * active[t]
                xp.multiply(g, active[t], out=dr[t])
                xp.multiply(g, padded[t], out=carry)
                xp.matmul(dr[t], w_hr, out=dh)
                kernel(gates[t], cs[p], cs[n], dh, zeros, zeros, dc, mask[t], dgates[t], scratch)
                if t != t_first or needs_dh0:  # the last product only feeds dL/dh0
                    xp.matmul(dgates[t], w_hh, out=dr_rec)
        _record_norms(xp, ctx.grad_norms, dr_total, T)
        needs = ctx.needs_input_grad
        dh0 = carry + dr_rec if needs[1] else None
        dc0 = dc if needs[2] else None
        dx, dw_ih, dw_hh, db_ih, db_hh = _input_and_weight_grads(
            ctx, xp, dgates, dgates, x2, _prev_states(rs, ctx.reverse), w_ih, T, B, I, dx
        )
        # dW_hr = sum over steps of dr_t^T h_t: one GEMM over all steps (h_t of padded rows
        # is finite and meets dr = 0 there)
        h_new = hs[:-1] if ctx.reverse else hs[1:]
        (dw_hr,), _ = weight_gradients(ctx.backend, xp, dr.reshape(T * B, P),
                                       [h_new.reshape(T * B, H) if needs[7] else None], False)
        return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr


# --------------------------------------------------------------------------- GRU


class GRUSequence(Function):
    """``(out, h_n) = GRUSequence.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=, reverse=, grad_norms=)``."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, grad_norms=None):
        xp = ctx.xp
        T, B, I, H, dtype = _check("gru_sequence", 3, x, h0, None, w_ih, w_hh, b_ih, b_hh)
        GH = 3 * H
        mask = _mask(xp, lengths, T, B, "gru_sequence")
        ctx.leases = leases = []
        x2, gates = _project_inputs(xp, leases, x, w_ih, T, B, I, GH, dtype)
        # r and z see b_ih + b_hh; n sees b_in outside and b_hn inside r * (W_hn h + b_hn)
        bias = _bias(xp, b_ih, None, GH, dtype).copy()
        b_hn = xp.zeros(H, dtype=dtype)
        if b_hh is not None:
            bias[: 2 * H] += b_hh[: 2 * H]
            b_hn = xp.ascontiguousarray(b_hh[2 * H :])
        w_hh = xp.ascontiguousarray(w_hh)
        hs = _empty(xp, (T + 1, B, H), dtype)
        hs[T if reverse else 0] = h0
        hh = _scratch(xp, leases, (T, B, GH), dtype)  # per step h W_hh^T; its n slice is kept for backward
        drive = _driver(ctx, "gru_sequence_forward", dtype)
        if drive is not None:
            drive(gates, w_hh, bias, b_hn, hs, mask, hh, reverse)
        else:
            kernel = ctx.backend.kernel("gru_cell_forward")
            matmul, w_hh_t = xp.matmul, w_hh.T
            for t, p, n in _steps(T, reverse):
                h_prev = hs[p]
                matmul(h_prev, w_hh_t, out=hh[t])
                kernel(gates[t], hh[t], bias, b_hn, h_prev, mask[t], hs[n])
        ctx.saved = (x2, gates, hh, hs, w_ih, w_hh, mask)
        ctx.reverse, ctx.grad_norms, ctx.w_index = reverse, grad_norms, 2
        return _outputs(xp, hs, mask, reverse, lengths), hs[0 if reverse else T]

    @staticmethod
    def backward(ctx, dout, dh_n):
        xp = ctx.xp
        x2, gates, hh, hs, w_ih, w_hh, mask = ctx.saved
        T, B, GH = gates.shape
        H, I, dtype = GH // 3, x2.shape[1], gates.dtype
        dout = xp.ascontiguousarray(dout, dtype=dtype)
        carry = xp.array(dh_n, dtype=dtype, order="C")
        dh_rec = xp.zeros((B, H), dtype=dtype)
        leases = []  # returned to the workspace when backward returns
        dgx = _scratch(xp, leases, (T, B, GH), dtype)
        dgh = _scratch(xp, leases, (T, B, GH), dtype)
        dh_total = xp.empty((T, B, H), dtype=dtype) if ctx.grad_norms is not None else None
        scratch = xp.empty((B, H), dtype=dtype)
        w_hh = xp.ascontiguousarray(w_hh)
        needs_dh0, t_first = ctx.needs_input_grad[1], (T - 1 if ctx.reverse else 0)
        drive = _driver(ctx, "gru_sequence_backward", dtype)
        if drive is not None:
            drive(gates, hh, hs, dout, carry, dh_rec, mask, dgx, dgh, scratch[None] if dh_total is None else dh_total,
                  w_hh, ctx.reverse, needs_dh0)
        else:
            kernel = ctx.backend.kernel("gru_cell_backward")
            for t, p, n in _backward_steps(T, ctx.reverse):
                kernel(gates[t], hh[t], hs[p], dout[t], carry, dh_rec, mask[t], dgx[t], dgh[t],
                       scratch if dh_total is None else dh_total[t])
                if t != t_first or needs_dh0:  # the last product only feeds dL/dh0
                    xp.matmul(dgh[t], w_hh, out=dh_rec)
        _record_norms(xp, ctx.grad_norms, dh_total, T)
        dh0 = carry + dh_rec if ctx.needs_input_grad[1] else None
        dx, dw_ih, dw_hh, db_ih, db_hh = _input_and_weight_grads(
            ctx, xp, dgx, dgh, x2, _prev_states(hs, ctx.reverse), w_ih, T, B, I
        )
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# --------------------------------------------------------------------------- Elman RNN


class RNNSequence(Function):
    """``(out, h_n) = RNNSequence.apply(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity=, lengths=, reverse=, grad_norms=)``."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", lengths=None, reverse=False, grad_norms=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"rnn_sequence: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        xp = ctx.xp
        T, B, I, H, dtype = _check("rnn_sequence", 1, x, h0, None, w_ih, w_hh, b_ih, b_hh)
        relu = nonlinearity == "relu"
        mask = _mask(xp, lengths, T, B, "rnn_sequence")
        ctx.leases = leases = []
        x2, gates = _project_inputs(xp, leases, x, w_ih, T, B, I, H, dtype)
        bias = _bias(xp, b_ih, b_hh, H, dtype)
        w_hh = xp.ascontiguousarray(w_hh)
        hs = _empty(xp, (T + 1, B, H), dtype)
        hs[T if reverse else 0] = h0
        hh = _scratch(xp, leases, (B, H), dtype)
        drive = _driver(ctx, "rnn_sequence_forward", dtype)
        if drive is not None:
            drive(gates, w_hh, bias, hs, mask, hh, reverse, relu)
        else:
            kernel = ctx.backend.kernel("rnn_cell_forward")
            matmul, w_hh_t = xp.matmul, w_hh.T
            for t, p, n in _steps(T, reverse):
                h_prev = hs[p]
                matmul(h_prev, w_hh_t, out=hh)
                kernel(gates[t], hh, bias, h_prev, mask[t], hs[n], relu)
        # backward reads only the states; the projection buffer is reused for the gate gradients
        ctx.saved = (x2, gates, hs, w_ih, w_hh, mask)
        ctx.reverse, ctx.grad_norms, ctx.w_index, ctx.relu = reverse, grad_norms, 2, relu
        return _outputs(xp, hs, mask, reverse, lengths), hs[0 if reverse else T]

    @staticmethod
    def backward(ctx, dout, dh_n):
        xp = ctx.xp
        x2, dgates, hs, w_ih, w_hh, mask = ctx.saved
        T, B, H = dgates.shape
        I, dtype = x2.shape[1], dgates.dtype
        dout = xp.ascontiguousarray(dout, dtype=dtype)
        carry = xp.array(dh_n, dtype=dtype, order="C")
        dh_rec = xp.zeros((B, H), dtype=dtype)
        dh_total = xp.empty((T, B, H), dtype=dtype) if ctx.grad_norms is not None else None
        scratch = xp.empty((B, H), dtype=dtype)
        w_hh = xp.ascontiguousarray(w_hh)
        needs_dh0, t_first = ctx.needs_input_grad[1], (T - 1 if ctx.reverse else 0)
        relu = ctx.relu
        drive = _driver(ctx, "rnn_sequence_backward", dtype)
        asked, dx = _input_grad_request(ctx, xp, w_ih, T, B, I, dtype), None
        if drive is not None:
            if drive(hs, dout, carry, dh_rec, mask, dgates, scratch[None] if dh_total is None else dh_total,
                     w_hh, ctx.reverse, needs_dh0, relu, input_grad=asked) and asked is not None:
                dx = asked[0]
        else:
            kernel = ctx.backend.kernel("rnn_cell_backward")
            for t, p, n in _backward_steps(T, ctx.reverse):
                kernel(hs[n], dout[t], carry, dh_rec, mask[t], dgates[t],
                       scratch if dh_total is None else dh_total[t], relu)
                if t != t_first or needs_dh0:  # the last product only feeds dL/dh0
                    xp.matmul(dgates[t], w_hh, out=dh_rec)
        _record_norms(xp, ctx.grad_norms, dh_total, T)
        dh0 = carry + dh_rec if ctx.needs_input_grad[1] else None
        dx, dw_ih, dw_hh, db_ih, db_hh = _input_and_weight_grads(
            ctx, xp, dgates, dgates, x2, _prev_states(hs, ctx.reverse), w_ih, T, B, I, dx
        )
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# --------------------------------------------------------------------------- public API


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, grad_norms=None,
                  w_hr=None):
    """Run one LSTM layer in one direction over a time-major sequence.

    x (T, B, I); h0, c0 (B, H); w_ih (4H, I); w_hh (4H, H); b_ih, b_hh (4H,) or None.
    Returns ``(out, h_n, c_n)``: out (T, B, H), h_n and c_n (B, H).

    ``w_hr`` (P, H): PyTorch's projection (``proj_size`` P < H). The state and the output
    are then r_t = h_t W_hr^T: h0, h_n and out are P wide and w_hh is (4H, P); c stays H."""
    if w_hr is None:  # seven inputs, as before the projection existed
        return LSTMSequence.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse,
                                  grad_norms=grad_norms)
    return LSTMSequence.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths=lengths, reverse=reverse,
                              grad_norms=grad_norms)


def gru_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, grad_norms=None):
    """Run one GRU layer in one direction: x (T, B, I), h0 (B, H), w_ih (3H, I),
    w_hh (3H, H), biases (3H,) or None. Returns ``(out, h_n)``."""
    return GRUSequence.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, grad_norms=grad_norms)


def rnn_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", lengths=None, reverse=False, grad_norms=None):
    """Run one Elman RNN layer (tanh or relu) in one direction: x (T, B, I), h0 (B, H),
    w_ih (H, I), w_hh (H, H), biases (H,) or None. Returns ``(out, h_n)``."""
    return RNNSequence.apply(
        x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity=nonlinearity, lengths=lengths, reverse=reverse, grad_norms=grad_norms
    )
