"""Shape primitives: reshape, transpose/permute, expand, indexing, cat/stack/split/unbind.

None of these changes a value, only where it sits, so each backward moves the gradient
back to where its value came from.
"""

from __future__ import annotations

from ..autograd import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape=()):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, dims=()):
        ctx.dims = dims
        return a.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return grad.transpose(inverse)


class Expand(Function):
    """Broadcast to ``shape`` without copying; autograd's un-broadcast is the whole backward."""

    @staticmethod
    def forward(ctx, a, shape=()):
        return ctx.xp.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _is_advanced(index) -> bool:
    """True when ``index`` holds an integer array (which may repeat positions)."""
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        if hasattr(part, "dtype") and part.dtype.kind in "iu" or isinstance(part, list):
            return True
    return False


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index=None):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        out = xp.zeros(ctx.shape, dtype=grad.dtype)
        if _is_advanced(ctx.index):
            # x[[0, 0, 1]] uses x[0] twice: its gradient is the sum of both uses.
            ctx.backend.index_add(out, ctx.index, grad)
        else:
            out[ctx.index] = grad
        return out


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return ctx.xp.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        grads, start = [], 0
        lead = (slice(None),) * (ctx.dim % grad.ndim)
        for size in ctx.sizes:
            grads.append(grad[lead + (slice(start, start + size),)])
            start += size
        return tuple(grads)


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        return ctx.xp.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        n = grad.shape[ctx.dim]
        return tuple(ctx.xp.take(grad, i, axis=ctx.dim) for i in range(n))


class Split(Function):
    """Split along ``dim`` into pieces of the given ``sizes``; one output per piece."""

    @staticmethod
    def forward(ctx, a, sizes=(), dim=0):
        ctx.dim = dim % a.ndim
        pieces, start = [], 0
        lead = (slice(None),) * ctx.dim
        for size in sizes:
            pieces.append(a[lead + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.concatenate(grads, axis=ctx.dim)


class Unbind(Function):
    """``unbind(dim)``: one output per position along ``dim`` (time steps, for instance)."""

    @staticmethod
    def forward(ctx, a, dim=0):
        ctx.dim = dim % a.ndim
        return tuple(ctx.xp.take(a, i, axis=ctx.dim) for i in range(a.shape[ctx.dim]))

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.stack(grads, axis=ctx.dim)
