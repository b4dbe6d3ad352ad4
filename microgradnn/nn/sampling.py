"""Sampling from a trained recurrent model: one step at a time, batch 1, no graph.

Generating text feeds the model one token, reads the logits, picks the next token and
feeds that back, hundreds of times. Calling the sequence layer for each token pays for
what training needs and sampling does not: an autograd node, input checks, a (T, B, H)
output buffer, gate activations kept for backward. :class:`RecurrentSampler` keeps the
recurrent state between calls and does only the arithmetic of one step: per layer two
matrix-vector products in PyTorch's weight layout (``W_ih x`` and ``W_hh h``) and the
fused cell kernel, then the head. On the CPU each layer's step is one compiled call
(backend/kernels_cpu.py ``*_sample_step``); elsewhere the same kernels run from here.

The weights are read when the sampler is built (or :meth:`refresh` is called): that is
where the combined bias ``b_ih + b_hh`` is formed and a parametrized weight (a LoRA
layer, say) is computed, once, not per token. Build a new sampler, or call ``refresh()``,
after the weights change.

    sampler = RecurrentSampler.from_model(model)     # embedding -> rnn -> head
    logits = sampler.prime(prompt_ids)               # reads the prompt as one sequence
    for _ in range(100):
        token = pick(logits)                          # greedy, temperature, top-k: yours
        logits = sampler.step(token)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor, cat
from ..tensor import tensor as make_tensor
from .rnn import RNNBase

__all__ = ["RecurrentSampler"]


class RecurrentSampler:
    """Run ``rnn`` (an :class:`~microgradnn.nn.RNN`, ``LSTM`` or ``GRU``, one direction)
    one time step at a time for a single sequence, carrying its state between calls.

    ``embedding`` (an Embedding, or None for float inputs) turns a token id into the first
    layer's input; ``head`` (a Linear, or None) turns the top layer's hidden state into
    the output. :meth:`step` returns the head's output (or the top hidden state) as a
    numpy array. Dropout is not applied (sampling is evaluation). The state is exactly
    what the layer itself would carry: ``sampler.state`` can be passed to ``rnn(x, state)``
    and a state from ``rnn`` can be given to :meth:`reset`.
    """

    def __init__(self, rnn: RNNBase, embedding: Any = None, head: Any = None):
        if not isinstance(rnn, RNNBase):
            raise TypeError(f"RecurrentSampler needs an RNN, LSTM or GRU layer, got {type(rnn).__name__} "
                            "(a plugin cell's Recurrent layer samples through its own forward)")
        if rnn.bidirectional:
            raise ValueError("RecurrentSampler: a bidirectional layer needs the whole sequence; it can't step")
        self.rnn, self.embedding, self.head = rnn, embedding, head
        self.prompt = None
        self.refresh()
        self.reset()

    @classmethod
    def from_model(cls, model: Any) -> "RecurrentSampler":
        """A sampler for a model with ``embedding``, ``rnn`` and ``head`` submodules
        (:class:`~microgradnn.models.SequenceModel` and the usual PyTorch char-LM)."""
        sampler = cls(model.rnn, getattr(model, "embedding", None), getattr(model, "head", None))
        sampler.prompt = getattr(model, "prompt", None)  # prompt tuning: read once, before the text
        return sampler

    # ------------------------------------------------------------------ weights

    def refresh(self) -> None:
        """Read the weights again (after an optimizer step, ``load_state_dict``, a merge)."""
        rnn = self.rnn
        first = rnn.weight_ih_l0
        self.backend, self.xp, self.dtype = first._backend, first._backend.xp, first.array.dtype
        xp = self.xp
        kind = {"LSTM": "lstm", "GRU": "gru"}.get(rnn.mode, "rnn")
        self.kind, self.relu = kind, rnn.mode == "RNN_RELU"
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind] * rnn.hidden_size
        self.layers = []
        with no_grad():
            for k in range(rnn.num_layers):
                w_ih, w_hh, b_ih, b_hh, w_hr = (None if w is None else xp.ascontiguousarray(w.array)
                                                for w in rnn._weights(k))
                zero = xp.zeros(gates, dtype=self.dtype)
                b_ih = zero if b_ih is None else b_ih
                b_hh = zero if b_hh is None else b_hh
                if kind == "gru":  # r, z see b_ih + b_hh; n sees b_in outside r * (W_hn h + b_hn)
                    H = rnn.hidden_size
                    bias = b_ih.copy()
                    bias[: 2 * H] += b_hh[: 2 * H]
                    extra = xp.ascontiguousarray(b_hh[2 * H:])
                else:
                    bias, extra = b_ih + b_hh, None
                self.layers.append((w_ih, w_hh, bias, extra, w_hr))
            self.emb = None if self.embedding is None else xp.ascontiguousarray(self.embedding.weight.array)
            if self.head is not None:
                w = xp.ascontiguousarray(self.head.weight.array)
                b = self.head.bias
                self.head_w = w
                self.head_b = xp.zeros(w.shape[0], dtype=self.dtype) if b is None else xp.ascontiguousarray(b.array)
        self._compiled = self.backend.name == "cpu" and np.dtype(self.dtype) in (np.float32, np.float64)
        self._drive = self.backend.sequence_driver(f"{kind}_sample_step") if self._compiled else None
        self._affine = self.backend.sequence_driver("affine_row") if self._compiled else None
        self._cell = self.backend.kernel(f"{kind}_cell_forward")
        H = rnn.hidden_size
        self._gates = xp.empty((1, gates), dtype=self.dtype)
        self._hh = xp.empty((1, gates), dtype=self.dtype)
        self._active = xp.ones(1, dtype=np.uint8)
        self._m = xp.empty((1, H), dtype=self.dtype)
        self._zero_proj = xp.zeros(rnn.proj_size, dtype=self.dtype) if rnn.proj_size else None
        self._out = xp.empty((1, self.head_w.shape[0]), dtype=self.dtype) if self.head is not None else None

    # ------------------------------------------------------------------ state

    def reset(self, state: Any = None) -> None:
        """Start a new sequence: from ``state`` (what the layer returns as ``h_n``, or
        ``(h_n, c_n)``, batch 1) or from the layer's own initial state."""
        rnn, xp, L = self.rnn, self.xp, self.rnn.num_layers
        sizes = rnn._state_sizes()
        if state is None:
            if rnn.init_state == "learned":
                names = ("h0", "c0")
                parts = [getattr(rnn, names[i]).array.reshape(L, 1, n) for i, n in enumerate(sizes)]
            else:
                parts = [xp.zeros((L, 1, n), dtype=self.dtype) for n in sizes]
        else:
            parts = [p.array if isinstance(p, Tensor) else xp.asarray(p)
                     for p in (state if isinstance(state, (tuple, list)) else (state,))]
            for i, (p, n) in enumerate(zip(parts, sizes)):
                if tuple(p.shape) != (L, 1, n):
                    raise ValueError(f"RecurrentSampler.reset: state part {i} must have shape {(L, 1, n)}, "
                                     f"got {tuple(p.shape)}")
        # two buffers per state, swapped after each step (the kernels write the new state
        # while reading the old one)
        self._h = [xp.array(parts[0][k], dtype=self.dtype) for k in range(L)]
        self._h_next = [xp.empty_like(h) for h in self._h]
        if self.kind == "lstm":
            self._c = [xp.array(parts[1][k], dtype=self.dtype) for k in range(L)]
            self._c_next = [xp.empty_like(c) for c in self._c]

    @property
    def state(self) -> Any:
        """The current state as the layer returns it: ``h_n`` (L, 1, H), or ``(h_n, c_n)``."""
        xp = self.xp
        h = make_tensor(xp.stack(self._h), device=self.backend)
        if self.kind == "lstm":
            return h, make_tensor(xp.stack(self._c), device=self.backend)
        return h

    # ------------------------------------------------------------------ stepping

    def prime(self, inputs: Sequence[int] | np.ndarray) -> np.ndarray:
        """Read a whole prompt (token ids, or (T, I) features) through the layer's fused
        sequence path, from the current state; return the output after its last step."""
        xp = self.xp
        with no_grad():
            if self.embedding is not None:
                ids = make_tensor(np.asarray(inputs, dtype=np.int64).reshape(1, -1), device=self.backend)
                x = self.embedding(ids)
                if self.prompt is not None:
                    x = cat([self.prompt.unsqueeze(0), x], dim=1)
            else:
                x = make_tensor(xp.asarray(inputs, dtype=self.dtype)[None], device=self.backend)
            if not self.rnn.batch_first:
                x = x.transpose(0, 1)
            _, state = self.rnn(x, self.state)
        self.reset(state)
        return self._output(self._h[-1])

    def step(self, token: Any) -> np.ndarray:
        """Advance one time step with ``token`` (an int id with an embedding, else an (I,)
        feature vector); return the head's output (or the top hidden state), shape (n,)."""
        if self.emb is not None:
            x = self.emb[int(token)][None]
        else:
            x = self.xp.asarray(token, dtype=self.dtype).reshape(1, -1)
        for k, layer in enumerate(self.layers):
            x = self._layer_step(k, layer, x)
        return self._output(x)

    def _layer_step(self, k: int, layer: tuple, x: Any) -> Any:
        w_ih, w_hh, bias, extra, w_hr = layer
        h, h_new = self._h[k], self._h_next[k]
        lstm = self.kind == "lstm"
        target = self._m if w_hr is not None else h_new  # with a projection the cell writes o * tanh(c)
        if self._drive is not None:
            if lstm:
                self._drive(w_ih, w_hh, bias, x, h, self._c[k], self._gates, self._hh, target, self._c_next[k],
                            self._active)
            elif self.kind == "gru":
                self._drive(w_ih, w_hh, bias, extra, x, h, self._gates, self._hh, target, self._active)
            else:
                self._drive(w_ih, w_hh, bias, x, h, self._gates, self._hh, target, self._active, self.relu)
        else:
            xp = self.xp
            xp.matmul(x, w_ih.T, out=self._gates)
            xp.matmul(h, w_hh.T, out=self._hh)
            if lstm:
                self._cell(self._gates, self._hh, bias, self._c[k], h, self._active, target, self._c_next[k])
            elif self.kind == "gru":
                self._cell(self._gates, self._hh, bias, extra, h, self._active, target)
            else:
                self._cell(self._gates, self._hh, bias, h, self._active, target, self.relu)
        if w_hr is not None:
            self._affine_into(w_hr, self._m, self._zero_proj, h_new)
        self._h[k], self._h_next[k] = h_new, h
        if lstm:
            self._c[k], self._c_next[k] = self._c_next[k], self._c[k]
        return h_new

    def _affine_into(self, w: Any, x: Any, b: Any, out: Any) -> None:
        if self._affine is not None:
            self._affine(w, x[0], b, out[0])
        else:
            self.xp.matmul(x, w.T, out=out)
            out += b

    def _output(self, h: Any) -> np.ndarray:
        if self.head is None:
            out = h[0].copy()
        else:
            self._affine_into(self.head_w, h, self.head_b, self._out)
            out = self._out[0].copy()
        return out if isinstance(out, np.ndarray) else out.get()
