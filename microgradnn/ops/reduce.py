"""Reductions over ``dim`` (an int, a tuple of ints, or ``None`` for all), with ``keepdim``.

The backward of a reduction puts the gradient back where the reduced axes were: first
re-insert those axes (when ``keepdim=False`` removed them), then broadcast.
"""

from __future__ import annotations

import contextlib
import warnings

from ..autograd import Function


def normalize_dims(dim, ndim: int) -> tuple:
    """``dim`` as a sorted tuple of non-negative axes; ``None`` means every axis.

    A 0-d tensor accepts dim 0 or -1 (as PyTorch) and has no axis to reduce: ``()``."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"Dimension out of range (expected to be in range of [{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {d})")
        if ndim:
            out.append(d % ndim)
    return tuple(sorted(set(out)))


def _keep(grad, axes, keepdim, xp):
    """Re-insert reduced axes so ``grad`` broadcasts against the input."""
    return grad if keepdim or not axes else xp.expand_dims(grad, axes)


def _axis(axes, ndim):
    return axes if ndim else None


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.axes = axes = normalize_dims(dim, a.ndim)
        ctx.shape, ctx.keepdim = a.shape, keepdim
        return a.sum(axis=_axis(axes, a.ndim), keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        return xp.broadcast_to(_keep(grad, ctx.axes, ctx.keepdim, xp), ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.axes = axes = normalize_dims(dim, a.ndim)
        ctx.shape, ctx.keepdim = a.shape, keepdim
        ctx.count = 1
        for ax in axes:
            ctx.count *= a.shape[ax] if a.ndim else 1
        return a.mean(axis=_axis(axes, a.ndim), keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        return xp.broadcast_to(_keep(grad / ctx.count, ctx.axes, ctx.keepdim, xp), ctx.shape)


class Var(Function):
    """Variance with Bessel's ``correction`` (1 by default, as ``torch.var``)."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, correction=1):
        axes = normalize_dims(dim, a.ndim)
        count = 1
        for ax in axes:
            count *= a.shape[ax]
        # PyTorch divides by max(0, N - correction): a sum over N <= correction gives inf,
        # or nan where it is 0/0 (a single element, or none), with a warning, not an error
        ctx.axes, ctx.keepdim, ctx.denominator = axes, keepdim, float(max(count - correction, 0))
        if ctx.denominator == 0:
            warnings.warn("var(): degrees of freedom is <= 0. Correction should be strictly less than the "
                          "reduction factor (input numel divided by output numel).", UserWarning, stacklevel=4)
        with _quiet(ctx.xp):
            ctx.centered = centered = a - a.mean(axis=_axis(axes, a.ndim), keepdims=True)
            return (centered * centered).sum(axis=_axis(axes, a.ndim), keepdims=keepdim) / ctx.denominator

    @staticmethod
    def backward(ctx, grad):
        # d/dx_i of sum_j (x_j - mean)^2 / D is 2 (x_i - mean) / D: the mean's own
        # dependence on x_i cancels because the centred values sum to zero.
        grad = _keep(grad, ctx.axes, ctx.keepdim, ctx.xp)
        with _quiet(ctx.xp):
            return (2.0 * grad * ctx.centered) / ctx.denominator


class Std(Function):
    """Standard deviation: ``sqrt(var)``, one primitive for PyTorch's gradient where it is 0.

    sqrt's derivative at 0 is infinite; PyTorch defines std's gradient there as 0 (a
    constant input has no direction to grow its spread), where a plain sqrt(var) gives nan."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, correction=1):
        variance = Var.forward(ctx, a, dim=dim, keepdim=keepdim, correction=correction)
        ctx.out = out = ctx.xp.sqrt(variance)
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        with _quiet(xp):
            grad_var = xp.where(ctx.out == 0, 0, grad / (2 * ctx.out))
        return Var.backward(ctx, grad_var)


def _quiet(xp):
    """numpy's divide/invalid warnings off for a computation whose inf/nan results are meant."""
    errstate = getattr(xp, "errstate", None)
    return errstate(divide="ignore", invalid="ignore") if errstate is not None else contextlib.nullcontext()


