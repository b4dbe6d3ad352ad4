"""Chapter 11 reference solution: dot-product attention with a padding mask."""

import numpy as np


def attend(query, keys, mask):
    """query (B, K), keys (B, S, K), mask (B, S) bool (True = real position)
    -> (context (B, K), weights (B, S)); padded positions get weight exactly 0."""
    scores = np.einsum("bk,bsk->bs", query, keys)
    scores = np.where(mask, scores, -np.inf)                    # exp(-inf) = 0: no weight on padding
    scores = scores - scores.max(axis=1, keepdims=True)         # the largest becomes 0: exp can't overflow
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)
    context = np.einsum("bs,bsk->bk", weights, keys)
    return context, weights
