"""Reductions over ``dim`` (an int, a tuple of ints, or ``None`` for all), with ``keepdim``.

The backward of a reduction puts the gradient back where the reduced axes were: first
re-insert those axes (when ``keepdim=False`` removed them), then broadcast.
"""

from __future__ import annotations

from ..autograd import Function


def normalize_dims(dim, ndim: int) -> tuple:
    """``dim`` as a sorted tuple of non-negative axes; ``None`` means every axis."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dimension out of range (expected to be in range of [{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {d})")
        out.append(d % ndim if ndim else 0)
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
            count *= a.shape[ax] if a.ndim else 1
        ctx.centered = centered = a - a.mean(axis=_axis(axes, a.ndim), keepdims=True)
        ctx.axes, ctx.keepdim, ctx.denominator = axes, keepdim, max(count - correction, 0)
        return (centered * centered).sum(axis=_axis(axes, a.ndim), keepdims=keepdim) / ctx.denominator

    @staticmethod
    def backward(ctx, grad):
        # d/dx_i of sum_j (x_j - mean)^2 / D is 2 (x_i - mean) / D: the mean's own
        # dependence on x_i cancels because the centred values sum to zero.
        grad = _keep(grad, ctx.axes, ctx.keepdim, ctx.xp)
        return grad * ctx.centered * (2.0 / ctx.denominator)


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
