"""Chapter 6 reference solution."""

import numpy as np


def clip_by_total_norm(grads, max_norm):
    total = float(np.sqrt(sum(float((g ** 2).sum()) for g in grads)))
    factor = max_norm / (total + 1e-6)
    if factor < 1:
        for g in grads:
            g *= factor
    return total
