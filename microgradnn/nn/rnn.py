"""Recurrent networks: cells, a sequence runner, and PyTorch's ``RNN``, ``LSTM`` and ``GRU``.

This page reads top to bottom in three parts.

1. **The math of one time step**, written once as pure functions of tensors
   (:func:`rnn_step`, :func:`lstm_step`, :func:`gru_step`). The cell Modules call them, and
   so does the sequence layers' generic path; there is no second copy of any equation.
2. **Running a cell over time**: :func:`run_sequence` unrolls *any* cell over a
   time-major sequence and lets plain autograd do backpropagation through time (BPTT).
   It handles variable-length batches (masking), the reverse direction, and can record
   how large the gradient reaching each time step is (the vanishing-gradient picture).
3. **Sequence layers**: :class:`Recurrent` stacks any cell into a multi-layer,
   optionally bidirectional layer; :class:`RNN`, :class:`LSTM` and :class:`GRU` are
   drop-in PyTorch look-alikes (same signature, parameter names, ``state_dict`` keys,
   init and return values) that use a fused whole-sequence kernel
   (:mod:`microgradnn.ops.recurrent`) when they can and the generic runner otherwise.

Backpropagation through time, in one paragraph
----------------------------------------------
Unrolling a recurrence ``h_t = f(x_t, h_{t-1}; W)`` over T steps builds an ordinary
(deep) computation graph: T copies of the cell that all share the same ``W``. BPTT is
nothing but reverse-mode autodiff on that graph. Walking back from the loss, each step
receives ``dL/dh_t`` = (what its own output contributed) + (what flowed back from step
t+1 through ``dh_{t+1}/dh_t``). The shared ``W`` collects one gradient contribution per
step, and autograd sums them, because a value used T times gets the sum of T gradients.
Since ``dL/dh_t`` is a product of T - t Jacobians ``dh_{k+1}/dh_k``, it tends to shrink
(or blow up) geometrically with distance: the vanishing/exploding gradient problem that
motivated the LSTM's additive cell state. ``track_grad_norms`` lets you watch it happen.

Conventions (as PyTorch): tensors are time-major ``(T, B, features)`` unless
``batch_first=True``; final states are stacked ``(num_layers * num_directions, B, H)``
with index ``layer * num_directions + direction``; the reverse direction's weights carry a
``_reverse`` suffix.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import warnings
from typing import Any, Callable

import numpy as np

from ..autograd import Variable, is_grad_enabled, no_grad
from ..ops import recurrent
from ..tensor import Tensor, cat, empty, linear, rand_rows, stack, where, zeros
from .module import Module, Parameter
from .utils.rnn import PackedSequence, forward_packed

__all__ = [
    "rnn_step",
    "lstm_step",
    "gru_step",
    "run_sequence",
    "RNNCellBase",
    "RNNCell",
    "LSTMCell",
    "rnn_relu_cell",
    "GRUCell",
    "Recurrent",
    "RNNBase",
    "RNN",
    "LSTM",
    "GRU",
]

State = Any  # a Tensor, or a tuple of Tensors (the LSTM's (h, c))


# =============================================================================
# 1. One time step, written once
# =============================================================================
#
# Every cell mixes the current input x_t (B, I) and the previous hidden state h (B, H)
# through two affine maps, W_ih x + b_ih and W_hh h + b_hh, stored PyTorch's way:
# weight_ih is (G*H, I) and weight_hh is (G*H, H) where G is the number of gates, the
# gates' rows stacked one after another. ``linear(x, W, b)`` is x @ W.T + b in one op.


def rnn_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """Elman RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, act = tanh or relu.

    The simplest recurrence, and the one that shows the vanishing gradient most clearly:
    dh'/dh = diag(act'(.)) W_hh, and with tanh (act' <= 1) a W_hh with small singular
    values shrinks the gradient at every step it travels back."""
    pre = linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh)
    return pre.tanh() if nonlinearity == "tanh" else pre.relu()


def lstm_step(x: Tensor, state: tuple, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, w_hr: Tensor | None = None) -> tuple:
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of
    Gers et al. 2000), PyTorch's layout: gate rows in the order i, f, g, o.

    ::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     input gate: how much to write
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)     forget gate: how much to keep
        g = tanh   (W_ig x + b_ig + W_hg h + b_hg)     candidate values to write
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)     output gate: how much to show
        c' = f * c + i * g                             the cell state: an additive memory
        h' = o * tanh(c')

    Why it helps gradients: dc'/dc = f, elementwise. When the forget gate is near 1 the
    gradient flows back along c almost unchanged, over many steps (the "constant error
    carousel"), instead of being multiplied by a weight matrix at every step.

    With a projection (``w_hr``, shape (P, H), PyTorch's ``proj_size``) the hidden state is
    projected down, ``h' = W_hr (o * tanh(c'))``, so h is (B, P) while c stays (B, H).
    Returns ``(h', c')``."""
    h, c = state
    gates = linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh)  # (B, 4H): all four gates in one GEMM each
    i, f, g, o = gates.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c_next = f * c + i * g
    h_next = o * c_next.tanh()
    if w_hr is not None:
        h_next = linear(h_next, w_hr)
    return h_next, c_next


