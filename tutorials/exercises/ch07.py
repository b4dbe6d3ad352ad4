"""Chapter 7 exercise: one GRU step in numpy, PyTorch's gate layout (r, z, n)."""

import numpy as np


def gru_step(x, h, W_ih, W_hh, b_ih, b_hh):
    """x: (B, I), h: (B, H), W_ih: (3H, I), W_hh: (3H, H), b_ih, b_hh: (3H,). Return h'."""
    raise NotImplementedError("write the GRU equations; run: python tutorials/check.py 7")
