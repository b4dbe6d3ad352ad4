"""``microgradnn.nn.functional`` (``import microgradnn.nn.functional as F``): stateless layers.

The functions here mirror ``torch.nn.functional``: same names, same argument names and
defaults, same numbers. Each is built from the tensor ops (so autograd already knows its
gradient) or calls a fused primitive (``embedding``, ``cross_entropy``); none writes a
backward of its own.

One deliberate difference: PyTorch's long-deprecated ``size_average``/``reduce`` arguments
are not accepted, and the options after ``target`` (and ``weight``) are keyword-only, so a
positional call that would mean something else in PyTorch is an error here rather than a
silent surprise.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Sequence

import numpy as np

from ..autograd import Variable, is_grad_enabled, no_grad
from ..ops import nn as _nn_ops
from ..tensor import Tensor, _scalar_type_name, cat, rand, rand_rows, where
from ..tensor import cross_entropy as _fused_cross_entropy
from ..tensor import linear as _linear

__all__ = [
    "linear", "embedding", "dropout", "one_hot", "pad",
    "relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "silu", "softplus", "logsigmoid", "hardtanh",
    "softmax", "log_softmax", "layer_norm", "rms_norm", "normalize", "cosine_similarity",
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "REDUCTIONS", "check_reduction",
]

REDUCTIONS = ("mean", "sum", "none")


# ============================================================================ helpers


def check_reduction(reduction: str, where_: str = "loss") -> str:
    """Return ``reduction`` if it is one of ``mean``, ``sum``, ``none``; otherwise a clear error."""
    if reduction not in REDUCTIONS:
        close = difflib.get_close_matches(str(reduction), REDUCTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where_}: reduction={reduction!r} is not allowed; use one of 'mean', 'sum', 'none'{hint}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _const(like: Tensor, array: Any, dtype: Any = None) -> Tensor:
    """A constant tensor (no gradient) on ``like``'s device."""
    xp = like._backend.xp
    return Tensor(xp.asarray(array, dtype=dtype if dtype is not None else like.dtype), like._backend)


def _as_tensor(value: Any, like: Tensor) -> Tensor | None:
    """Accept a Tensor, an array or a list (a spec's ``weight: [1, 2, 3]``) as a constant."""
    if value is None:
        return None
    if isinstance(value, Variable):
        return value if value.dtype == like.dtype else value.to(like.dtype)
    return _const(like, np.asarray(value), dtype=like.dtype)


def _check_same_size(name: str, input: Tensor, target: Tensor) -> None:
    # The classic regression bug: (B, 1) predictions against (B,) targets broadcast to
    # (B, B) and the loss quietly averages the wrong thing. PyTorch warns; so do we.
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(
            f"{name}: using a target size {tuple(target.shape)} that is different to the input size "
            f"{tuple(input.shape)}. This will likely lead to incorrect results due to broadcasting. "
            f"Please ensure they have the same size.",
            UserWarning,
            stacklevel=3,
        )


