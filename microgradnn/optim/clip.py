"""Gradient clipping, in place on ``.grad``: ``clip_grad_norm_`` and ``clip_grad_value_``.

Also available as ``mg.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (PyTorch's home
for them).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: "Tensor | Iterable[Tensor]") -> list[tuple[Tensor, Any]]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    out = []
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"expected Tensors (parameters), got {type(p).__name__}")
        if p._grad is not None:
            out.append((p, p._grad))
    return out


def _vector_norm(xp: Any, a: Any, norm_type: float) -> Any:
    """‖a‖_p of a flattened array as a 0-d array of a's dtype (torch.linalg.vector_norm)."""
    a = abs(a.reshape(-1))
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    if norm_type == math.inf:
        return a.max()
    if norm_type == -math.inf:
        return a.min()
    if norm_type == 0:
        return (a != 0).sum().astype(a.dtype)
    if norm_type == 1:
        return a.sum()
    if norm_type == 2:
        return xp.sqrt((a * a).sum())
    return (a**norm_type).sum() ** (1.0 / norm_type)


def clip_grad_norm_(
    parameters: "Tensor | Iterable[Tensor]",
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Any = None,
) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    The norm is that of all gradients concatenated into one vector (``inf`` for the largest
    magnitude). Each gradient is multiplied in place by ``min(1, max_norm / (total_norm +
    1e-6))``, as in PyTorch. Returns the total norm (before clipping) as a 0-d Tensor.
    ``foreach`` is accepted for PyTorch compatibility and ignored."""
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    grads = _grads(parameters)
    if not grads:
        from ..tensor import tensor

        return tensor(0.0)
    backend = grads[0][0]._backend
    xp = backend.xp
    norms = [_vector_norm(xp, g, norm_type) for _, g in grads]
    dtype = xp.result_type(*[n.dtype for n in norms])
    stacked = xp.stack([xp.asarray(n, dtype=dtype) for n in norms])
    total = _vector_norm(xp, stacked, norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    clip_coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    # a non-finite norm (allowed without error_if_nonfinite) makes NaNs quietly, as in torch
    with np.errstate(invalid="ignore", over="ignore"):
        for p, g in grads:
            g *= clip_coef.astype(g.dtype)
    return Tensor(xp.asarray(total), backend)


def clip_grad_value_(parameters: "Tensor | Iterable[Tensor]", clip_value: float, foreach: Any = None) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``."""
    clip_value = float(clip_value)
    for p, g in _grads(parameters):
        p._backend.xp.clip(g, -clip_value, clip_value, out=g)
