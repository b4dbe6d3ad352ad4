"""The adding problem (Hochreiter & Schmidhuber 1997): can an LSTM carry two numbers
across 50 time steps?

Each sequence has two input channels: values drawn from U(0, 1) and a marker channel that
is 1 at exactly two steps (one in each half) and 0 elsewhere. The target is the sum of the
two marked values. Predicting the mean (1.0) scores an MSE of Var(U + U) = 2/12 ~ 0.167;
a model below 0.01 has learned to find, hold and add the marked values.
"""

from __future__ import annotations

import time

import numpy as np

import microgradnn as mg
from microgradnn import nn

T = 50
HIDDEN = 32


def adding_batch(rng: np.random.Generator, n: int) -> tuple:
    values = rng.random((n, T))
    marks = np.zeros((n, T))
    rows = np.arange(n)
    marks[rows, rng.integers(0, T // 2, n)] = 1.0
    marks[rows, rng.integers(T // 2, T, n)] = 1.0
    x = np.stack([values, marks], axis=-1).astype(np.float32)  # (n, T, 2), batch first
    y = (values * marks).sum(axis=1, keepdims=True).astype(np.float32)  # (n, 1)
    return x, y


class AddingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(2, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x):
        _, (h_n, _) = self.lstm(x)
        return self.head(h_n[-1])  # read out the final hidden state


def test_lstm_learns_the_adding_problem():
    mg.manual_seed(0)
    rng = np.random.default_rng(0)
    model = AddingModel()
    opt = mg.optim.Adam(model.parameters(), lr=1e-2)
    x_test, y_test = adding_batch(np.random.default_rng(123), 1000)
    x_test, y_test = mg.tensor(x_test), mg.tensor(y_test)

    def test_mse() -> float:
        with mg.no_grad():
            return float(((model(x_test) - y_test) ** 2).mean())

    baseline = float(((y_test - y_test.mean()) ** 2).mean())
    assert 0.14 < baseline < 0.19  # ~ 1/6: what predicting the mean scores

    start = time.perf_counter()
    mse = test_mse()
    for step in range(1, 2501):
        x, y = adding_batch(rng, 64)
        loss = ((model(mg.tensor(x)) - mg.tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            mse = test_mse()
            if mse < 0.01:
                break
    elapsed = time.perf_counter() - start
    assert mse < 0.01, f"test MSE {mse:.4f} after {step} steps ({elapsed:.0f} s); the mean predictor scores {baseline:.3f}"
