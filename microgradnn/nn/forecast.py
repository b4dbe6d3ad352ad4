"""``Forecaster``: a recurrent network that reads a window of a series and predicts the next steps.

    x (B, context, F) -> recurrent layers -> final hidden state -> Linear -> (B, horizon * C)

with one twist that matters for real series: the output is a *change* from the last value
seen (``residual=True``, the default): ``y_hat[h, c] = x[-1, c] + head(...)[h, c]``. A
rising series (CO2) leaves the range of its training values; a network asked for the
level would have to extrapolate its tanh units, one asked for the change need not. The
targets are the data's first C columns (see :mod:`microgradnn.data.forecast`).
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor, cat
from .layers import Dropout, Linear
from .module import Module

__all__ = ["Forecaster"]


class Forecaster(Module):
    """Args: ``rnn`` a batch-first sequence layer reading F features; ``horizon`` steps
    ahead for ``targets`` columns (the first ones of the input); ``residual`` predict the
    change from the last input value."""

    def __init__(self, rnn: Module, horizon: int, targets: int = 1, residual: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = rnn
        self.horizon, self.targets, self.residual = int(horizon), int(targets), bool(residual)
        directions = 2 if getattr(rnn, "bidirectional", False) else 1
        self.drop = Dropout(dropout)
        self.head = Linear(rnn.hidden_size * directions, self.horizon * self.targets)

    def forward(self, x: Tensor, state: Any = None, lengths: Any = None) -> tuple[Tensor, Any]:
        _, h_n = self.rnn(x, state) if lengths is None else self.rnn(x, state, lengths=lengths)
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        last = cat([h[-2], h[-1]], 1) if getattr(self.rnn, "bidirectional", False) else h[-1]
        out = self.head(self.drop(last))
        if self.residual:
            level = x[:, -1, : self.targets]  # (B, C), repeated for each of the horizon steps
            out = out + cat([level] * self.horizon, 1)
        return out, h_n