class _Extreme(Function):
    """max/min over all elements (or ``amax``/``amin`` over dims): ties share the gradient evenly, as PyTorch."""

    pick = None  # "max" or "min"

    @classmethod
    def forward(cls, ctx, a, dim=None, keepdim=False):
        axes = normalize_dims(dim, a.ndim)
        reduce = a.max if cls.pick == "max" else a.min
        out = reduce(axis=_axis(axes, a.ndim), keepdims=keepdim)
        ctx.a, ctx.out, ctx.axes, ctx.keepdim = a, out, axes, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        winners = ctx.a == _keep(ctx.out, ctx.axes, ctx.keepdim, xp)
        count = winners.sum(axis=_axis(ctx.axes, ctx.a.ndim), keepdims=True)
        return winners * (_keep(grad, ctx.axes, ctx.keepdim, xp) / count)


class Amax(_Extreme):
    pick = "max"


class Amin(_Extreme):
    pick = "min"


class VectorNorm(Function):
    """The vector ``ord``-norm over ``dim``: ``(sum |a|^ord)^(1/ord)``; ``inf`` / ``-inf`` the
    largest / smallest ``|a|``, ``0`` the number of non-zeros (``torch.linalg.vector_norm``).

    The gradients are PyTorch's: where the norm is 0 they are 0, not the 0/0 of the formula
    (for ord >= 1: the norm has no slope to follow there; for ord < 1 each zero element gets
    0); ties of the infinity norms share the gradient evenly; ord 0 has none (``.grad`` stays unset)."""

    @staticmethod
    def forward(ctx, a, ord=2.0, dim=None, keepdim=False):
        xp = ctx.xp
        axes = normalize_dims(dim, a.ndim)
        axis = _axis(axes, a.ndim)
        absolute = xp.abs(a)
        if ord == float("inf"):
            out = absolute.max(axis=axis, keepdims=keepdim)
        elif ord == float("-inf"):
            out = absolute.min(axis=axis, keepdims=keepdim)
        elif ord == 0:
            out = (a != 0).sum(axis=axis, keepdims=keepdim).astype(a.dtype)
        elif ord == 1:
            out = absolute.sum(axis=axis, keepdims=keepdim)
        elif ord == 2:
            out = xp.sqrt((a * a).sum(axis=axis, keepdims=keepdim))
        else:
            with _quiet(xp):
                out = (absolute**ord).sum(axis=axis, keepdims=keepdim) ** (1.0 / ord)
        ctx.a, ctx.out, ctx.ord, ctx.axes, ctx.keepdim = a, out, float(ord), axes, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        xp, a, p = ctx.xp, ctx.a, ctx.ord
        norm = _keep(ctx.out, ctx.axes, ctx.keepdim, xp)
        grad = _keep(grad, ctx.axes, ctx.keepdim, xp)
        with _quiet(xp):
            if p == 0:  # a count: no gradient at all (PyTorch leaves the input's .grad unset)
                return None
            if p == 1:
                return xp.sign(a) * grad
            if p in (float("inf"), float("-inf")):
                absolute = xp.abs(a)
                winners = (absolute == norm) | xp.isnan(absolute)
                count = winners.sum(axis=_axis(ctx.axes, a.ndim), keepdims=True)
                return xp.sign(a) * (grad / count) * winners
            if p == 2:
                return a * xp.where(norm == 0, 0, grad / norm)
            absolute = xp.abs(a)
            if p < 1:
                scaled = xp.where(a == 0, 0, xp.sign(a) * absolute ** (p - 1))
                return scaled * grad * norm ** (1 - p)
            scaled = xp.sign(a) * absolute ** (p - 1) if p < 2 else a * absolute ** (p - 2)
            return scaled * xp.where(norm == 0, 0, grad / norm ** (p - 1))


