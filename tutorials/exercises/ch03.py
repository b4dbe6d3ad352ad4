"""Chapter 3 exercise: the backward of broadcasting."""

import numpy as np


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum grad down to `shape` (the shape of the input before broadcasting)."""
    raise NotImplementedError("sum over the broadcast axes, then run: python tutorials/check.py 3")