def gru_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> Tensor:
    """Gated recurrent unit (Cho et al. 2014), PyTorch's layout: gate rows r, z, n.

    ::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)          reset gate
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)          update gate
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))       candidate state
        h' = (1 - z) * n + z * h

    Note where the reset gate sits: it multiplies ``W_hn h + b_hn`` *after* the matrix
    product (PyTorch's and cuDNN's form, not the paper's ``W_hn (r * h)``), which is what
    lets both affine maps run as one GEMM each. ``h'`` is an interpolation between the old
    state and the candidate; when z is near 1, dh'/dh is near the identity and the gradient
    passes through, as through the LSTM's cell state."""
    gi = linear(x, w_ih, b_ih)  # (B, 3H)
    gh = linear(h, w_hh, b_hh)  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r = (i_r + h_r).sigmoid()
    z = (i_z + h_z).sigmoid()
    n = (i_n + r * h_n).tanh()
    return n + z * (h - n)  # = (1 - z) * n + z * h, one op fewer


# =============================================================================
# 2. Running any cell over a sequence
# =============================================================================


def _is_state_tuple(state: State) -> bool:
    return isinstance(state, (tuple, list))


def _lengths_array(lengths: Any, batch: int, steps: int, allow_zero: bool = False) -> np.ndarray | None:
    """``lengths`` (list, numpy array or Tensor, one per sequence) as a numpy int64 array,
    or None when every sequence is full length (then no masking is needed)."""
    if lengths is None:
        return None
    if isinstance(lengths, Variable):
        lengths = lengths.array
    if not isinstance(lengths, (list, tuple, np.ndarray)) and hasattr(lengths, "get"):
        lengths = lengths.get()  # a cupy array
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.shape[0] != batch:
        raise ValueError(f"lengths must hold one length per sequence ({batch}), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"lengths must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    low = 0 if allow_zero else 1
    if arr.size and (arr.min() < low or arr.max() > steps):
        raise ValueError(f"lengths: every length must be in {low}..{steps} (the number of time steps), got {arr.tolist()}")
    if np.all(arr == steps):
        return None
    return arr


class _NormRecorder:
    """Collects ||dL/dh_t|| for t = 0..T-1 from hooks during backward.

    Each hook fires once per backward pass. A hook for a step already filled in means a
    new backward pass (``retain_graph=True``) has begun, so a fresh array is started;
    every array is appended to ``sink`` as soon as it is started, and is complete when
    backward returns."""

    def __init__(self, steps: int, sink: list):
        self.steps, self.sink = steps, sink
        self.current: np.ndarray | None = None
        self.filled: set = set()

    def hook(self, t: int) -> Callable[[Tensor], None]:
        def record(grad: Tensor) -> None:
            if self.current is None or t in self.filled:
                self.current, self.filled = np.zeros(self.steps), set()
                self.sink.append(self.current)
            g = grad.array
            total = (g.astype(np.float64) ** 2).sum()
            self.current[t] = math.sqrt(float(total))
            self.filled.add(t)

        return record


def run_sequence(
    step_fn: Callable[[Tensor, State], tuple],
    x: Tensor,
    state: State,
    lengths: Any = None,
    reverse: bool = False,
    grad_norms: list | None = None,
) -> tuple:
    """Unroll ``step_fn`` over the time-major sequence ``x`` (T, B, I) with plain autograd.

    ``step_fn(x_t, state) -> (h_t, new_state)``: ``x_t`` is (B, I), ``state`` a tensor or a
    tuple of tensors, ``h_t`` the (B, H) output of the step. Returns ``(outputs, final_state)``
    with ``outputs`` (T, B, H), ``outputs[t]`` the output of time step t (whatever the
    direction). Backward through the result is BPTT: autograd walks the unrolled graph.

    ``lengths`` (B,) ints: sequence b is real for t < lengths[b] and padding after. At a
    padded step the state is kept, ``state = where(real, new_state, state)``, and the
    output is 0, so the final state is each sequence's state at its own end; no gradient
    flows through the discarded computation (``where`` sends it to the chosen branch only).
    ``reverse=True`` walks t = T-1 .. 0; the padded steps (at the end of each row) then come
    first and keep the initial state, so each sequence effectively starts from its own last
    real step (PyTorch's packed-sequence semantics).

    ``grad_norms``: a list; during backward one numpy (T,) array is appended holding
    ||dL/dh_t|| (L2 over batch and hidden) for each step t: the total gradient reaching
    that step's hidden state, from its output and from the steps after it. It is recorded
    with a hook (``register_hook``) on each h_t.
    """
    if x.ndim != 3:
        raise ValueError(f"run_sequence: x must be time-major (T, B, features), got shape {x.shape}")
    steps, batch = x.shape[0], x.shape[1]
    lens = _lengths_array(lengths, batch, steps, allow_zero=True)
    xp = x._backend.xp
    inputs = x.unbind(0)  # one (B, I) tensor per step; its backward stacks the step gradients
    recorder = _NormRecorder(steps, grad_norms) if grad_norms is not None and is_grad_enabled() else None
    outputs: list = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h_t, new_state = step_fn(inputs[t], state)
        if lens is not None:
            real = xp.asarray(t < lens)[:, None]  # (B, 1) bool: which rows are real at step t
            if _is_state_tuple(new_state):
                masked = tuple(where(real, n, o) for n, o in zip(new_state, state))
                if h_t is new_state[0]:
                    h_t = masked[0]
            else:
                masked = where(real, new_state, state)
                if h_t is new_state:
                    h_t = masked
            new_state = masked
            out_t = h_t * xp.asarray(real, dtype=h_t.dtype)  # padded steps output 0
        else:
            out_t = h_t
        if recorder is not None and h_t.requires_grad:
            h_t.register_hook(recorder.hook(t))
        outputs[t] = out_t
        state = new_state
    return stack(outputs, 0), state


def _dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout (zero with probability p, scale survivors by 1/(1-p))."""
    if p >= 1.0:
        return x * 0.0
    # x is (T, B, H) here: axis 1 runs over the examples (see tensor.rand_rows)
    keep = rand_rows(x.shape, 1, dtype=x.dtype, device=x._backend).array >= p
    return x * (keep.astype(x.dtype) / (1.0 - p))


def _stack_states(finals: list) -> State:
    """[state per layer/direction] -> stacked (L*D, B, H) tensor, or a tuple of them."""
    if _is_state_tuple(finals[0]):
        return tuple(stack([f[i] for f in finals], 0) for i in range(len(finals[0])))
    return stack(finals, 0)


def _run_layers(x: Tensor, states: list, runners: list, num_layers: int, num_directions: int,
                lengths: np.ndarray | None, dropout: float, training: bool, sinks: list | None) -> tuple:
    """The multi-layer, multi-direction loop shared by every sequence layer.

    ``runners[k](x, state, lengths, reverse, grad_norms) -> (out (T, B, H), final_state)``
    for k = layer * num_directions + direction. Each layer's directions read the same
    input; their outputs are concatenated on the feature axis to feed the next layer,
    with dropout between layers in training (never after the last layer, as PyTorch)."""
    finals = []
    layer_input = x
    for layer in range(num_layers):
        outs = []
        for direction in range(num_directions):
            k = layer * num_directions + direction
            out, final = runners[k](layer_input, states[k], lengths, direction == 1, sinks[k] if sinks else None)
            outs.append(out)
            finals.append(final)
        layer_input = outs[0] if num_directions == 1 else cat(outs, 2)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = _dropout(layer_input, dropout)
    return layer_input, finals


# =============================================================================
# 3a. Cells (PyTorch's RNNCell, LSTMCell, GRUCell)
# =============================================================================


def _param(shape: tuple, device: Any, dtype: Any) -> Parameter:
    return Parameter(empty(*shape, dtype=dtype, device=device if device is not None else "cpu"))


class RNNCellBase(Module):
    """Shared parts of the built-in cells: PyTorch's four parameters and init.

    A cell is used two ways:

    * ``cell.step(x_t, state) -> (h_t, new_state)``: the convention :func:`run_sequence` and
      :class:`Recurrent` use (a plugin cell may implement this, or make its ``forward``
      follow it);
    * ``cell(input, hx=None)``: PyTorch's ``forward``, returning ``h'`` (or ``(h', c')``
      for the LSTM), accepting batched (B, I) or unbatched (I,) input.
    """

    num_chunks = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None):
        super().__init__()
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = self.num_chunks * hidden_size
        self.weight_ih = _param((gates, input_size), device, dtype)
        self.weight_hh = _param((gates, hidden_size), device, dtype)
        if bias:
            self.bias_ih = _param((gates,), device, dtype)
            self.bias_hh = _param((gates,), device, dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's init: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    @property
    def state_size(self) -> Any:
        return self.hidden_size

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init_state(self, batch: int, device: Any = None, dtype: Any = None) -> State:
        """The zero state for a batch of ``batch`` sequences."""
        device = device if device is not None else self.weight_ih._backend
        dtype = dtype if dtype is not None else self.weight_ih.dtype
        sizes = self.state_size
        if isinstance(sizes, tuple):
            return tuple(zeros(batch, n, dtype=dtype, device=device) for n in sizes)
        return zeros(batch, sizes, dtype=dtype, device=device)

    def _prepare(self, input: Tensor, hx: Any) -> tuple:
        """Unbatched (I,) input becomes a batch of one; a missing hx becomes zeros."""
        if input.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), got {input.shape}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {input.shape[-1]} features, expected input_size={self.input_size}")
        unbatched = input.ndim == 1
        if unbatched:
            input = input.unsqueeze(0)
        if hx is None:
            state = self.init_state(input.shape[0], input._backend, input.dtype)
        elif unbatched:
            state = tuple(h.unsqueeze(0) for h in hx) if _is_state_tuple(hx) else hx.unsqueeze(0)
        else:
            state = tuple(hx) if _is_state_tuple(hx) else hx
        return input, state, unbatched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (or relu), as ``torch.nn.RNNCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity!r}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def step(self, x: Tensor, state: Tensor) -> tuple:
        h = rnn_step(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        return h, h

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, state, unbatched = self._prepare(input, hx)
        h, _ = self.step(input, state)
        return h.squeeze(0) if unbatched else h


class LSTMCell(RNNCellBase):
    """One LSTM step, as ``torch.nn.LSTMCell``: ``forward(input, (h, c)) -> (h', c')``."""

    num_chunks = 4

    @property
    def state_size(self) -> tuple:
        return (self.hidden_size, self.hidden_size)

    def step(self, x: Tensor, state: tuple) -> tuple:
        h, c = lstm_step(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h, (h, c)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        input, state, unbatched = self._prepare(input, hx)
        h, (_, c) = self.step(input, state)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(RNNCellBase):
    """One GRU step, as ``torch.nn.GRUCell``: ``forward(input, h) -> h'``."""

    num_chunks = 3

    def step(self, x: Tensor, state: Tensor) -> tuple:
        h = gru_step(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h, h

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, state, unbatched = self._prepare(input, hx)
        h, _ = self.step(input, state)
        return h.squeeze(0) if unbatched else h


# =============================================================================
# 3b. Shared machinery of the sequence layers
# =============================================================================


def _learned_name(i: int) -> str:
    return ("h0", "c0")[i] if i < 2 else f"s{i}_0"


class _SequenceLayer(Module):
    """What :class:`Recurrent` and :class:`RNNBase` share: input/state plumbing around
    :func:`_run_layers`, learned initial states, and gradient-norm tracking.

    Subclasses provide ``_runners(fused)`` (one sequence function per layer/direction),
    ``_state_sizes()`` (size of each state component: (H,) or (H_out, H)) and
    ``_tuple_state`` (whether the state is a tuple)."""

    num_layers: int
    bidirectional: bool
    batch_first: bool
    dropout: float

    def _setup_extras(self, init_state: Any, track_grad_norms: bool, device: Any, dtype: Any) -> None:
        if init_state not in (None, "zeros", "learned"):
            raise ValueError(f"init_state must be None, 'zeros' or 'learned', got {init_state!r}")
        self.init_state = init_state
        self.track_grad_norms = track_grad_norms
        self._norm_sinks: list | None = None
        self._norm_steps = 0
        if init_state == "learned":
            # One learned initial state per layer and direction, shared by every sequence
            # in the batch (shape (L*D, 1, size), broadcast over the batch). Zero to start.
            n = self.num_layers * self.num_directions
            for i, size in enumerate(self._state_sizes()):
                p = _param((n, 1, size), device, dtype)
                with no_grad():
                    p.zero_()
                setattr(self, _learned_name(i), p)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def last_grad_norms(self) -> np.ndarray | None:
        """After ``backward()``: ||dL/dh_t|| per time step, for every layer and direction.

        A numpy array shaped ``(num_layers * num_directions, T)``; row ``k = layer *
        num_directions + direction`` (the same indexing as ``h_n``), column t the input's
        time step t (for the reverse direction too). The top layer is row -1 (one
        direction) or rows -2: (bidirectional). Each entry is the L2 norm over batch and
        hidden units of the total gradient reaching that step's hidden state. Needs
        ``track_grad_norms=True`` before the forward pass; None before any backward."""
        sinks = self._norm_sinks
        if not sinks or not any(sinks):
            return None
        return np.stack([s[-1] if s else np.zeros(self._norm_steps) for s in sinks])

    def _initial_states(self, hx: Any, batch: int, x: Tensor) -> list:
        """One state per layer/direction: from hx, the learned h0/c0, or zeros."""
        n = self.num_layers * self.num_directions
        sizes = self._state_sizes()
        if hx is not None:
            parts = tuple(hx) if _is_state_tuple(hx) else (hx,)
            if len(parts) != len(sizes):
                raise ValueError(f"{type(self).__name__}: hx must hold {len(sizes)} tensor(s), got {len(parts)}")
            for i, (part, size) in enumerate(zip(parts, sizes)):
                expected = (n, batch, size)
                if tuple(part.shape) != expected:
                    which = "hx" if len(sizes) == 1 else f"hx[{i}]"
                    raise ValueError(f"{type(self).__name__}: expected {which} of shape {expected}, got {tuple(part.shape)}")
        elif self.init_state == "learned":
            parts = tuple(getattr(self, _learned_name(i)).expand(n, batch, size) for i, size in enumerate(sizes))
        else:
            return [self._default_state(k, batch, x) for k in range(n)]
        per_layer = [part.unbind(0) for part in parts]
        if not self._tuple_state:
            return list(per_layer[0])
        return [tuple(p[k] for p in per_layer) for k in range(n)]

    def _default_state(self, k: int, batch: int, x: Tensor) -> State:
        """The state of layer/direction k when neither hx nor a learned state is given: zeros."""
        parts = tuple(zeros(batch, size, dtype=x.dtype, device=x._backend) for size in self._state_sizes())
        return parts if self._tuple_state else parts[0]

    def _forward(self, input: Tensor, hx: Any, lengths: Any, fused: bool) -> tuple:
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: expected 2-D (unbatched) or 3-D input, got shape {input.shape}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.shape[-1]}")
        unbatched = input.ndim == 2
        if unbatched:
            if lengths is not None:
                raise ValueError(f"{type(self).__name__}: lengths needs a batched (3-D) input")
            x = input.unsqueeze(1)
            if hx is not None:
                parts = tuple(hx) if _is_state_tuple(hx) else (hx,)
                if any(p.ndim != 2 for p in parts):
                    raise ValueError(f"{type(self).__name__}: for unbatched 2-D input, hx should also be 2-D")
                parts = tuple(p.unsqueeze(1) for p in parts)
                hx = parts if _is_state_tuple(hx) else parts[0]
        else:
            x = input.transpose(0, 1) if self.batch_first else input  # time-major from here on
            if hx is not None:
                parts = tuple(hx) if _is_state_tuple(hx) else (hx,)
                if any(p.ndim != 3 for p in parts):
                    raise ValueError(f"{type(self).__name__}: for batched 3-D input, hx should also be 3-D")
        steps, batch = x.shape[0], x.shape[1]
        lens = _lengths_array(lengths, batch, steps)
        states = self._initial_states(hx, batch, x)
        sinks = None
        if self.track_grad_norms and is_grad_enabled():
            sinks = [[] for _ in range(self.num_layers * self.num_directions)]
            self._norm_sinks, self._norm_steps = sinks, steps
        out, finals = _run_layers(x, states, self._runners(fused), self.num_layers, self.num_directions,
                                  lens, self.dropout, self.training, sinks)
        h_n = _stack_states(finals)
        if unbatched:
            out = out.squeeze(1)
            h_n = tuple(h.squeeze(1) for h in h_n) if _is_state_tuple(h_n) else h_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n


# =============================================================================
# 3c. Recurrent: any cell, multi-layer, bidirectional, variable length
# =============================================================================

def _cell_by_name(name: str) -> type:
    """``"gru"`` -> :class:`GRUCell`: the built-in cells by their class names (no table)."""
    cells = {c.__name__.lower().removesuffix("cell"): c for c in RNNCellBase.__subclasses__()}
    if name.lower() not in cells:
        raise ValueError(f"unknown cell {name!r}: built-ins are {sorted(cells)}")
    return cells[name.lower()]


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class Recurrent(_SequenceLayer):
    """A multi-layer, optionally bidirectional sequence layer over ANY cell.

    ``cell`` is a cell class, a factory ``cell(input_size, hidden_size, **kwargs)``, or the
    name of a built-in ("rnn", "lstm", "gru"). One cell is built per layer and direction
    (layer k > 0 reads the concatenated outputs of layer k-1) and registered as
    ``cell_l{k}`` / ``cell_l{k}_reverse``. ``bias`` is passed on when the factory accepts
    it; ``cell_kwargs`` are passed on as they are.

    The cell must follow the runner convention ``(h_t, new_state) = cell.step(x_t, state)``
    (or, without a ``step`` method, ``cell(x_t, state)``); it may define
    ``init_state(batch, device, dtype)`` (else the state is one zero (B, hidden_size)
    tensor) and ``output_size`` (else h_t is assumed to be ``hidden_size`` wide). Time runs
    through :func:`run_sequence`, so variable lengths, reverse direction, BPTT and
    gradient-norm tracking come for free.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)`` with PyTorch's conventions:
    output (T, B, D*H) (batch-first if asked), ``h_n`` stacked (num_layers*D, B, size) — a
    tuple of such tensors for a tuple state (the LSTM's ``(h_n, c_n)``)."""

    def __init__(self, cell: Any, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 init_state: str | None = None, track_grad_norms: bool = False, **cell_kwargs: Any):
        super().__init__()
        if isinstance(cell, str):
            cell = _cell_by_name(cell)
        if isinstance(cell, Module):
            raise TypeError("Recurrent needs a cell class or factory (it builds one cell per layer and direction), not a cell instance")
        if not callable(cell):
            raise TypeError(f"cell must be a cell class, a factory or a built-in name, got {cell!r}")
        _check_layer_args(num_layers, dropout)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        kwargs = dict(cell_kwargs)
        if _accepts(cell, "bias"):
            kwargs["bias"] = bias
        elif not bias:
            raise TypeError(f"bias=False was asked for but {getattr(cell, '__name__', cell)!r} takes no 'bias' argument")
        self._cell_names: list[str] = []
        layer_input = input_size
        for layer in range(num_layers):
            width = 0
            for direction in range(self.num_directions):
                c = cell(layer_input, hidden_size, **kwargs)
                name = f"cell_l{layer}" + ("_reverse" if direction == 1 else "")
                setattr(self, name, c)
                self._cell_names.append(name)
                width += getattr(c, "output_size", hidden_size)
            layer_input = width
        probe = self._zero_state(self.cells[0], 1, None, None)
        self._tuple_state = _is_state_tuple(probe)
        self._sizes = tuple(p.shape[-1] for p in probe) if self._tuple_state else (probe.shape[-1],)
        first = next(iter(self.cells[0].parameters()), None)
        self._setup_extras(init_state, track_grad_norms,
                           first._backend if first is not None else None, first.dtype if first is not None else None)

    @property
    def cells(self) -> list:
        """The cells, in ``h_n`` order (layer-major, forward direction first)."""
        return [getattr(self, n) for n in self._cell_names]

    def _state_sizes(self) -> tuple:
        return self._sizes

    def _default_state(self, k: int, batch: int, x: Tensor) -> State:
        return self._zero_state(self.cells[k], batch, x._backend, x.dtype)

    def _zero_state(self, cell: Module, batch: int, device: Any, dtype: Any) -> State:
        if hasattr(cell, "init_state"):
            return cell.init_state(batch, device, dtype)
        first = next(iter(cell.parameters()), None)
        device = device if device is not None else (first._backend if first is not None else "cpu")
        dtype = dtype if dtype is not None else (first.dtype if first is not None else None)
        return zeros(batch, cell.hidden_size, dtype=dtype, device=device)

    def _runners(self, fused: bool) -> list:
        def runner(cell: Module) -> Callable:
            step = cell.step if hasattr(cell, "step") else cell

            def run(x, state, lengths, reverse, grad_norms):
                return run_sequence(step, x, state, lengths, reverse, grad_norms)

            return run

        return [runner(c) for c in self.cells]

    def forward(self, input: Tensor, hx: Any = None, lengths: Any = None) -> tuple:
        if isinstance(input, PackedSequence):  # PyTorch's packed input: the same lengths path
            return forward_packed(self, input, hx)
        return self._forward(input, hx, lengths, fused=False)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.init_state == "learned":
            s += ", init_state='learned'"
        return s


def _check_layer_args(num_layers: int, dropout: Any) -> None:
    if not isinstance(num_layers, int) or num_layers <= 0:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
            f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
            stacklevel=3,
        )


