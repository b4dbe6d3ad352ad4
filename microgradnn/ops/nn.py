"""Neural-network primitives with numerically stable forms and fused kernels."""

from __future__ import annotations

from ..autograd import Function


class Softmax(Function):
    @staticmethod
    def forward(ctx, a, dim=-1):
        xp = ctx.xp
        # Subtracting the max changes nothing mathematically and keeps exp() from overflowing.
        e = xp.exp(a - a.max(axis=dim, keepdims=True))
        ctx.out = out = e / e.sum(axis=dim, keepdims=True)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        # Jacobian-vector product of softmax: s * (g - sum(g * s))
        s = ctx.out
        return s * (grad - (grad * s).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, a, dim=-1):
        xp = ctx.xp
        shifted = a - a.max(axis=dim, keepdims=True)
        ctx.out = out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        # d log_softmax: g - softmax * sum(g)
        return grad - ctx.xp.exp(ctx.out) * grad.sum(axis=ctx.dim, keepdims=True)


class CrossEntropy(Function):
    """``cross_entropy(logits, target)``: log-softmax and negative log-likelihood fused.

    ``logits`` is (N, C) and ``target`` (N,) class indices (the functional front end moves
    a class axis 1 of higher-rank inputs last and flattens). One kernel computes each row's
    log-sum-exp and loss in a single pass; its backward writes ``softmax - one_hot`` (with
    class weights and label smoothing folded in) in another pass, never materialising the
    log-probabilities.
    """

    @staticmethod
    def forward(ctx, logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        xp, backend = ctx.xp, ctx.backend
        if weight is None:
            weight = xp.ones(logits.shape[1], dtype=logits.dtype)
        logits = xp.ascontiguousarray(logits)
        target = xp.ascontiguousarray(target, dtype=xp.int64)
        weight = xp.ascontiguousarray(weight, dtype=logits.dtype)
        _check_targets(target, logits.shape[1], ignore_index)
        loss, lse, row_weight = backend.kernel("cross_entropy_forward")(logits, target, weight, ignore_index, label_smoothing)
        ctx.saved = (logits, target, weight, lse)
        ctx.ignore_index, ctx.label_smoothing, ctx.reduction = ignore_index, label_smoothing, reduction
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        # "mean" divides by the total weight of the rows that count (PyTorch's weighted mean)
        ctx.total = total = row_weight.sum()
        return loss.sum() / total

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        logits, target, weight, lse = ctx.saved
        if ctx.reduction == "none":
            row_grad = xp.ascontiguousarray(grad, dtype=logits.dtype)
        else:
            scale = grad / ctx.total if ctx.reduction == "mean" else grad
            row_grad = xp.full(logits.shape[0], scale, dtype=logits.dtype)
        return ctx.backend.kernel("cross_entropy_backward")(
            logits, target, weight, lse, row_grad, ctx.ignore_index, ctx.label_smoothing
        )


def _check_targets(target, classes, ignore_index):
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bad.any():
        value = int(target[bad][0])
        raise IndexError(
            f"cross_entropy: target {value} is out of bounds for {classes} classes "
            f"(allowed: 0..{classes - 1}, or ignore_index={ignore_index})"
        )
