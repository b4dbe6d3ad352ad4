"""Chapter 11 exercise: dot-product attention with a padding mask, in numpy."""

import numpy as np


def attend(query, keys, mask):
    """query (B, K), keys (B, S, K), mask (B, S) bool (True = real position)
    -> (context (B, K), weights (B, S)); padded positions get weight exactly 0."""
    raise NotImplementedError("score with q . k, mask, softmax, mix the keys; run: python tutorials/check.py 11")