# =============================================================================
# 3d. RNN, LSTM, GRU: PyTorch's sequence layers
# =============================================================================


class RNNBase(_SequenceLayer):
    """PyTorch's ``RNNBase``: flat parameters named ``weight_ih_l{k}{_reverse}`` etc.,
    registered in PyTorch's order, so ``state_dict()`` has exactly torch's keys.

    ``mode`` is "RNN_TANH", "RNN_RELU", "LSTM" or "GRU". Extras beyond PyTorch (keyword
    only): ``init_state="learned"`` adds Parameters ``h0`` (and ``c0`` for the LSTM)
    shaped (num_layers*D, 1, size), broadcast over the batch; ``track_grad_norms=True``
    fills :attr:`last_grad_norms` after each backward; ``fused=False`` forces the generic
    path (otherwise the fused kernels of :mod:`microgradnn.ops.recurrent` run, the LSTM
    with ``proj_size`` included). Both paths give the same numbers."""

    _GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None, *, init_state: str | None = None,
                 track_grad_norms: bool = False, fused: bool = True):
        super().__init__()
        if mode not in self._GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        _check_layer_args(num_layers, dropout)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        self.proj_size = proj_size
        self.fused = fused
        self._tuple_state = mode == "LSTM"

        gate_size = self._GATES[mode] * hidden_size
        out_size = proj_size if proj_size > 0 else hidden_size  # the width of h
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                layer_input = input_size if layer == 0 else out_size * self.num_directions
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, out_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                names = []
                for kind, shape in shapes:
                    setattr(self, kind + suffix, _param(shape, device, dtype))
                    names.append(kind + suffix)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()
        self._setup_extras(init_state, track_grad_norms, device, dtype)

    def reset_parameters(self) -> None:
        """PyTorch's init: every weight and bias U(-1/sqrt(H), 1/sqrt(H)) (learned initial
        states, if any, are left alone)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with no_grad():
            for name in self._flat_weights_names:
                getattr(self, name).uniform_(-bound, bound)

    def flatten_parameters(self) -> None:
        """A no-op kept for PyTorch compatibility (there is no cuDNN weight buffer here)."""

    @property
    def all_weights(self) -> list:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def _state_sizes(self) -> tuple:
        out_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (out_size, self.hidden_size) if self.mode == "LSTM" else (out_size,)

    def _weights(self, k: int) -> tuple:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of layer/direction k, None where absent."""
        suffix = self._all_weights[k][0][len("weight_ih"):]
        # Read by attribute, not from ``_parameters``: a parametrized weight (LoRA, IA3 in
        # microgradnn.finetune) is computed from its original on access.
        get = lambda kind: getattr(self, kind + suffix) if kind + suffix in self._flat_weights_names else None  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def uses_fused_path(self, fused: bool | None = None) -> bool:
        """Whether forward will run the fused whole-sequence kernels: always, unless
        ``fused`` is switched off (the LSTM with ``proj_size`` included: the op projects
        the state itself, see :class:`microgradnn.ops.recurrent.LSTMSequence`)."""
        fused = self.fused if fused is None else fused
        return bool(fused)

    def _runners(self, fused: bool) -> list:
        ops = recurrent if self.uses_fused_path(fused) else None
        return [self._runner(k, ops) for k in range(len(self._all_weights))]

    def _runner(self, k: int, ops: Any) -> Callable:
        w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(k)
        mode = self.mode
        nonlinearity = "relu" if mode == "RNN_RELU" else "tanh"

        if ops is not None:  # the fused whole-sequence kernels: one autograd node per layer/direction
            if mode == "LSTM":
                def run(x, state, lengths, reverse, grad_norms):
                    out, h, c = ops.lstm_sequence(x, state[0], state[1], w_ih, w_hh, b_ih, b_hh,
                                                  lengths=lengths, reverse=reverse, grad_norms=grad_norms,
                                                  w_hr=w_hr)
                    return out, (h, c)
            elif mode == "GRU":
                def run(x, state, lengths, reverse, grad_norms):
                    out, h = ops.gru_sequence(x, state, w_ih, w_hh, b_ih, b_hh,
                                              lengths=lengths, reverse=reverse, grad_norms=grad_norms)
                    return out, h
            else:
                def run(x, state, lengths, reverse, grad_norms):
                    out, h = ops.rnn_sequence(x, state, w_ih, w_hh, b_ih, b_hh, nonlinearity=nonlinearity,
                                              lengths=lengths, reverse=reverse, grad_norms=grad_norms)
                    return out, h
            return run

        # The generic path: the same step functions as the cells, unrolled by run_sequence.
        if mode == "LSTM":
            def step(x_t, state):
                h, c = lstm_step(x_t, state, w_ih, w_hh, b_ih, b_hh, w_hr)
                return h, (h, c)
        elif mode == "GRU":
            def step(x_t, h):
                h = gru_step(x_t, h, w_ih, w_hh, b_ih, b_hh)
                return h, h
        else:
            def step(x_t, h):
                h = rnn_step(x_t, h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
                return h, h

        def run(x, state, lengths, reverse, grad_norms):
            return run_sequence(step, x, state, lengths, reverse, grad_norms)

        return run

    def forward(self, input: Tensor, hx: Any = None, lengths: Any = None) -> tuple:
        """``(output, h_n)`` (``(output, (h_n, c_n))`` for the LSTM), as PyTorch.

        input (T, B, I), (B, T, I) with ``batch_first``, or unbatched (T, I); hx (L*D, B, H)
        (a pair for the LSTM) or None for zeros (or the learned initial state). ``lengths``
        (B,) gives each sequence's true length (what PyTorch expresses with
        ``pack_padded_sequence``, in any order): outputs past a sequence's end are 0 and
        ``h_n`` holds each sequence's state at its own end. The output keeps all T steps."""
        if isinstance(input, PackedSequence):  # PyTorch's packed input: the same lengths path
            return forward_packed(self, input, hx)
        dtype = self.weight_ih_l0.dtype
        if input.dtype != dtype:
            raise TypeError(f"{type(self).__name__}: input must have the type {dtype}, got type {input.dtype} "
                            f"(convert one: input.to({dtype}) or model.to(dtype={input.dtype}))")
        return self._forward(input, hx, lengths, fused=self.fused)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.init_state == "learned":
            s += ", init_state='learned'"
        return s


def _no_projection(proj_size: int) -> None:
    if proj_size != 0:  # PyTorch's message: only the LSTM projects its hidden state
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")


class RNN(RNNBase):
    """Elman RNN over a sequence, as ``torch.nn.RNN`` (tanh or relu)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None, *, proj_size: int = 0, init_state: str | None = None,
                 track_grad_norms: bool = False, fused: bool = True):
        _no_projection(proj_size)
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype, init_state=init_state, track_grad_norms=track_grad_norms, fused=fused)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """LSTM over a sequence, as ``torch.nn.LSTM`` (with ``proj_size``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None, *, init_state: str | None = None,
                 track_grad_norms: bool = False, fused: bool = True):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype, init_state=init_state, track_grad_norms=track_grad_norms,
                         fused=fused)


class GRU(RNNBase):
    """GRU over a sequence, as ``torch.nn.GRU``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None, *, proj_size: int = 0, init_state: str | None = None,
                 track_grad_norms: bool = False, fused: bool = True):
        _no_projection(proj_size)
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype, init_state=init_state, track_grad_norms=track_grad_norms, fused=fused)


def rnn_relu_cell(input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                  dtype: Any = None) -> RNNCell:
    """The ``rnn_relu`` built-in cell: ``RNNCell(nonlinearity="relu")``. An entry point
    names one object, so the relu variant needs this small factory to be a component."""
    return RNNCell(input_size, hidden_size, bias=bias, nonlinearity="relu", device=device, dtype=dtype)


# Each built-in cell names its fused whole-sequence layer: what a spec's `cell: lstm`
# builds (same numbers as running the cell step by step, much faster). A cell without
# one (a plugin's) runs through the generic Recurrent.
RNNCell.sequence_layer = RNN
LSTMCell.sequence_layer = LSTM
GRUCell.sequence_layer = GRU
rnn_relu_cell.sequence_layer = functools.partial(RNN, nonlinearity="relu")  # type: ignore[attr-defined]
