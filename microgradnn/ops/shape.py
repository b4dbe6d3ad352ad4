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


# ----------------------------------------------------------------- gather / scatter along a dim


def _along(xp, index, dim):
    """The full index tuple that ``index`` (an integer array) means along ``dim``.

    ``gather(a, dim, index)[i, j, k] = a[i, index[i, j, k], k]`` for ``dim=1``: every other
    axis is indexed by its own position, as broadcastable ranges."""
    grid = list(xp.ogrid[tuple(slice(0, n) for n in index.shape)]) if index.ndim else []
    grid[dim] = index
    return tuple(grid)


def _leading(index):
    """The block of ``src`` a scatter reads: its first ``index.shape`` elements (as PyTorch)."""
    return tuple(slice(0, n) for n in index.shape)


class Gather(Function):
    @staticmethod
    def forward(ctx, a, index, dim=0):
        ctx.shape, ctx.where = a.shape, _along(ctx.xp, index, dim)
        return a[ctx.where]

    @staticmethod
    def backward(ctx, grad):
        out = ctx.xp.zeros(ctx.shape, dtype=grad.dtype)
        ctx.backend.index_add(out, ctx.where, grad)  # an index gathered twice gets both gradients
        return out, None


class Scatter(Function):
    """``a`` with the positions named by ``index`` along ``dim`` replaced by ``src`` (a tensor or a number)."""

    @staticmethod
    def forward(ctx, a, index, src, dim=0):
        ctx.where = where = _along(ctx.xp, index, dim)
        ctx.block = block = _leading(index)
        ctx.src_shape = getattr(src, "shape", None)
        out = a.copy()
        out[where] = src[block] if ctx.src_shape is not None else src
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        need_a, _, need_src = ctx.needs_input_grad
        grad_a = grad_src = None
        if need_a:  # an overwritten position's old value no longer reaches the output
            grad_a = grad.copy()
            grad_a[ctx.where] = 0
        if need_src:
            grad_src = xp.zeros(ctx.src_shape, dtype=grad.dtype)
            grad_src[ctx.block] = grad[ctx.where]
        return grad_a, None, grad_src


class ScatterAdd(Function):
    """``a`` plus ``src`` added at the positions ``index`` names along ``dim`` (repeats add up)."""

    @staticmethod
    def forward(ctx, a, index, src, dim=0):
        ctx.where = where = _along(ctx.xp, index, dim)
        ctx.block = block = _leading(index)
        ctx.src_shape = src.shape
        out = a.astype(ctx.xp.result_type(a, src), copy=True)
        ctx.backend.index_add(out, where, src[block])
        return out

    @staticmethod
    def backward(ctx, grad):
        need_a, _, need_src = ctx.needs_input_grad
        grad_src = None
        if need_src:
            grad_src = ctx.xp.zeros(ctx.src_shape, dtype=grad.dtype)
            grad_src[ctx.block] = grad[ctx.where]
        return (grad if need_a else None), None, grad_src
