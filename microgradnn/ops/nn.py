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


class Embedding(Function):
    """``embedding(indices, weight)``: row lookup ``weight[indices]``, with a fused backward.

    The forward is a gather. Its gradient is a scatter-add: every position that looked up
    row ``i`` adds its incoming gradient to row ``i`` (a token seen three times gets three
    contributions). The backend kernel ``embedding_backward`` does this in one pass into a
    (num_embeddings, D) buffer and leaves the ``padding_idx`` row at zero, so padding never
    trains its vector. ``scale_grad_by_freq`` divides each position's gradient by how often
    its token occurs in the batch, as PyTorch does.
    """

    @staticmethod
    def forward(ctx, weight, indices, padding_idx=None, scale_grad_by_freq=False):
        xp = ctx.xp
        indices = xp.asarray(indices)
        num_embeddings = weight.shape[0]
        if indices.size:
            low, high = int(indices.min()), int(indices.max())
            if low < 0 or high >= num_embeddings:
                bad = low if low < 0 else high
                raise IndexError(
                    f"embedding: index {bad} is out of range for an embedding of {num_embeddings} rows "
                    f"(allowed: 0..{num_embeddings - 1})"
                )
        ctx.indices = indices
        ctx.num_embeddings = num_embeddings
        ctx.padding_idx = -1 if padding_idx is None else int(padding_idx)
        ctx.scale_grad_by_freq = scale_grad_by_freq
        return xp.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        flat = xp.ascontiguousarray(ctx.indices.reshape(-1), dtype=xp.int64)
        rows = xp.ascontiguousarray(grad.reshape(flat.shape[0], -1))
        if ctx.scale_grad_by_freq and flat.size:
            counts = xp.bincount(flat, minlength=ctx.num_embeddings)
            rows = rows / counts[flat][:, None].astype(rows.dtype)
        weight_grad = ctx.backend.kernel("embedding_backward")(flat, rows, ctx.num_embeddings, ctx.padding_idx)
        return weight_grad, None


def embedding(indices, weight, padding_idx=None, scale_grad_by_freq=False):
    """Look up rows of ``weight`` (num_embeddings, D) for integer ``indices`` of any shape.

    Returns ``indices.shape + (D,)``; rows at ``padding_idx`` receive no gradient."""
    data = getattr(indices, "array", indices)
    if getattr(data, "dtype", None) is None or data.dtype.kind not in "iu":
        kind = getattr(getattr(data, "dtype", None), "name", type(indices).__name__)
        raise TypeError(f"embedding: indices must be an integer tensor (int64), got {kind}")
    if padding_idx is not None:
        n = weight.shape[0]
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx={padding_idx} must be within num_embeddings={n}")
        padding_idx %= n
    return Embedding.apply(weight, data, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
