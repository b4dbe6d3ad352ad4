"""Divergence is a result, not a success: a run whose validation loss ends far above where a
model that learned nothing would be (the task's trivial baseline), or far above where it
started while no better than that baseline, ends with status ``diverged``.

The trivial baseline is the loss of the predictor a fresh network is close to:

* language models and classification with cross-entropy: the uniform distribution over
  the K classes, ``log K`` nats;
* regression with MSE: predicting 0 (an untrained head's output), ``mean(y²)``.

"Far" is a factor of 10: a fresh model sits near 1× the baseline; an ``optimizer.lr=1e6``
run ends at 10¹⁴×. Both numbers are pure functions of the data and the log, so a test can
state them exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["FACTOR", "trivial_baseline", "divergence_reason"]

FACTOR = 10.0


def trivial_baseline(task: str, loss: str | None, output_size: int, val_targets: Any = None) -> float | None:
    """The loss of the trivial predictor for this task and loss (see the module docstring);
    None where there is no obvious one (other losses)."""
    loss = loss or ("mse" if task == "regression" else "cross_entropy")
    if task in ("lm", "classification") and loss == "cross_entropy" and output_size >= 2:
        return math.log(output_size)
    if task == "regression" and loss == "mse" and val_targets is not None:
        y = np.asarray(val_targets, dtype=np.float64)
        if y.size:
            return float(np.mean(y * y))
    return None


def divergence_reason(first: float | None, final: float | None, baseline: float | None,
                      hint: str = "try a lower optimizer.lr, or train.clip_grad_norm") -> str | None:
    """Why a run with validation losses ``first`` (its first evaluation) … ``final`` (its
    last) diverged, in one line; None when it did not."""
    if final is None:
        return None
    if not math.isfinite(final):
        return f"val_loss ended at {final}; {hint}"
    if baseline is not None and final > FACTOR * baseline:
        return (f"val_loss ended at {final:.4g}, more than {FACTOR:g}× the {baseline:.4g} of a model that learned "
                f"nothing; {hint}")
    if first is not None and math.isfinite(first) and first > 0 and final > FACTOR * first and \
            (baseline is None or final > baseline):
        return (f"val_loss ended at {final:.4g}, more than {FACTOR:g}× its first value {first:.4g}: the run diverged; "
                f"{hint}")
    return None