# ============================================================================ layers


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` with ``weight`` (out_features, in_features)."""
    return _linear(input, weight, bias)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` for the integer ``input`` (any shape -> ``input.shape + (D,)``).

    The gradient is a fused scatter-add (the ``embedding_backward`` kernel); the
    ``padding_idx`` row gets none. ``max_norm`` renormalises, *in place* as in PyTorch,
    each looked-up row whose ``norm_type``-norm exceeds it."""
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported (microgradnn gradients are dense)")
    if max_norm is not None:
        _embedding_renorm_(weight, input, max_norm, norm_type)
    return _nn_ops.embedding(input, weight, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)


@no_grad()
def _embedding_renorm_(weight: Tensor, input: Any, max_norm: float, norm_type: float) -> None:
    xp = weight._backend.xp
    rows = xp.unique(xp.asarray(getattr(input, "array", input)).reshape(-1))
    if rows.size == 0:
        return
    w = weight.array
    norms = (xp.abs(w[rows]) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    big = norms > max_norm
    scale = max_norm / (norms[big] + 1e-7)  # PyTorch's epsilon
    w[rows[big]] *= scale[:, None].astype(w.dtype)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale survivors by 1/(1-p).

    Scaling at training time keeps the expected activation unchanged, so evaluation
    (``training=False``) is the identity. ``inplace`` is accepted for PyTorch compatibility
    and ignored (autograd needs the input)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    if input.ndim >= 2:  # axis 0 runs over the examples (batch first): see tensor.rand_rows
        keep = rand_rows(input.shape, 0, dtype=input.dtype, device=input._backend) >= p
    else:
        keep = rand(*input.shape, dtype=input.dtype, device=input._backend) >= p
    return input * (keep.to(input.dtype) * (1.0 / (1.0 - p)))


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot codes: ``(*shape) -> (*shape, num_classes)``; -1 infers ``max + 1``."""
    data = tensor.array if isinstance(tensor, Variable) else np.asarray(tensor)
    if data.dtype.kind not in "iu":
        raise TypeError(f"one_hot: only integer tensors (class indices) are allowed, got dtype {data.dtype}")
    backend = tensor._backend if isinstance(tensor, Variable) else None
    xp = backend.xp if backend is not None else np
    if num_classes == -1:
        num_classes = int(data.max()) + 1 if data.size else 0
    if data.size and (int(data.min()) < 0 or int(data.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in 0..{num_classes - 1}, got {int(data.min())}..{int(data.max())}")
    out = (data[..., None] == xp.arange(num_classes)).astype(np.int64)
    if backend is None:
        from ..tensor import tensor as _tensor

        return _tensor(out)
    return Tensor(out, backend)


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or, with negative amounts, crop) the last ``len(pad) // 2`` dimensions.

    ``pad`` lists (left, right) pairs starting from the *last* dimension, as in PyTorch:
    ``pad(x, (1, 2))`` adds 1 column before and 2 after; ``pad(x, (0, 0, 3, 0))`` adds 3
    rows on top. ``mode``: "constant" (fill with ``value``, default 0), "reflect",
    "replicate" or "circular"."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: needs an even number of amounts, at most 2 per dimension ({input.ndim} dims), got {pad}")
    modes = ("constant", "reflect", "replicate", "circular")
    if mode not in modes:
        raise ValueError(f"pad: mode={mode!r} is not allowed; use one of {', '.join(map(repr, modes))}")
    if mode != "constant" and value not in (None, 0, 0.0):
        raise ValueError(f"pad: value is only meaningful with mode='constant', got mode={mode!r}")
    out = input
    for k in range(len(pad) // 2):
        dim = input.ndim - 1 - k
        left, right = pad[2 * k], pad[2 * k + 1]
        out = _pad_dim(out, dim, left, right, mode, 0.0 if value is None else value)
    return out


def _pad_dim(x: Tensor, dim: int, left: int, right: int, mode: str, value: float) -> Tensor:
    n = x.shape[dim]
    lead = (slice(None),) * dim
    # negative amounts crop first; what remains is padded
    start, stop = max(-left, 0), n - max(-right, 0)
    if start or stop != n:
        if stop < start:
            raise ValueError(f"pad: cropping {-min(left, 0)} + {-min(right, 0)} from dimension {dim} of size {n}")
        x = x[lead + (slice(start, stop),)]
        n = stop - start
    left, right = max(left, 0), max(right, 0)
    if not left and not right:
        return x
    if mode == "constant":
        pieces = []
        for amount in (left, right):
            shape = list(x.shape)
            shape[dim] = amount
            pieces.append(_const(x, x._backend.xp.full(tuple(shape), value, dtype=x.dtype)) if amount else None)
        return cat([p for p in (pieces[0], x, pieces[1]) if p is not None], dim=dim)
    # the other modes are a gather along ``dim`` with an index array; GetItem's backward
    # scatter-adds, so a reflected or repeated element gets the gradient of every copy
    positions = np.arange(-left, n + right)
    if mode == "replicate":
        index = np.clip(positions, 0, n - 1)
    elif mode == "circular":
        if left > n or right > n:
            raise ValueError(f"pad: circular padding of {max(left, right)} is larger than the dimension ({n})")
        index = positions % n
    else:  # reflect: mirror about the edge without repeating it
        if left >= n or right >= n:
            raise ValueError(f"pad: reflect padding of {max(left, right)} must be smaller than the dimension ({n})")
        period = 2 * (n - 1)
        index = np.abs(positions) % period if period else np.zeros_like(positions)
        index = np.where(index >= n, period - index, index)
    return x[lead + (x._backend.xp.asarray(index),)]


# ============================================================================ activations


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return input.gelu(approximate=approximate)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` where ``x > 0``, else ``negative_slope * x`` (gradient ``negative_slope`` at 0, as PyTorch)."""
    return where(input > 0, input, input * negative_slope)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    # clamp before exp so the unused branch can't overflow to inf (inf * 0 gradients are nan)
    return where(input > 0, input, (input.clamp(max=0.0).exp() - 1.0) * alpha)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)`` (also called swish)."""
    return input * input.sigmoid()


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (as PyTorch)."""
    scaled = input * beta
    # log(1 + e^z) = max(z, 0) + log(1 + e^-|z|): never overflows
    smooth = (scaled.relu() + ((-scaled.abs()).exp() + 1.0).log()) / beta
    return where(scaled > threshold, input, smooth)


def logsigmoid(input: Tensor) -> Tensor:
    """``log(sigmoid(x)) = -softplus(-x)``, computed without overflow."""
    return -((-input).relu() + ((-input.abs()).exp() + 1.0).log())


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must not be greater than max_val ({max_val})")
    return input.clamp(min_val, max_val)


def _softmax_dim(name: str, ndim: int, dim: int | None) -> int:
    if dim is not None:
        return dim
    # PyTorch's legacy rule for a missing dim, with its warning
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
                  UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``; ``dtype`` casts the input first (as PyTorch)."""
    if dtype is not None:
        input = input.to(dtype)
    return input.softmax(_softmax_dim("softmax", input.ndim, dim))


def log_softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``: log-probabilities without computing ``log(softmax)``."""
    if dtype is not None:
        input = input.to(dtype)
    return input.log_softmax(_softmax_dim("log_softmax", input.ndim, dim))


# ============================================================================ normalisation


def _norm_dims(name: str, input: Tensor, normalized_shape: Sequence[int] | int) -> tuple:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or tuple(input.shape[-len(shape):]) != shape:
        raise RuntimeError(
            f"{name}: normalized_shape {list(shape)} must match the last dimensions of the input, "
            f"got input shape {tuple(input.shape)}")
    return shape, tuple(range(-len(shape), 0))


def layer_norm(input: Tensor, normalized_shape: Sequence[int] | int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims to mean 0, variance 1, then scale and shift.

    The variance is the biased one (divide by n, not n - 1), as in PyTorch."""
    _, dims = _norm_dims("layer_norm", input, normalized_shape)
    mean = input.mean(dims, keepdim=True)
    var = input.var(dims, keepdim=True, correction=0)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def rms_norm(input: Tensor, normalized_shape: Sequence[int] | int, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight``: LayerNorm without centring (``eps`` None -> dtype's eps)."""
    _, dims = _norm_dims("rms_norm", input, normalized_shape)
    if eps is None:
        eps = float(np.finfo(input.dtype).eps)
    out = input / ((input * input).mean(dims, keepdim=True) + eps).sqrt()
    return out * weight if weight is not None else out


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Tensor | None = None) -> Tensor:
    """``input / max(||input||_p, eps)`` along ``dim``, as ``torch.nn.functional.normalize``;
    ``out`` receives the result (outside the graph, as PyTorch's ``out=``)."""
    denom = input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)
    if out is None:
        return input / denom
    if input.requires_grad and is_grad_enabled():
        raise RuntimeError("normalize(): functions with out=... arguments don't support automatic differentiation, "
                           "but one of the arguments requires grad.")
    with no_grad():
        out.copy_(input / denom)
    return out


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``<x1, x2> / (max(||x1||, eps) * max(||x2||, eps))`` along ``dim`` (broadcasting), as
    ``torch.nn.functional.cosine_similarity``, computed as PyTorch does: each input divided by
    its norm first (the result stays within [-1, 1]), the clamp to ``eps`` outside the graph
    (so the gradient is that of the unclamped norms)."""
    if x1.dtype.kind not in "fc" and x2.dtype.kind not in "fc":
        common = _scalar_type_name(np.promote_types(x1.dtype, x2.dtype))
        raise RuntimeError(f"expected common dtype to be floating point, yet common dtype is {common}")
    norms = [x.norm(2, dim, keepdim=True).clone() for x in (x1, x2)]
    with no_grad():
        for n in norms:
            n.clamp_min_(eps)
    return ((x1 / norms[0]) * (x2 / norms[1])).sum(dim)


# ============================================================================ losses


def cross_entropy(input: Tensor, target: Tensor, weight: Any = None, *, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy from raw logits: ``input`` (N, C), (C,) or (N, C, d1, ...).

    ``target`` is either class indices (N,) / (N, d1, ...) — this path runs the fused
    kernel (log-sum-exp, loss and ``softmax - one_hot`` gradient in two passes) — or class
    probabilities of the input's shape (float), computed as ``-sum(p * log_softmax(x))``.
    ``weight`` (C,) weights classes; with indices, "mean" divides by the total weight of
    the counted targets. ``label_smoothing`` mixes the target with the uniform distribution.
    """
    check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    weight = _as_tensor(weight, input)
    target_data = target.array if isinstance(target, Variable) else np.asarray(target)
    if target_data.dtype.kind == "f":
        return _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing)
    return _fused_cross_entropy(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                                label_smoothing=label_smoothing)


def _cross_entropy_probabilities(input: Tensor, target: Any, weight: Tensor | None, reduction: str,
                                 label_smoothing: float) -> Tensor:
    if not isinstance(target, Variable):
        target = _const(input, np.asarray(target))
    if tuple(target.shape) != tuple(input.shape):
        raise RuntimeError(
            f"cross_entropy: class-probability targets must have the input's shape {tuple(input.shape)}, "
            f"got {tuple(target.shape)}")
    class_dim = 0 if input.ndim == 1 else 1
    classes = input.shape[class_dim]
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / classes
    logp = input.log_softmax(class_dim)
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_dim] = classes
        logp = logp * weight.reshape(shape)
    loss = -(logp * target).sum(class_dim)
    # with probabilities "mean" averages over the N (x d1 x ...) positions, weights or not
    return _reduce(loss, reduction)


def nll_loss(input: Tensor, target: Tensor, weight: Any = None, *, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C), (C,) or (N, C, d1, ...).

    ``loss_n = -weight[t_n] * input[n, t_n]``; targets equal to ``ignore_index`` count for
    nothing, and "mean" divides by the summed weight of the counted targets (PyTorch)."""
    check_reduction(reduction, "nll_loss")
    weight = _as_tensor(weight, input)
    target_data = target.array if isinstance(target, Variable) else input._backend.xp.asarray(target)
    if target_data.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {target_data.dtype}")
    logp, rest = input, None
    if input.ndim == 1:
        logp, flat = input.unsqueeze(0), target_data.reshape(1)
    elif input.ndim == 2:
        flat = target_data
    else:  # (N, C, d1, ...): move the class axis last and make one row per position
        rest = target_data.shape
        logp = input.permute(0, *range(2, input.ndim), 1).reshape(-1, input.shape[1])
        flat = target_data.reshape(-1)
    n, classes = logp.shape
    if flat.shape != (n,):
        raise RuntimeError(f"nll_loss: input shape {tuple(input.shape)} and target shape {tuple(target_data.shape)} don't match")
    xp = input._backend.xp
    valid = flat != ignore_index
    bad = valid & ((flat < 0) | (flat >= classes))
    if bool(bad.any()):
        raise IndexError(f"nll_loss: target {int(flat[bad][0])} is out of bounds for {classes} classes "
                         f"(allowed: 0..{classes - 1}, or ignore_index={ignore_index})")
    safe = xp.where(valid, flat, 0)
    picked = logp[xp.arange(n), safe]
    w = weight.array[safe] if weight is not None else xp.ones(n, dtype=input.dtype)
    row_weight = _const(input, w * valid)
    loss = -picked * row_weight
    if reduction == "none":
        if input.ndim == 1:
            return loss.reshape(())
        return loss.reshape(rest) if rest is not None else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / row_weight.sum()


def _weighted(name: str, loss: Tensor, input: Tensor, weight: Any, reduction: str, mean_by_weight: bool) -> Tensor:
    """Multiply by an elementwise ``weight`` (input-shaped, as PyTorch requires) and reduce."""
    if weight is None:
        return _reduce(loss, reduction)
    weight = _as_tensor(weight, input)
    if tuple(weight.shape) != tuple(input.shape):
        raise ValueError(f"{name}: weight shape {tuple(weight.shape)} must equal the input shape {tuple(input.shape)}")
    loss = loss * weight
    if reduction == "mean" and mean_by_weight:  # PyTorch: a weighted mean for mse/l1 ...
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)  # ... and a plain mean for huber


def mse_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", weight: Any = None) -> Tensor:
    """Mean squared error ``(input - target)^2``.

    ``weight`` (the input's shape) multiplies elementwise; "mean" then divides by its sum."""
    check_reduction(reduction, "mse_loss")
    _check_same_size("mse_loss", input, target)
    diff = input - target
    return _weighted("mse_loss", diff * diff, input, weight, reduction, mean_by_weight=True)


def l1_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", weight: Any = None) -> Tensor:
    """Mean absolute error ``|input - target|`` (``weight`` as in :func:`mse_loss`)."""
    check_reduction(reduction, "l1_loss")
    _check_same_size("l1_loss", input, target)
    return _weighted("l1_loss", (input - target).abs(), input, weight, reduction, mean_by_weight=True)


def smooth_l1_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Quadratic ``0.5 d^2 / beta`` for ``|d| < beta``, linear ``|d| - 0.5 beta`` beyond (``beta=0``: L1)."""
    check_reduction(reduction, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    _check_same_size("smooth_l1_loss", input, target)
    d = (input - target).abs()
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", delta: float = 1.0,
               weight: Any = None) -> Tensor:
    """``0.5 d^2`` for ``|d| < delta``, ``delta (|d| - 0.5 delta)`` beyond: smooth_l1 times ``delta``."""
    check_reduction(reduction, "huber_loss")
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    _check_same_size("huber_loss", input, target)
    d = (input - target).abs()
    loss = where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)
    return _weighted("huber_loss", loss, input, weight, reduction, mean_by_weight=False)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Any = None, *, reduction: str = "mean") -> Tensor:
    """BCE of probabilities ``input`` in [0, 1]; each log is clamped at -100 as in PyTorch.

    Prefer :func:`binary_cross_entropy_with_logits`: it takes logits and never loses precision."""
    check_reduction(reduction, "binary_cross_entropy")
    if tuple(input.shape) != tuple(getattr(target, "shape", ())):
        raise ValueError(f"binary_cross_entropy: target size {tuple(getattr(target, 'shape', ()))} must equal "
                         f"input size {tuple(input.shape)}")
    data = input.array
    if data.size and (float(data.min()) < 0 or float(data.max()) > 1):
        raise RuntimeError("binary_cross_entropy: all input values must be between 0 and 1 (probabilities); "
                           "for logits use binary_cross_entropy_with_logits")
    log_p = input.log().clamp(min=-100.0)
    log_q = (1.0 - input).log().clamp(min=-100.0)
    loss = -(target * log_p + (1.0 - target) * log_q)
    if weight is not None:
        loss = loss * _as_tensor(weight, input)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Any = None, *,
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """Sigmoid + binary cross-entropy in one numerically stable expression.

    With ``z`` the logit, ``y`` the target and ``w_p`` the ``pos_weight`` (broadcast over the
    last, class, dimension)::

        loss = (1 - y) z + (1 + (w_p - 1) y) * log(1 + exp(-z))

    and ``log(1 + exp(-z))`` is evaluated as ``log(1 + exp(-|z|)) + max(-z, 0)`` so exp
    never overflows, whatever the logit's size."""
    check_reduction(reduction, "binary_cross_entropy_with_logits")
    if tuple(input.shape) != tuple(getattr(target, "shape", ())):
        raise ValueError(f"binary_cross_entropy_with_logits: target size {tuple(getattr(target, 'shape', ()))} "
                         f"must equal input size {tuple(input.shape)}")
    if not isinstance(target, Variable):
        target = _const(input, np.asarray(target))
    softplus_neg = ((-input.abs()).exp() + 1.0).log() + (-input).relu()  # log(1 + e^-z)
    if pos_weight is not None:
        log_weight = (_as_tensor(pos_weight, input) - 1.0) * target + 1.0
        loss = (1.0 - target) * input + log_weight * softplus_neg
    else:
        loss = (1.0 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * _as_tensor(weight, input)
    return _reduce(loss, reduction)