class SelectAlongDim(Function):
    """The values of ``max(dim)``/``min(dim)`` at precomputed ``indices``.

    The gradient goes to the selected index only (as PyTorch's ``max(dim)``), unlike
    :class:`Amax`, which shares it among ties."""

    @staticmethod
    def forward(ctx, a, indices, dim=0, keepdim=False):
        xp = ctx.xp
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.indices = idx = indices if keepdim else xp.expand_dims(indices, dim)
        out = xp.take_along_axis(a, idx, axis=dim)
        return out if keepdim else xp.squeeze(out, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        out = xp.zeros(ctx.shape, dtype=grad.dtype)
        xp.put_along_axis(out, ctx.indices, grad if ctx.keepdim else xp.expand_dims(grad, ctx.dim), axis=ctx.dim)
        return out, None


class LogSumExp(Function):
    """``log(sum(exp(a)))`` computed stably: subtract the max before exponentiating."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        xp = ctx.xp
        axes = normalize_dims(dim, a.ndim)
        m = a.max(axis=_axis(axes, a.ndim), keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        lse = xp.log(xp.exp(a - m).sum(axis=_axis(axes, a.ndim), keepdims=True)) + m
        ctx.a, ctx.lse, ctx.axes, ctx.keepdim = a, lse, axes, keepdim
        return lse if keepdim else lse.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    @staticmethod
    def backward(ctx, grad):
        # d lse / d a_i = softmax(a)_i
        return _keep(grad, ctx.axes, ctx.keepdim, ctx.xp) * ctx.xp.exp(ctx.a - ctx.lse)


def _exclusive_products(xp, a):
    """For each position along the last axis, the product of all the *other* elements.

    Built from two cumulative products (from the left and from the right), so it is exact
    where elements are zero, unlike ``prod / a``."""
    ones = xp.ones(a.shape[:-1] + (1,), dtype=a.dtype)
    left = xp.concatenate([ones, xp.cumprod(a, axis=-1)[..., :-1]], axis=-1)
    right = xp.flip(xp.concatenate([ones, xp.cumprod(xp.flip(a, -1), axis=-1)[..., :-1]], axis=-1), -1)
    return left * right


class Prod(Function):
    """Product over one ``dim`` (or all elements with ``dim=None``), as ``torch.prod``."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.a = a
        if dim is None:
            return a.prod()
        return a.prod(axis=dim if a.ndim else None, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp, a = ctx.xp, ctx.a
        if ctx.dim is None or a.ndim == 0:
            others = _exclusive_products(xp, a.reshape(1, -1)).reshape(a.shape)
            return grad * others
        moved = xp.moveaxis(a, ctx.dim, -1)
        others = xp.moveaxis(_exclusive_products(xp, moved), -1, ctx.dim)
        return _keep(grad, (ctx.dim,), ctx.keepdim, xp) * others


def _reverse_cumsum(xp, x, axis):
    return xp.flip(xp.cumsum(xp.flip(x, axis), axis=axis), axis)


class Cumsum(Function):
    @staticmethod
    def forward(ctx, a, dim=0):
        ctx.dim = dim
        return ctx.xp.cumsum(a, axis=dim) if a.ndim else a.astype(_cumulative_dtype(a)).copy()

    @staticmethod
    def backward(ctx, grad):
        # out_j = sum_{i<=j} a_i, so d/da_i collects the gradient of every out_j with j >= i
        return _reverse_cumsum(ctx.xp, grad, ctx.dim) if grad.ndim else grad


class Cumprod(Function):
    @staticmethod
    def forward(ctx, a, dim=0):
        ctx.a, ctx.dim = a, dim
        ctx.out = out = ctx.xp.cumprod(a, axis=dim) if a.ndim else a.astype(_cumulative_dtype(a)).copy()
        return out

    @staticmethod
    def backward(ctx, grad):
        xp, a = ctx.xp, ctx.a
        if a.ndim == 0:
            return grad
        if bool(xp.all(a != 0)):
            # d out_j / d a_i = out_j / a_i for j >= i
            return _reverse_cumsum(xp, grad * ctx.out, ctx.dim) / a
        # with zeros: d out_j / d a_i is the product of a_k, k <= j, k != i (one pass per i)
        moved, g = xp.moveaxis(a, ctx.dim, -1), xp.moveaxis(grad, ctx.dim, -1)
        result = xp.zeros_like(g)
        for i in range(moved.shape[-1]):
            without = moved.copy()
            without[..., i] = 1
            partial = xp.cumprod(without, axis=-1)
            result[..., i] = (g[..., i:] * partial[..., i:]).sum(axis=-1)
        return xp.moveaxis(result, -1, ctx.dim)


def _cumulative_dtype(a):
    import numpy as np

    return np.dtype(np.int64) if a.dtype.kind in "biu" else a.dtype
