"""Chapter 8 exercise: a cell that follows microgradnn's cell contract."""

import microgradnn as mg
from microgradnn import nn


class LeakyCell(nn.Module):
    """h' = a * h + (1 - a) * tanh(W x + U h + b), a = sigmoid(leak) learned per unit.

    Parameters: weight_ih (H, I), weight_hh (H, H), bias_ih (H,) when bias, leak (H,).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=None):
        super().__init__()
        raise NotImplementedError("create the parameters; run: python tutorials/check.py 8")

    def step(self, x, h):
        raise NotImplementedError("one time step: return (h_new, h_new)")
