"""``cer``: character error rate (a microgradnn metric plugin).

CER = (substitutions + deletions + insertions) / reference length, summed over a corpus:
the Levenshtein edit distance between what the model wrote and what it should have
written, per reference character. 0 is perfect; it can exceed 1 when the prediction is
much longer than the reference. Lower is better.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["CER", "cer", "edit_distance"]


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance: the fewest single-item insertions, deletions and
    substitutions turning ``a`` into ``b`` (dynamic programming, one row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))  # distance from a[:0] to each prefix of b
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1,               # delete x
                               current[j - 1] + 1,            # insert y
                               previous[j - 1] + (x != y)))   # substitute (free if equal)
        previous = current
    return previous[-1]


def cer(predictions: Sequence[Sequence[Any]], references: Sequence[Sequence[Any]]) -> float:
    """Corpus character error rate of predicted strings (or token lists) against references."""
    if len(predictions) != len(references):
        raise ValueError(f"cer: {len(predictions)} predictions but {len(references)} references")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("cer: the references are empty")
    return sum(edit_distance(p, r) for p, r in zip(predictions, references)) / total


def _host(a: Any) -> np.ndarray:
    """numpy from numpy, or from a microgradnn Tensor (through its public ``numpy()``)."""
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


class CER:  # a plain class: the metric contract needs no base class
    """Character error rate of a per-step model's argmax predictions against its targets.

    For each row of a (B, T, V) output, the predicted string is the argmax tokens at the
    scored positions (target >= 0) and the reference is the targets there."""

    name = "cer"
    higher_is_better = False
    targets = "classes"  # what it fits (microgradnn.tasks): token ids ...
    per_step = True  # ... one per time step

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.errors = 0
        self.chars = 0

    def update(self, output: Any, target: Any, loss_sum: float = 0.0, count: int = 0) -> None:
        out, tgt = _host(output), _host(target)
        if out.ndim != 3 or out.shape[:2] != tgt.shape:
            raise ValueError(f"cer: needs per-step outputs (B, T, V) and targets (B, T), got {out.shape} and {tgt.shape}")
        pred = out.argmax(axis=-1)
        for p, t in zip(pred, tgt):
            keep = t >= 0
            self.errors += edit_distance(p[keep].tolist(), t[keep].tolist())
            self.chars += int(keep.sum())

    def compute(self) -> float:
        return self.errors / self.chars if self.chars else float("nan")
