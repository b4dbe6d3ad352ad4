"""Matrix products: ``matmul`` (NumPy/PyTorch semantics, batched) and the fused ``linear``."""

from __future__ import annotations

from ..autograd import Function


def column_sums(xp, a):
    """``a.sum(axis=0)`` of a 2-D array: the gradient of a bias added to every row.

    In float32/float64 it is the product ``ones @ a``, which BLAS runs as a matrix-vector
    product on all its threads: half the time of numpy's row-by-row reduction, with a
    smaller rounding error (measured on 2 cores, (2048, 1024) float32: 0.14 vs 0.32 ms,
    max error against a float64 sum 6.7e-5 vs 1.8e-4; benchmarks/README.md)."""
    if a.dtype.kind == "f" and a.dtype.itemsize >= 4 and a.shape[0] > 0:
        return xp.ones(a.shape[0], dtype=a.dtype) @ a
    return a.sum(axis=0)


def weight_gradients(backend, xp, grad, inputs: list, sums: bool) -> tuple:
    """``([grad^T x for x in inputs], grad's column sums if sums)``, None kept for a None input:
    the weight and bias gradients of a layer whose output rows have the gradient ``grad``
    (rows, out) and whose weights saw the inputs ``x`` (rows, in). Through the backend's fused
    route where it has one (on the CPU ``grad`` is packed once for all of them, not once per
    GEMM), else one GEMM each and :func:`column_sums`."""
    fused = backend.weight_gradients(grad, inputs, sums)
    if fused is not None:
        return fused
    return [None if x is None else xp.matmul(grad.T, x) for x in inputs], (column_sums(xp, grad) if sums else None)


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        # dA reads only B and dB only A: keep just what the gradients asked for will read
        ctx.a, ctx.b = (a if need_b else None), (b if need_a else None)
        ctx.a_ndim, ctx.b_ndim = a.ndim, b.ndim
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        xp, a, b, a_ndim, b_ndim = ctx.xp, ctx.a, ctx.b, ctx.a_ndim, ctx.b_ndim
        need_a, need_b = ctx.needs_input_grad
        # A 1-d operand acts as a row (left) or a column (right) whose extra axis is then dropped.
        if a_ndim == 1:
            grad = xp.expand_dims(grad, -2 if b_ndim > 1 else 0)
        if b_ndim == 1:
            grad = xp.expand_dims(grad, -1)
        # C = A B  =>  dA = dC B^T,  dB = A^T dC; batch axes are summed by autograd's un-broadcast
        grad_a = grad_b = None
        if need_a:
            b2 = b[:, None] if b_ndim == 1 else b
            grad_a = grad @ xp.swapaxes(b2, -1, -2)
        if need_b:
            a2 = a[None, :] if a_ndim == 1 else a
            grad_b = xp.swapaxes(a2, -1, -2) @ grad
        # back to a 1-d operand's shape: sum the broadcast axes (not reshape(-1, n), which
        # is ambiguous when n == 0)
        if a_ndim == 1 and grad_a is not None:
            grad_a = grad_a.sum(axis=tuple(range(grad_a.ndim - 1)))
        if b_ndim == 1 and grad_b is not None:
            grad_b = xp.swapaxes(grad_b, -1, -2).sum(axis=tuple(range(grad_b.ndim - 1)))
        return grad_a, grad_b


