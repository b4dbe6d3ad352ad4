"""Loss modules: ``criterion = nn.CrossEntropyLoss(); loss = criterion(logits, target)``.

Each is a thin Module around the function of the same name in
:mod:`microgradnn.nn.functional`, with PyTorch's constructor arguments and defaults.
Class weights (``weight``, ``pos_weight``) are buffers, as in PyTorch: they appear in
``state_dict`` and move with ``.to(device)``. They may be given as a Tensor or, as a
YAML spec writes them, a plain list of numbers.

``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss per element /
sample); anything else is an error naming the allowed values. PyTorch's deprecated
``size_average``/``reduce`` are not accepted, and the options are keyword-only (so
``CrossEntropyLoss(w, -1)``, which means something else in PyTorch, is an error).
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor, tensor
from . import functional as F
from .module import Module

__all__ = [
    "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
]

def _weight_tensor(name: str, value: Any) -> Tensor | None:
    if value is None or isinstance(value, Tensor):
        return value
    try:
        out = tensor(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a tensor or a list of numbers, got {value!r}") from exc
    if out.ndim == 0:
        raise ValueError(f"{name}: expected a 1-D list of numbers (one per class), got the scalar {value!r}")
    return out


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = F.check_reduction(reduction, type(self).__name__)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class _WeightedLoss(_Loss):
    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", _weight_tensor(f"{type(self).__name__}: weight", weight))


class MSELoss(_Loss):
    """Mean squared error; the usual regression loss."""

    targets = "values"  # what it fits (microgradnn.tasks): float targets shaped like the output

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error: less swayed by outliers than MSE."""

    targets = "values"  # what it fits (microgradnn.tasks): float targets shaped like the output

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    targets = "values"  # what it fits (microgradnn.tasks): float targets shaped like the output

    def __init__(self, *, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be non-negative, got {beta}")
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    targets = "values"  # what it fits (microgradnn.tasks): float targets shaped like the output

    def __init__(self, *, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if delta <= 0:
            raise ValueError(f"HuberLoss: delta must be positive, got {delta}")
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities; prefer :class:`BCEWithLogitsLoss` (stabler)."""

    targets = "values"  # what it fits (microgradnn.tasks): float targets shaped like the output

    def __init__(self, weight: Any = None, *, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Sigmoid + binary cross-entropy on logits, in one overflow-free expression.

    ``pos_weight`` (one per class, broadcast over the last dim) multiplies the positive
    term: ``pos_weight = negatives / positives`` balances a rare positive class."""

    targets = "values"  # what it fits (microgradnn.tasks): float targets shaped like the output

    def __init__(self, weight: Any = None, *, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(weight, reduction)
        self.register_buffer("pos_weight", _weight_tensor("BCEWithLogitsLoss: pos_weight", pos_weight))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax + negative log-likelihood on raw logits, fused (``F.cross_entropy``).

    ``input`` (N, C), (C,) or (N, C, d1, ...); ``target`` class indices, or class
    probabilities of the input's shape. ``ignore_index`` targets (padding) contribute
    nothing, not even to the mean's denominator; ``label_smoothing`` in [0, 1]."""

    targets = "classes"  # what it fits (microgradnn.tasks): class ids

    def __init__(self, weight: Any = None, *, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (after ``LogSoftmax``)."""

    targets = "classes"  # what it fits (microgradnn.tasks): class ids

    def __init__(self, weight: Any = None, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)
