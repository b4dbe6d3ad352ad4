"""IndRNN: an independently recurrent cell, as a microgradnn plugin.

    h_t = act(W x_t + b + u ⊙ h_{t-1})          act = relu (default) or tanh

``W`` (``weight_ih``, (H, I)) mixes the inputs as in any RNN, but the recurrence is
element-wise: ``u`` (``weight_hh``, shape (H,)) gives each hidden unit one weight on its
own previous value, and units talk to each other only through the next layer.

Why that helps with long sequences: the gradient carried back one step through unit j is
multiplied by ``u_j * act'(.)`` (a scalar, not a matrix), so after k steps it has been
scaled by a product of k such numbers. Keeping ``|u_j|`` near 1 (``recurrent_max_abs``
clips it) keeps that product from vanishing or exploding, unit by unit; with ReLU the
activation's derivative is exactly 1 wherever the unit is active.
"""

from __future__ import annotations

import math
from typing import Any

import microgradnn as mg
from microgradnn import nn

__all__ = ["IndRNNCell"]
__version__ = "0.1.0"


class IndRNNCell(nn.Module):
    """One IndRNN step, following microgradnn's cell contract (see ``mg.nn.Recurrent``).

    Args:
        input_size: features of ``x_t``.
        hidden_size: hidden units H.
        bias: learn ``b`` (``bias_ih``).
        nonlinearity: "relu" (the paper's choice) or "tanh".
        recurrent_max_abs: clip each ``u_j`` to [-m, m] in the forward pass (None: no clip).
            The paper uses ``m = 2 ** (1 / T)`` for sequences of T steps with ReLU, which
            bounds the growth over T steps by 2.

    ``step(x_t, state) -> (h_t, h_t)`` (the state is h itself); ``forward`` is the same, with
    ``state=None`` meaning zeros, so ``cell(x_t, h)`` works as well.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "relu",
                 recurrent_max_abs: float | None = None, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"IndRNNCell: input_size must be a positive int, got {input_size!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"IndRNNCell: hidden_size must be a positive int, got {hidden_size!r}")
        if nonlinearity not in ("relu", "tanh"):
            raise ValueError(f"IndRNNCell: nonlinearity must be 'relu' or 'tanh', got {nonlinearity!r}")
        if recurrent_max_abs is not None and not recurrent_max_abs > 0:
            raise ValueError(f"IndRNNCell: recurrent_max_abs must be > 0 or None, got {recurrent_max_abs!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias = bias
        self.nonlinearity = nonlinearity
        self.recurrent_max_abs = recurrent_max_abs
        device = device if device is not None else "cpu"
        self.weight_ih = nn.Parameter(mg.empty(hidden_size, input_size, dtype=dtype, device=device))
        self.weight_hh = nn.Parameter(mg.empty(hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = nn.Parameter(mg.empty(hidden_size, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``W`` and ``b`` as PyTorch's RNNCell, U(-1/sqrt(H), 1/sqrt(H)); ``u`` in U(0, 1):
        positive and below one, so no unit flips sign or blows up at the start."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with mg.no_grad():
            self.weight_ih.uniform_(-bound, bound)
            if self.bias_ih is not None:
                self.bias_ih.uniform_(-bound, bound)
            high = 1.0 if self.recurrent_max_abs is None else min(1.0, self.recurrent_max_abs)
            self.weight_hh.uniform_(0.0, high)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init_state(self, batch: int, device: Any = None, dtype: Any = None) -> mg.Tensor:
        """The zero state (B, H)."""
        device = device if device is not None else self.weight_ih._backend
        dtype = dtype if dtype is not None else self.weight_ih.dtype
        return mg.zeros(batch, self.hidden_size, dtype=dtype, device=device)

    def step(self, x: mg.Tensor, state: mg.Tensor) -> tuple[mg.Tensor, mg.Tensor]:
        u = self.weight_hh
        if self.recurrent_max_abs is not None:
            u = u.clamp(-self.recurrent_max_abs, self.recurrent_max_abs)
        pre = mg.linear(x, self.weight_ih, self.bias_ih) + u * state  # (B, H) + (H,) * (B, H)
        h = pre.relu() if self.nonlinearity == "relu" else pre.tanh()
        return h, h

    def forward(self, x: mg.Tensor, state: mg.Tensor | None = None) -> tuple[mg.Tensor, mg.Tensor]:
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"IndRNNCell: expected x_t of shape (batch, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.shape[0], x._backend, x.dtype)
        return self.step(x, state)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.nonlinearity != "relu":
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.recurrent_max_abs is not None:
            s += f", recurrent_max_abs={self.recurrent_max_abs}"
        return s
