"""Chapter 5 reference solution."""

import numpy as np


def bptt(xs, W_ih, W_hh, b):
    T, B, _ = xs.shape
    hs = [np.zeros((B, W_hh.shape[0]))]
    for t in range(T):
        hs.append(np.tanh(xs[t] @ W_ih.T + hs[-1] @ W_hh.T + b))
    dW_hh = np.zeros_like(W_hh)
    dh = np.ones((B, W_hh.shape[0]))  # d(h_T.sum())/dh_T; earlier steps only get what flows back
    for t in reversed(range(T)):
        dpre = dh * (1 - hs[t + 1] ** 2)
        dW_hh += dpre.T @ hs[t]
        dh = dpre @ W_hh
    return dW_hh
