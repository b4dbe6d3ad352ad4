"""Chapter 8 reference solution."""

import math

import microgradnn as mg
from microgradnn import nn


class LeakyCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(mg.empty(hidden_size, input_size, dtype=dtype))
        self.weight_hh = nn.Parameter(mg.empty(hidden_size, hidden_size, dtype=dtype))
        self.bias_ih = nn.Parameter(mg.empty(hidden_size, dtype=dtype)) if bias else None
        self.leak = nn.Parameter(mg.zeros(hidden_size, dtype=dtype))
        bound = 1 / math.sqrt(hidden_size)
        with mg.no_grad():
            for name, p in self.named_parameters():
                if name != "leak":
                    p.uniform_(-bound, bound)

    def step(self, x, h):
        a = self.leak.sigmoid()
        candidate = (mg.linear(x, self.weight_ih, self.bias_ih) + h @ self.weight_hh.T).tanh()
        h_new = a * h + (1 - a) * candidate
        return h_new, h_new