class Linear(Function):
    """``x @ weight.T + bias`` with ``weight`` shaped (out, in), as ``torch.nn.functional.linear``.

    One primitive rather than transpose + matmul + add so that the weight gradient comes out
    as one contiguous GEMM, ``grad^T x``, already in the weight's layout."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        need_x, need_w = ctx.needs_input_grad[:2]
        # A (..., in) input is one (N, in) GEMM, not a batch of small ones: numpy's matmul
        # loops over the leading axes of a 3-D operand (measured 2.3x slower for the
        # (64, 32, 256) outputs of an RNN layer). An x whose leading axes are permuted (a
        # batch-first RNN's output, a (T, B, H) buffer seen as (B, T, H)) is read in its
        # storage order, not copied: the product's rows come in that order, and only the
        # (N, out) result, narrower for a head, is copied back to x's order. backward's weight
        # GEMM reads that same (N, in) array.
        ctx.order = _storage_order(x)
        xs = x if ctx.order is None else x.transpose(ctx.order)
        x2 = xs.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        # x's gradient reads only the weight, the weight's only x
        ctx.x, ctx.weight, ctx.x_shape = (x2 if need_w else None), (weight if need_x else None), xs.shape
        out = x2 @ weight.T
        if bias is not None:
            out += bias
        if x.ndim <= 2:
            return out
        out = out.reshape(*xs.shape[:-1], weight.shape[0])
        return out if ctx.order is None else ctx.xp.ascontiguousarray(out.transpose(_inverse(ctx.order)))

    @staticmethod
    def backward(ctx, grad):
        need_x, need_w, need_b = ctx.needs_input_grad + (False,) * (3 - len(ctx.needs_input_grad))
        if ctx.order is not None:  # to the rows' order of forward's product
            grad = ctx.xp.ascontiguousarray(grad.transpose(ctx.order))
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = (g2 @ ctx.weight).reshape(ctx.x_shape) if need_x else None
        if grad_x is not None and ctx.order is not None:
            grad_x = grad_x.transpose(_inverse(ctx.order))  # a view, in the layout x had
        (grad_w,), grad_b = weight_gradients(ctx.backend, ctx.xp, g2,
                                           [ctx.x.reshape(-1, ctx.x_shape[-1]) if need_w else None], need_b)
        return grad_x, grad_w, grad_b


def _storage_order(x):
    """The order of x's axes, the last one kept last, in which a non-contiguous x (3-D or more)
    is C-contiguous (``x.transpose(order)`` then is), or None (x contiguous, or no such order)."""
    if x.ndim <= 2 or x.flags.c_contiguous or x.strides[-1] != x.itemsize:
        return None
    order = tuple(sorted(range(x.ndim - 1), key=lambda axis: -x.strides[axis])) + (x.ndim - 1,)
    return order if x.transpose(order).flags.c_contiguous else None


def _inverse(order):
    return tuple(sorted(range(len(order)), key=order.__getitem__))


class Einsum(Function):
    """``einsum`` for an explicit equation of single letters (``"bij,bjk->bik"``).

    :func:`microgradnn.einsum` turns ``...`` and the implicit form into this one. The
    gradient of operand ``i`` is itself an einsum: the output's gradient contracted with
    every other operand, written to operand ``i``'s subscripts."""

    @staticmethod
    def forward(ctx, *operands, equation=""):
        lhs, _, ctx.out_subs = equation.partition("->")
        ctx.subs = lhs.split(",")
        ctx.operands = operands
        return ctx.xp.einsum(equation, *operands)

    @staticmethod
    def backward(ctx, grad):
        sizes = {}
        for subs, op in zip(ctx.subs, ctx.operands):
            sizes.update(zip(subs, op.shape))
        return tuple(
            _einsum_grad(ctx.xp, i, ctx.subs, ctx.out_subs, ctx.operands, grad, dict(sizes)) if needed else None
            for i, needed in enumerate(ctx.needs_input_grad)
        )


def _einsum_grad(xp, i, subs, out_subs, operands, grad, sizes):
    import string

    used = set("".join(subs) + out_subs)
    fresh = iter(c for c in string.ascii_letters if c not in used)
    # A letter repeated in operand i (a diagonal, "ii->i") gets a fresh name for each
    # repeat, tied to the first by an identity matrix: d a[i, j] = g[i] * delta(i, j).
    seen, target, identities = set(), [], []
    for c in subs[i]:
        if c in seen:
            new = next(fresh)
            sizes[new] = sizes[c]
            target.append(new)
            identities.append(c + new)
        else:
            seen.add(c)
            target.append(c)
    inputs = [out_subs] + [s for j, s in enumerate(subs) if j != i] + identities
    arrays = [grad] + [op for j, op in enumerate(operands) if j != i] + [xp.eye(sizes[p[0]], dtype=grad.dtype) for p in identities]
    available = set("".join(inputs))
    # a letter only operand i has was summed over alone: its gradient is broadcast along it
    kept = "".join(c for c in target if c in available)
    g = xp.einsum(",".join(inputs) + "->" + kept, *arrays)
    g = g.reshape(tuple(sizes[c] if c in available else 1 for c in target))
    return xp.broadcast_to(g, operands[i].shape)
