"""Elementwise primitives: arithmetic, activations, clamp, where, maximum/minimum.

Each class is one primitive: ``forward`` and, right beside it, ``backward``, both written
once against ``ctx.xp`` so they run on numpy and cupy alike. Broadcasting needs no code
here: autograd sums a gradient back to its input's shape (:func:`autograd.unbroadcast`).
Activations whose backward takes several passes over memory call a fused kernel from the
backend (a numba loop on the CPU, a CuPy kernel on the GPU).
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..dtypes import get_default_dtype

# ----------------------------------------------------------------- type promotion

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def _promote(a, b, division=False):
    """``a, b`` with arrays cast to PyTorch's result dtype where numpy's would differ.

    numpy and PyTorch agree while both operands share a dtype, or a Python number meets a
    floating array (the fast path). They differ when an integer meets a float (numpy widens
    to float64; PyTorch keeps the float's dtype, or takes the default dtype for a Python
    float), when a 0-d array of a wider type meets an n-d one (PyTorch keeps the n-d
    dtype), and for true division of integers (PyTorch gives the default float dtype)."""
    da, db = getattr(a, "dtype", None), getattr(b, "dtype", None)
    if da == db and (da is None or da.kind == "f" or not division):
        return a, b
    if (db is None and da.kind == "f") or (da is None and db.kind == "f"):
        return a, b
    want = _torch_result_type(a, b)
    if division and want.kind != "f":
        want = _default_float()
    return (a.astype(want) if da is not None and da != want else a), (b.astype(want) if db is not None and db != want else b)


def _default_float():
    return get_default_dtype()


def _torch_result_type(a, b):
    # PyTorch ranks operands in three tiers (n-d tensors, 0-d tensors, Python numbers); a
    # lower tier decides the dtype only when it brings a higher category (bool < int < float).
    tiers = [None, None, None]
    for x in (a, b):
        dt = getattr(x, "dtype", None)
        if dt is None:
            tier, dt = 2, np.dtype(bool if isinstance(x, bool) else np.int64 if isinstance(x, int) else _default_float())
        else:
            tier, dt = (0 if x.ndim else 1), np.dtype(dt)
        old = tiers[tier]
        if old is None:
            tiers[tier] = dt
        elif _CATEGORY[old.kind] != _CATEGORY[dt.kind]:
            tiers[tier] = old if _CATEGORY[old.kind] > _CATEGORY[dt.kind] else dt
        else:
            tiers[tier] = np.promote_types(old, dt)
    out = None
    for dt in tiers:  # n-d first; a later tier wins only with a higher category
        if dt is not None and (out is None or _CATEGORY[dt.kind] > _CATEGORY[out.kind]):
            out = dt
    return out


# ----------------------------------------------------------------- arithmetic


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        a, b = _promote(a, b)
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        a, b = _promote(a, b)
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, (-grad if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        a, b = _promote(a, b)
        need_a, need_b = ctx.needs_input_grad
        # each factor's gradient reads only the other factor
        ctx.a, ctx.b = (a if need_b else None), (b if need_a else None)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        return (grad * ctx.b if need_a else None), (grad * ctx.a if need_b else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        a, b = _promote(a, b, division=True)
        ctx.b = b
        ctx.a = a if ctx.needs_input_grad[1] else None  # only b's gradient reads a
        return a / b

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        grad_a = grad / ctx.b
        # d(a/b)/db = -a/b^2 = -(a/b)/b
        return (grad_a if need_a else None), (-grad_a * (ctx.a / ctx.b) if need_b else None)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    """``a ** b`` for tensor or number on either side."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b = _promote(a, b)
        ctx.out = out = a ** b
        return out

    @staticmethod
    def backward(ctx, grad):
        xp, a, b = ctx.xp, ctx.a, ctx.b
        need_a, need_b = ctx.needs_input_grad
        grad_a = grad_b = None
        if need_a:
            if isinstance(b, (int, float)):
                # d(a^b)/da = b a^(b-1); for b == 0 the derivative is 0 everywhere (as PyTorch)
                grad_a = grad * (b * a ** (b - 1)) if b != 0 else xp.zeros_like(grad)
            else:
                grad_a = xp.where(b == 0, 0, grad * b * xp.power(a, b - 1))
        if need_b:
            # d(a^b)/db = a^b ln a; PyTorch defines it as 0 where a == 0 and b >= 0 (for
            # b < 0 it is inf * ln 0 = -inf, as PyTorch's)
            defined_zero = (xp.asarray(a) == 0) & (xp.asarray(b) >= 0)
            grad_b = xp.where(defined_zero, 0, grad * ctx.out * xp.log(xp.where(defined_zero, 1, a)))
        return grad_a, grad_b


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b = _promote(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        return _select_backward(ctx, grad, ctx.a > ctx.b)


class Minimum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b = _promote(a, b)
        return ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        return _select_backward(ctx, grad, ctx.a < ctx.b)


def _select_backward(ctx, grad, a_wins):
    # The winner of each comparison gets the gradient; a tie splits it in half (as PyTorch).
    xp = ctx.xp
    tie = ctx.a == ctx.b
    half = grad * 0.5
    grad_a = xp.where(tie, half, xp.where(a_wins, grad, 0)) if ctx.needs_input_grad[0] else None
    grad_b = xp.where(tie, half, xp.where(a_wins, 0, grad)) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b


class Where(Function):
    """``where(condition, a, b)``: the condition is a constant (comparisons carry no gradient)."""

    @staticmethod
    def forward(ctx, condition, a, b):
        ctx.condition = condition
        a, b = _promote(a, b)
        return ctx.xp.where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        xp, cond = ctx.xp, ctx.condition
        _, need_a, need_b = ctx.needs_input_grad
        zero = xp.zeros((), dtype=grad.dtype)
        return (
            None,
            xp.where(cond, grad, zero) if need_a else None,
            xp.where(cond, zero, grad) if need_b else None,
        )


# ----------------------------------------------------------------- unary math


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.a = a
        return ctx.xp.abs(a)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.xp.sign(ctx.a)  # sign(0) = 0, as PyTorch


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        a = as_float(a)
        ctx.out = out = ctx.xp.exp(a)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.out


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.a = a = as_float(a)
        return ctx.xp.log(a)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        a = as_float(a)
        ctx.out = out = ctx.xp.sqrt(a)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad / (2 * ctx.out)


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        ctx.a, ctx.min, ctx.max = a, min, max
        return ctx.xp.clip(a, min, max)

    @staticmethod
    def backward(ctx, grad):
        # The gradient passes where the input lies inside [min, max], bounds included (as PyTorch).
        a, inside = ctx.a, True
        if ctx.min is not None:
            inside = a >= ctx.min
        if ctx.max is not None:
            inside = inside & (a <= ctx.max)
        return grad * inside


# ----------------------------------------------------------------- activations


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        a = as_float(a)
        ctx.out = out = ctx.xp.tanh(a)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.kernel("tanh_backward")(ctx.out, grad)  # grad * (1 - tanh^2)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        a = as_float(a)
        ctx.out = out = ctx.backend.kernel("sigmoid_forward")(a)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.kernel("sigmoid_backward")(ctx.out, grad)  # grad * s * (1 - s)


class Relu(Function):
    @staticmethod
    def forward(ctx, a):
        # keeps its output, as PyTorch does (out > 0 exactly where a > 0, NaN included)
        ctx.out = out = ctx.xp.maximum(a, 0)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.kernel("relu_backward")(ctx.out, grad)  # grad where a > 0; 0 at a == 0 (as PyTorch)


class Gelu(Function):
    """GELU, exact (``x * Phi(x)``) or with PyTorch's ``approximate="tanh"``."""

    @staticmethod
    def forward(ctx, a, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        ctx.a, ctx.tanh = a, approximate == "tanh"
        return ctx.backend.kernel("gelu_forward")(a, ctx.tanh)

    @staticmethod
    def backward(ctx, grad):
        return ctx.backend.kernel("gelu_backward")(ctx.a, grad, ctx.tanh)


class Cast(Function):
    """Change dtype; the gradient is cast back by autograd."""

    @staticmethod
    def forward(ctx, a, dtype=None):
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Clone(Function):
    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


# ----------------------------------------------------------------- comparisons (no gradient)


class _Comparison(Function):
    differentiable = False

    @staticmethod
    def backward(ctx, grad):  # never called: the output never requires grad
        return None, None


class Lt(_Comparison):
    @staticmethod
    def forward(ctx, a, b):
        return a < b


class Le(_Comparison):
    @staticmethod
    def forward(ctx, a, b):
        return a <= b


class Gt(_Comparison):
    @staticmethod
    def forward(ctx, a, b):
        return a > b


class Ge(_Comparison):
    @staticmethod
    def forward(ctx, a, b):
        return a >= b


class Eq(_Comparison):
    @staticmethod
    def forward(ctx, a, b):
        return a == b


class Ne(_Comparison):
    @staticmethod
    def forward(ctx, a, b):
        return a != b


# ----------------------------------------------------------------- float math (table-made)
#
# Each of these is one primitive whose backward is ``grad * f'(a)``; the derivative sits
# right beside its forward in the table below. Integer and boolean inputs compute in the
# default float dtype, as PyTorch's ``torch.sin(int_tensor)`` does.


def as_float(a):
    """``a`` itself when floating, else cast to the default float dtype (PyTorch's rule for float ops)."""
    return a if a.dtype.kind in "fc" else a.astype(_default_float())


def _erf(xp, a):
    from ..backend.reference import _erf as erf  # numpy has no erf; cupy's lives in cupyx

    return erf(xp, a)


_LN2, _LN10 = float(np.log(2.0)), float(np.log(10.0))

# name -> (forward(xp, a), what the derivative reads, local derivative(xp, a or out), doc).
# Each op keeps only what its derivative reads, its input ("a") or its output ("out"), as
# PyTorch's formulas do: so an in-place write to the other one between forward and backward
# is harmless here exactly where it is in PyTorch (autograd's version check looks at what a
# node kept).
_FLOAT_UNARY = {
    "Sin": (lambda xp, a: xp.sin(a), "a", lambda xp, a: xp.cos(a), "sin"),
    "Cos": (lambda xp, a: xp.cos(a), "a", lambda xp, a: -xp.sin(a), "cos"),
    "Tan": (lambda xp, a: xp.tan(a), "out", lambda xp, y: 1 + y * y, "tan; d/da = 1 + tan^2"),
    "Asin": (lambda xp, a: xp.arcsin(a), "a", lambda xp, a: 1 / xp.sqrt(1 - a * a), "arcsine"),
    "Acos": (lambda xp, a: xp.arccos(a), "a", lambda xp, a: -1 / xp.sqrt(1 - a * a), "arccosine"),
    "Atan": (lambda xp, a: xp.arctan(a), "a", lambda xp, a: 1 / (1 + a * a), "arctangent"),
    "Sinh": (lambda xp, a: xp.sinh(a), "a", lambda xp, a: xp.cosh(a), "hyperbolic sine"),
    "Cosh": (lambda xp, a: xp.cosh(a), "a", lambda xp, a: xp.sinh(a), "hyperbolic cosine"),
    "Asinh": (lambda xp, a: xp.arcsinh(a), "a", lambda xp, a: 1 / xp.sqrt(a * a + 1), "inverse hyperbolic sine"),
    "Acosh": (lambda xp, a: xp.arccosh(a), "a", lambda xp, a: 1 / xp.sqrt(a * a - 1), "inverse hyperbolic cosine"),
    "Atanh": (lambda xp, a: xp.arctanh(a), "a", lambda xp, a: 1 / (1 - a * a), "inverse hyperbolic tangent"),
    "Log2": (lambda xp, a: xp.log2(a), "a", lambda xp, a: 1 / (a * _LN2), "base-2 logarithm"),
    "Log10": (lambda xp, a: xp.log10(a), "a", lambda xp, a: 1 / (a * _LN10), "base-10 logarithm"),
    "Log1p": (lambda xp, a: xp.log1p(a), "a", lambda xp, a: 1 / (1 + a), "log(1 + a), accurate near 0"),
    "Expm1": (lambda xp, a: xp.expm1(a), "out", lambda xp, y: y + 1, "exp(a) - 1, accurate near 0"),
    "Exp2": (lambda xp, a: xp.exp2(a), "out", lambda xp, y: y * _LN2, "2 ** a"),
    "Erf": (lambda xp, a: _erf(xp, a), "a", lambda xp, a: (2 / np.sqrt(np.pi)) * xp.exp(-a * a), "the error function"),
    "Rsqrt": (lambda xp, a: 1 / xp.sqrt(a), "out", lambda xp, y: -0.5 * y * y * y, "1 / sqrt(a)"),
    "Reciprocal": (lambda xp, a: 1 / a, "out", lambda xp, y: -y * y, "1 / a"),
}


def _float_unary(name, forward_fn, reads, derivative, doc):
    def forward(ctx, a):
        a = as_float(a)
        out = forward_fn(ctx.xp, a)
        ctx.saved = a if reads == "a" else out
        return out

    def backward(ctx, grad):
        return grad * derivative(ctx.xp, ctx.saved)

    return type(name, (Function,), {
        "__module__": __name__,
        "__doc__": f"{doc} (elementwise).",
        "forward": staticmethod(forward),
        "backward": staticmethod(backward),
    })


for _name, (_fwd, _reads, _deriv, _doc) in _FLOAT_UNARY.items():
    globals()[_name] = _float_unary(_name, _fwd, _reads, _deriv, _doc)
del _name, _fwd, _reads, _deriv, _doc


class Atan2(Function):
    """``atan2(a, b)``: the angle of the point (b, a)."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = _promote(a, b, division=True)
        ctx.a, ctx.b = a, b
        return ctx.xp.arctan2(a, b)

    @staticmethod
    def backward(ctx, grad):
        # d/da = b / (a^2 + b^2), d/db = -a / (a^2 + b^2)
        a, b = ctx.a, ctx.b
        scale = grad / (a * a + b * b)
        need_a, need_b = ctx.needs_input_grad
        return (scale * b if need_a else None), (-scale * a if need_b else None)


# ----------------------------------------------------------------- steps (zero gradient)


class _Step(Function):
    """A piecewise-constant op: its gradient is zero almost everywhere (PyTorch gives zeros)."""

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.zeros_like(grad)


class Floor(_Step):
    @staticmethod
    def forward(ctx, a):
        return ctx.xp.floor(a) if a.dtype.kind in "fc" else a.copy()


class Ceil(_Step):
    @staticmethod
    def forward(ctx, a):
        return ctx.xp.ceil(a) if a.dtype.kind in "fc" else a.copy()


class Trunc(_Step):
    @staticmethod
    def forward(ctx, a):
        return ctx.xp.trunc(a) if a.dtype.kind in "fc" else a.copy()


class Round(_Step):
    """Round half to even (as PyTorch and numpy), optionally to ``decimals`` places."""

    @staticmethod
    def forward(ctx, a, decimals=0):
        return ctx.xp.round(a, decimals) if a.dtype.kind in "fc" or decimals < 0 else a.copy()


class Sign(_Step):
    @staticmethod
    def forward(ctx, a):
        return ctx.xp.sign(a) if a.dtype.kind != "b" else a.copy()


class Frac(Function):
    """``a - trunc(a)``: the fractional part, sign kept; its gradient is 1."""

    @staticmethod
    def forward(ctx, a):
        return a - ctx.xp.trunc(a)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Remainder(Function):
    """``a % b`` with the sign of ``b`` (Python's and PyTorch's ``remainder``)."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = _promote(a, b)
        ctx.a, ctx.b = a, b
        return ctx.xp.remainder(a, b)

    @staticmethod
    def backward(ctx, grad):
        # a % b = a - floor(a / b) * b
        need_a, need_b = ctx.needs_input_grad
        grad_b = -grad * ctx.xp.floor(ctx.a / ctx.b) if need_b else None
        return (grad if need_a else None), grad_b
