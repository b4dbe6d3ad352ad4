"""``Tensor``: an n-d array on a device, with a dynamic autograd graph, PyTorch-shaped.

The operators here are thin: each calls one primitive from :mod:`microgradnn.ops` (or
composes a few), so every gradient rule lives in exactly one place.
"""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import autograd
from .autograd import Variable
from .backend import Backend, get_backend, to_host
from .ops import elementwise as E
from .ops import linalg as L
from .ops import nn as N
from .ops import reduce as R
from .ops import shape as S

from .dtypes import bool_, float16, float32, float64, get_default_dtype, int32, int64, set_default_dtype

MaxMin = namedtuple("MaxMin", ["values", "indices"])

DTypeLike = Any
DeviceLike = "str | Backend"


def _as_dtype(dtype: DTypeLike) -> np.dtype:
    if dtype is builtins.float:
        return get_default_dtype()
    if dtype is builtins.int:
        return int64
    if dtype is builtins.bool:
        return bool_
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}: use mg.float32, mg.float64, mg.int64, mg.bool_ ...") from None


def _dims(args: tuple) -> tuple:
    """Accept both ``x.reshape(2, 3)`` and ``x.reshape((2, 3))``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _unwrap_index(index: Any) -> Any:
    """Tensors inside an index become arrays (they select; they carry no gradient)."""
    if isinstance(index, Variable):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, Variable) else i for i in index)
    return index


class Tensor(Variable):
    """An n-d array plus autograd. Create one with :func:`tensor`, :func:`zeros`, :func:`randn`..."""

    __slots__ = ()
    __hash__ = object.__hash__  # == is elementwise, so hash by identity (as PyTorch)

    def __init__(self, data: Any, backend: Any = None, requires_grad: bool = False, ctx: Any = None, out_index: int = 0):
        if backend is None:  # a user calling Tensor(data): go through tensor()'s conversion
            made = tensor(data)
            data, backend = made.array, made._backend
        self.array = data
        self._backend = backend
        self.requires_grad = requires_grad
        self._grad = None
        self._ctx = ctx
        self._out_index = out_index
        self._hooks = None

    # ------------------------------------------------------------------ attributes

    @property
    def shape(self) -> tuple:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def device(self) -> str:
        return self._backend.name

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def dim(self) -> int:
        return self.array.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.array.shape[dim]

    def numel(self) -> int:
        return int(self.array.size)

    def __len__(self) -> int:
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    @property
    def is_cuda(self) -> bool:
        return self._backend.name == "cuda"

    @property
    def data(self) -> "Tensor":
        """PyTorch's ``.data``: this tensor's storage as a Tensor with no autograd history.

        Writes through it (``p.data.add_(...)``, ``p.data[0] = 1``) change ``p`` and are not
        recorded in the graph. The raw backend array is ``.array`` (what the library itself
        uses); users get a numpy array from ``.numpy()``.
        """
        return Tensor(self.array, self._backend)

    @data.setter
    def data(self, value: "Tensor") -> None:
        if not isinstance(value, Variable):
            raise TypeError(f"Variable data has to be a tensor, but got {type(value).__name__}")
        if value._backend is not self._backend and value._backend.name != self._backend.name:
            raise RuntimeError(f"data set to a tensor on {value.device} for a tensor on {self.device}")
        self.array = value.array

    @property
    def grad(self) -> "Tensor | None":
        g = self._grad
        return None if g is None else Tensor(g, self._backend)

    @grad.setter
    def grad(self, value: "Tensor | None") -> None:
        if value is None:
            self._grad = None
            return
        data = value.array if isinstance(value, Variable) else self._backend.xp.asarray(value)
        if data.shape != self.array.shape:
            raise RuntimeError(f"assigned grad has shape {tuple(data.shape)} but the tensor has shape {self.shape}")
        self._grad = data

    # ------------------------------------------------------------------ conversion

    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("can't call numpy() on a tensor that requires grad: use tensor.detach().numpy()")
        if self._backend.name != "cpu":
            raise TypeError(f"can't convert a {self.device} tensor to numpy: use tensor.cpu() first")
        return self.array

    def tolist(self) -> Any:
        return self._backend.to_host(self.array).tolist()

    def item(self) -> Any:
        if self.array.size != 1:
            raise RuntimeError(f"a tensor with {self.array.size} elements cannot be converted to a Python number")
        return self._backend.to_host(self.array).reshape(()).item()

    def __float__(self) -> builtins.float:
        return builtins.float(self.item())

    def __int__(self) -> builtins.int:
        return builtins.int(self.item())

    def __bool__(self) -> bool:
        if self.array.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.array.size} elements is ambiguous: use .any() or .all()")
        return bool(self.item())

    def __repr__(self) -> str:
        body = np.array2string(self._backend.to_host(self.array), separator=", ", precision=4, prefix="tensor(")
        extras = []
        if self._backend.name != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (get_default_dtype(), int64, bool_):
            extras.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn={self._ctx!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def to(self, *args: Any, dtype: DTypeLike = None, device: DeviceLike = None) -> "Tensor":
        """``to("cuda")``, ``to(mg.float64)``, ``to(other_tensor)``, or keywords."""
        for arg in args:
            if isinstance(arg, Variable):
                device, dtype = arg._backend, arg.dtype
            elif isinstance(arg, (str, Backend)):
                device = arg
            else:
                dtype = arg
        out = self
        if dtype is not None and _as_dtype(dtype) != self.dtype:
            out = E.Cast.apply(out, dtype=_as_dtype(dtype))
        if device is not None:
            backend = get_backend(device)
            if backend is not out._backend:
                out = _ToDevice.apply(out, backend=backend)
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    def half(self) -> "Tensor":
        return self.to(float16)

    def long(self) -> "Tensor":
        return self.to(int64)

    def int(self) -> "Tensor":
        return self.to(int32)

    def bool(self) -> "Tensor":
        return self.to(bool_)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    # ------------------------------------------------------------------ autograd

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        autograd.backward(self, grad, retain_graph)

    def detach(self) -> "Tensor":
        return Tensor(self.array, self._backend)

    def detach_(self) -> "Tensor":
        self._ctx, self.requires_grad = None, False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.dtype.kind not in "fc":
            raise RuntimeError(f"only floating-point tensors can require gradients, this one is {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("you can only change requires_grad of leaf tensors; use .detach() for a non-leaf")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        autograd.retain_grad(self)

    def register_hook(self, hook: Callable[["Tensor"], "Tensor | None"]) -> Callable[[], None]:
        """Call ``hook(grad)`` with the gradient of this tensor during backward (as PyTorch)."""
        backend = self._backend

        def on_array(grad: Any) -> Any:
            result = hook(Tensor(grad, backend))
            return None if result is None else result.array

        return autograd.register_hook(self, on_array)

    def clone(self) -> "Tensor":
        return E.Clone.apply(self)

    # ------------------------------------------------------------------ in-place (no graph)

    def _check_inplace(self, name: str) -> None:
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                f"{name}: a tensor that requires grad can't be modified in place while grad is enabled; "
                f"wrap the update in `with mg.no_grad():`"
            )

    def _value(self, other: Any) -> Any:
        return other.array if isinstance(other, Variable) else other

    def zero_(self) -> "Tensor":
        self._check_inplace("zero_")
        self.array[...] = 0
        return self

    def fill_(self, value: Any) -> "Tensor":
        self._check_inplace("fill_")
        self.array[...] = self._value(value)
        return self

    def copy_(self, src: Any) -> "Tensor":
        self._check_inplace("copy_")
        value = self._value(src)
        if not isinstance(value, type(self.array)):
            value = _move_array(value, self._backend)
        self.array[...] = value
        return self

    def add_(self, other: Any, alpha: Any = 1) -> "Tensor":
        self._check_inplace("add_")
        self.array += self._value(other) * alpha if alpha != 1 else self._value(other)
        return self

    def sub_(self, other: Any, alpha: Any = 1) -> "Tensor":
        return self.add_(other, alpha=-alpha)

    def mul_(self, other: Any) -> "Tensor":
        self._check_inplace("mul_")
        self.array *= self._value(other)
        return self

    def div_(self, other: Any) -> "Tensor":
        self._check_inplace("div_")
        self.array /= self._value(other)
        return self

    def clamp_(self, min: Any = None, max: Any = None) -> "Tensor":
        self._check_inplace("clamp_")
        self._backend.xp.clip(self.array, min, max, out=self.array)
        return self

    def uniform_(self, a: builtins.float = 0.0, b: builtins.float = 1.0) -> "Tensor":
        self._check_inplace("uniform_")
        self.array[...] = _random(self._backend).uniform(a, b, self.shape).astype(self.dtype)
        return self

    def normal_(self, mean: builtins.float = 0.0, std: builtins.float = 1.0) -> "Tensor":
        self._check_inplace("normal_")
        # standard_normal * std + mean: CuPy's Generator has no .normal(); same values on numpy
        self.array[...] = (_random(self._backend).standard_normal(self.shape) * std + mean).astype(self.dtype)
        return self

    def _inplace_or_new(self, name: str, inplace: Callable[[], Any], new: Callable[[], "Tensor"]) -> "Tensor":
        """``x += y`` and friends: in place when no graph is being recorded for ``x`` (the
        optimizer-update case, ``with mg.no_grad(): p -= lr * p.grad``); as PyTorch, an
        error for a leaf that requires grad; otherwise a new node (the name is rebound)."""
        if not (self.requires_grad and autograd.is_grad_enabled()):
            inplace()
            return self
        if self.is_leaf:
            raise RuntimeError(
                f"{name}: a leaf tensor that requires grad can't be modified in place while grad is enabled; "
                f"wrap the update in `with mg.no_grad():`"
            )
        return new()

    def __iadd__(self, other: Any) -> "Tensor":
        return self._inplace_or_new("+=", lambda: self.array.__iadd__(self._value(other)), lambda: self + other)

    def __isub__(self, other: Any) -> "Tensor":
        return self._inplace_or_new("-=", lambda: self.array.__isub__(self._value(other)), lambda: self - other)

    def __imul__(self, other: Any) -> "Tensor":
        return self._inplace_or_new("*=", lambda: self.array.__imul__(self._value(other)), lambda: self * other)

    def __itruediv__(self, other: Any) -> "Tensor":
        return self._inplace_or_new("/=", lambda: self.array.__itruediv__(self._value(other)), lambda: self / other)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace("__setitem__")
        self.array[_unwrap_index(index)] = self._value(value)

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other: Any) -> "Tensor":
        return E.Add.apply(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        return E.Add.apply(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        return E.Sub.apply(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        return E.Sub.apply(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        return E.Mul.apply(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        return E.Mul.apply(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        return E.Div.apply(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return E.Div.apply(other, self)

    def __pow__(self, other: Any) -> "Tensor":
        return E.Pow.apply(self, other)

    def __rpow__(self, other: Any) -> "Tensor":
        return E.Pow.apply(other, self)

    def __matmul__(self, other: Any) -> "Tensor":
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return matmul(other, self)

    def __neg__(self) -> "Tensor":
        return E.Neg.apply(self)

    def __abs__(self) -> "Tensor":
        return E.Abs.apply(self)

    # comparisons: boolean tensors, no gradient
    def __lt__(self, other: Any) -> "Tensor":
        return E.Lt.apply(self, other)

    def __le__(self, other: Any) -> "Tensor":
        return E.Le.apply(self, other)

    def __gt__(self, other: Any) -> "Tensor":
        return E.Gt.apply(self, other)

    def __ge__(self, other: Any) -> "Tensor":
        return E.Ge.apply(self, other)

    def __eq__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return E.Eq.apply(self, other)

    def __ne__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return E.Ne.apply(self, other)

    def __invert__(self) -> "Tensor":
        return Tensor(~self.array, self._backend)

    def __and__(self, other: Any) -> "Tensor":
        return Tensor(self.array & self._value(other), self._backend)

    def __or__(self, other: Any) -> "Tensor":
        return Tensor(self.array | self._value(other), self._backend)

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    pow = __pow__
    neg = __neg__
    matmul = __matmul__
    lt, le, gt, ge, eq, ne = __lt__, __le__, __gt__, __ge__, __eq__, __ne__

    def abs(self) -> "Tensor":
        return E.Abs.apply(self)

    def exp(self) -> "Tensor":
        return E.Exp.apply(self)

    def log(self) -> "Tensor":
        return E.Log.apply(self)

    def sqrt(self) -> "Tensor":
        return E.Sqrt.apply(self)

    def tanh(self) -> "Tensor":
        return E.Tanh.apply(self)

    def sigmoid(self) -> "Tensor":
        return E.Sigmoid.apply(self)

    def relu(self) -> "Tensor":
        return E.Relu.apply(self)

    def gelu(self, approximate: str = "none") -> "Tensor":
        return E.Gelu.apply(self, approximate=approximate)

    def clamp(self, min: Any = None, max: Any = None) -> "Tensor":
        return E.Clamp.apply(self, min=min, max=max)

    clip = clamp

    def maximum(self, other: Any) -> "Tensor":
        return E.Maximum.apply(self, other)

    def minimum(self, other: Any) -> "Tensor":
        return E.Minimum.apply(self, other)

    def where(self, condition: Any, other: Any) -> "Tensor":
        return where(condition, self, other)

    def masked_fill(self, mask: Any, value: Any) -> "Tensor":
        return where(mask, value, self)

    # ------------------------------------------------------------------ reductions

    def sum(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return R.Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return R.Mean.apply(self, dim=dim, keepdim=keepdim)

    def var(self, dim: Any = None, keepdim: bool = False, *, correction: builtins.int = 1, unbiased: bool | None = None) -> "Tensor":
        if unbiased is not None:
            correction = 1 if unbiased else 0
        return R.Var.apply(self, dim=dim, keepdim=keepdim, correction=correction)

    def std(self, dim: Any = None, keepdim: bool = False, *, correction: builtins.int = 1, unbiased: bool | None = None) -> "Tensor":
        return self.var(dim, keepdim, correction=correction, unbiased=unbiased).sqrt()

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        """``x.max()`` is a tensor; ``x.max(dim)`` is ``(values, indices)`` as in PyTorch."""
        if dim is None:
            return R.Amax.apply(self)
        if isinstance(dim, Variable):
            return self.maximum(dim)
        return self._extreme_along(dim, keepdim, self._backend.xp.argmax)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        if dim is None:
            return R.Amin.apply(self)
        if isinstance(dim, Variable):
            return self.minimum(dim)
        return self._extreme_along(dim, keepdim, self._backend.xp.argmin)

    def _extreme_along(self, dim: builtins.int, keepdim: bool, arg: Callable) -> MaxMin:
        dim = R.normalize_dims(dim, self.ndim)[0]
        indices = arg(self.array, axis=dim)
        if keepdim:  # SelectAlongDim takes keepdim=True to mean the indices keep their axis
            indices = self._backend.xp.expand_dims(indices, dim)
        values = R.SelectAlongDim.apply(self, indices, dim=dim, keepdim=keepdim)
        return MaxMin(values, Tensor(indices.astype(int64), self._backend))

    def amax(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return R.Amax.apply(self, dim=dim, keepdim=keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return R.Amin.apply(self, dim=dim, keepdim=keepdim)

    def argmax(self, dim: builtins.int | None = None, keepdim: bool = False) -> "Tensor":
        return self._arg(self._backend.xp.argmax, dim, keepdim)

    def argmin(self, dim: builtins.int | None = None, keepdim: bool = False) -> "Tensor":
        return self._arg(self._backend.xp.argmin, dim, keepdim)

    def _arg(self, fn: Callable, dim: Any, keepdim: bool) -> "Tensor":
        out = fn(self.array, axis=dim)
        if keepdim:  # with dim=None, keepdim gives every axis length 1 (as PyTorch)
            out = self._backend.xp.expand_dims(out, dim) if dim is not None else out.reshape((1,) * self.ndim)
        return Tensor(self._backend.xp.asarray(out, dtype=int64), self._backend)

    def all(self) -> "Tensor":
        return Tensor(self._backend.xp.asarray(self.array.all()), self._backend)

    def any(self) -> "Tensor":
        return Tensor(self._backend.xp.asarray(self.array.any()), self._backend)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> "Tensor":
        return R.LogSumExp.apply(self, dim=dim, keepdim=keepdim)

    def softmax(self, dim: builtins.int) -> "Tensor":
        return N.Softmax.apply(self, dim=dim)

    def log_softmax(self, dim: builtins.int) -> "Tensor":
        return N.LogSoftmax.apply(self, dim=dim)

    # ------------------------------------------------------------------ shape

    def reshape(self, *shape: Any) -> "Tensor":
        return S.Reshape.apply(self, shape=_dims(shape))

    def view(self, *shape: Any) -> "Tensor":
        return S.Reshape.apply(self, shape=_dims(shape))

    def view_as(self, other: "Tensor") -> "Tensor":
        return self.reshape(other.shape)

    def flatten(self, start_dim: builtins.int = 0, end_dim: builtins.int = -1) -> "Tensor":
        shape = self.shape
        if not shape:
            return self.reshape(1)
        start, end = start_dim % len(shape), end_dim % len(shape)
        middle = 1
        for n in shape[start : end + 1]:
            middle *= n
        return self.reshape(shape[:start] + (middle,) + shape[end + 1 :])

    def transpose(self, dim0: builtins.int, dim1: builtins.int) -> "Tensor":
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return S.Permute.apply(self, dims=tuple(dims))

    def permute(self, *dims: Any) -> "Tensor":
        dims = tuple(d % self.ndim for d in _dims(dims))
        if sorted(dims) != list(range(self.ndim)):
            raise RuntimeError(f"permute: dims {dims} are not a permutation of the {self.ndim} dimensions of shape {self.shape}")
        return S.Permute.apply(self, dims=dims)

    @property
    def T(self) -> "Tensor":
        return S.Permute.apply(self, dims=tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> "Tensor":
        return self.transpose(-2, -1)

    def t(self) -> "Tensor":
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but it has {self.ndim}; use transpose()")
        return self.T

    def unsqueeze(self, dim: builtins.int) -> "Tensor":
        shape = list(self.shape)
        shape.insert(dim % (self.ndim + 1), 1)
        return S.Reshape.apply(self, shape=tuple(shape))

    def squeeze(self, dim: Any = None) -> "Tensor":
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            dims = {d % max(self.ndim, 1) for d in ((dim,) if isinstance(dim, builtins.int) else dim)}
            shape = tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1))
        return S.Reshape.apply(self, shape=shape)

    def expand(self, *sizes: Any) -> "Tensor":
        sizes = _dims(sizes)
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise RuntimeError(f"expand: the number of sizes {sizes} must be at least the number of dimensions of shape {self.shape}")
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(sizes))
        for i, n in enumerate(self.shape):
            if n != 1 and n != shape[i + lead]:
                raise RuntimeError(f"expand: shape {self.shape} cannot be expanded to {shape} (dimension {i} is {n}, not 1)")
        return S.Expand.apply(self, shape=shape)

    def expand_as(self, other: "Tensor") -> "Tensor":
        return self.expand(other.shape)

    def __getitem__(self, index: Any) -> "Tensor":
        return S.GetItem.apply(self, index=_unwrap_index(index))

    def split(self, split_size_or_sections: Any, dim: builtins.int = 0) -> tuple:
        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks: builtins.int, dim: builtins.int = 0) -> tuple:
        return chunk(self, chunks, dim)

    def unbind(self, dim: builtins.int = 0) -> tuple:
        return S.Unbind.apply(self, dim=dim)

    def __iter__(self):
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))


Tensor._output_type = Tensor


class _ToDevice(autograd.Function):
    """Move between devices; the gradient moves back."""

    @staticmethod
    def forward(ctx, a, backend=None):
        ctx.source = ctx.backend
        ctx.backend, ctx.xp = backend, backend.xp
        return _move_array(a, backend)

    @staticmethod
    def backward(ctx, grad):
        return _move_array(grad, ctx.source)

    @classmethod
    def apply(cls, a, backend=None):
        out = super().apply(a, backend=backend)
        out._backend = backend
        return out


def _move_array(array: Any, backend: Backend) -> Any:
    if backend.name == "cpu":
        return to_host(array)
    return backend.xp.asarray(array)


# ---------------------------------------------------------------------- creation


def tensor(data: Any, dtype: DTypeLike = None, device: DeviceLike = "cpu", requires_grad: bool = False) -> Tensor:
    """Make a leaf tensor from a Python number, (nested) list, numpy/cupy array or tensor.

    Python floats become ``mg.float32`` (the default dtype), ints ``mg.int64``; an array
    keeps its dtype, as ``torch.tensor`` does."""
    backend = get_backend(device)
    if isinstance(data, Variable):
        data = data.array
    if dtype is not None:
        dtype = _as_dtype(dtype)
    elif not hasattr(data, "dtype"):
        probe = np.asarray(data)
        if probe.dtype.kind == "f":
            dtype = get_default_dtype()
        elif probe.dtype.kind in "iu":
            dtype = int64
        elif probe.dtype.kind not in "b":
            raise TypeError(f"can't make a tensor from {type(data).__name__} with element type {probe.dtype}: numbers and booleans only")
        data = probe
    array = backend.xp.array(_move_array(data, backend) if backend.name == "cpu" else data, dtype=dtype, copy=True)
    out = Tensor(array, backend)
    if requires_grad:
        out.requires_grad_(True)
    return out


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with ``array`` (as ``torch.from_numpy``)."""
    return Tensor(array, get_backend("cpu"))


def _creator(fill: Callable[[Any, tuple, np.dtype], Any]) -> Callable[..., Tensor]:
    def create(*size: Any, dtype: DTypeLike = None, device: DeviceLike = "cpu", requires_grad: bool = False) -> Tensor:
        backend = get_backend(device)
        out = Tensor(fill(backend, _dims(size), _as_dtype(dtype) if dtype is not None else get_default_dtype()), backend)
        return out.requires_grad_(True) if requires_grad else out

    return create


zeros = _creator(lambda b, shape, dtype: b.xp.zeros(shape, dtype=dtype))
ones = _creator(lambda b, shape, dtype: b.xp.ones(shape, dtype=dtype))
empty = _creator(lambda b, shape, dtype: b.xp.empty(shape, dtype=dtype))
randn = _creator(lambda b, shape, dtype: _random(b).standard_normal(shape).astype(dtype, copy=False))
rand = _creator(lambda b, shape, dtype: _random(b).random(shape).astype(dtype, copy=False))
zeros.__doc__ = "Tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."
ones.__doc__ = "Tensor of ones."
empty.__doc__ = "Uninitialised tensor."
randn.__doc__ = "Standard-normal samples from the generator seeded by :func:`manual_seed`."
rand.__doc__ = "Uniform samples in [0, 1) from the generator seeded by :func:`manual_seed`."


def full(size: Sequence[builtins.int], fill_value: Any, dtype: DTypeLike = None, device: DeviceLike = "cpu", requires_grad: bool = False) -> Tensor:
    backend = get_backend(device)
    if dtype is None:
        dtype = get_default_dtype() if isinstance(fill_value, builtins.float) else bool_ if isinstance(fill_value, bool) else int64
    out = Tensor(backend.xp.full(tuple(size), fill_value, dtype=_as_dtype(dtype)), backend)
    return out.requires_grad_(True) if requires_grad else out


def arange(start: Any, end: Any = None, step: Any = 1, dtype: DTypeLike = None, device: DeviceLike = "cpu", requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, builtins.int) for v in (start, end, step)) else get_default_dtype()
    backend = get_backend(device)
    out = Tensor(backend.xp.arange(start, end, step, dtype=_as_dtype(dtype)), backend)
    return out.requires_grad_(True) if requires_grad else out


def randint(low: builtins.int, high: builtins.int | None = None, size: Sequence[builtins.int] = (), dtype: DTypeLike = int64, device: DeviceLike = "cpu") -> Tensor:
    if high is None:
        low, high = 0, low
    backend = get_backend(device)
    return Tensor(_random(backend).integers(low, high, tuple(size)).astype(_as_dtype(dtype)), backend)


def randperm(n: builtins.int, dtype: DTypeLike = int64, device: DeviceLike = "cpu") -> Tensor:
    backend = get_backend(device)
    return Tensor(_random(backend).permutation(n).astype(_as_dtype(dtype)), backend)


def _like(maker: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def create_like(other: Tensor, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> Tensor:
        return maker(other.shape, dtype=dtype or other.dtype, device=device or other._backend, requires_grad=requires_grad)

    create_like.__doc__ = f"Like ``{maker.__name__}`` with the shape, dtype and device of ``other``."
    return create_like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
randn_like = _like(randn)
rand_like = _like(rand)


def full_like(other: Tensor, fill_value: Any, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> Tensor:
    return full(other.shape, fill_value, dtype=dtype or other.dtype, device=device or other._backend, requires_grad=requires_grad)


# ---------------------------------------------------------------------- random state

DEFAULT_SEED = 67280421310721  # torch.initial_seed() of a fresh PyTorch process
_generators: dict[str, Any] = {}
_seed = DEFAULT_SEED


def manual_seed(seed: builtins.int) -> None:
    """Seed every device's generator (as ``torch.manual_seed``)."""
    global _seed
    _seed = builtins.int(seed)
    _generators.clear()


def initial_seed() -> builtins.int:
    return _seed


def _random(backend: Backend) -> Any:
    gen = _generators.get(backend.name)
    if gen is None:
        gen = _generators[backend.name] = backend.generator(_seed)
    return gen


def get_rng_state() -> dict:
    """The CPU generator's state as plain data (JSON-serialisable), for checkpoints."""
    return {"seed": _seed, "state": _random(get_backend("cpu")).bit_generator.state}


def set_rng_state(state: dict) -> None:
    manual_seed(state["seed"])
    _random(get_backend("cpu")).bit_generator.state = state["state"]


# ---------------------------------------------------------------------- functions


def _check_tensors(name: str, tensors: Iterable[Any]) -> list:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    return tensors


def matmul(a: Any, b: Any) -> Tensor:
    sa, sb = getattr(a, "shape", ()), getattr(b, "shape", ())
    if len(sa) == 0 or len(sb) == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {sa} and {sb}")
    k_a = sa[-1]
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if k_a != k_b:
        raise RuntimeError(f"matmul: shapes {sa} and {sb} cannot be multiplied ({k_a} != {k_b})")
    if len(sa) > 2 and len(sb) > 2:
        try:
            np.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError:
            raise RuntimeError(
                f"matmul: shapes {sa} and {sb} cannot be multiplied: batch dimensions {sa[:-2]} and {sb[:-2]} don't broadcast"
            ) from None
    return L.MatMul.apply(a, b)


def cat(tensors: Sequence[Tensor], dim: builtins.int = 0) -> Tensor:
    tensors = _check_tensors("cat", tensors)
    ndim = tensors[0].ndim
    d = dim % ndim
    for t in tensors[1:]:
        if t.ndim != ndim or any(t.shape[i] != tensors[0].shape[i] for i in range(ndim) if i != d):
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {dim}: got shapes {[x.shape for x in tensors]}")
    return S.Cat.apply(*tensors, dim=d)


def stack(tensors: Sequence[Tensor], dim: builtins.int = 0) -> Tensor:
    tensors = _check_tensors("stack", tensors)
    if any(t.shape != tensors[0].shape for t in tensors):
        raise RuntimeError(f"stack expects each tensor to be equal size, got shapes {[t.shape for t in tensors]}")
    return S.Stack.apply(*tensors, dim=dim % (tensors[0].ndim + 1))


def split(x: Tensor, split_size_or_sections: Any, dim: builtins.int = 0) -> tuple:
    length = x.shape[dim]
    if isinstance(split_size_or_sections, builtins.int):
        step = split_size_or_sections
        sizes = [builtins.min(step, length - s) for s in range(0, length, step)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != length:
            raise RuntimeError(f"split: sections {sizes} sum to {builtins.sum(sizes)} but dimension {dim} of shape {x.shape} is {length}")
    return S.Split.apply(x, sizes=tuple(sizes), dim=dim)


def chunk(x: Tensor, chunks: builtins.int, dim: builtins.int = 0) -> tuple:
    length = x.shape[dim]
    step = -(-length // chunks)
    return split(x, step, dim)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``condition`` holds, else ``b``; the condition carries no gradient."""
    cond = condition.array if isinstance(condition, Variable) else condition
    if isinstance(a, Variable) or isinstance(b, Variable):
        return E.Where.apply(cond, a, b)
    backend = condition._backend if isinstance(condition, Variable) else get_backend("cpu")
    return Tensor(backend.xp.where(cond, a, b), backend)


def maximum(a: Any, b: Any) -> Tensor:
    return E.Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    return E.Minimum.apply(a, b)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` (``torch.nn.functional.linear``)."""
    if x.shape[-1] != weight.shape[-1]:
        raise RuntimeError(f"linear: input shape {x.shape} and weight shape {weight.shape} don't fit (in_features {x.shape[-1]} != {weight.shape[-1]})")
    return L.Linear.apply(x, weight, bias)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: builtins.int = -100,
    reduction: str = "mean",
    label_smoothing: builtins.float = 0.0,
) -> Tensor:
    """Fused log-softmax + negative log-likelihood (``torch.nn.functional.cross_entropy``).

    ``input`` is (N, C), (C,) or (N, C, d1, ...); ``target`` holds class indices."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    target_data = target.array if isinstance(target, Variable) else input._backend.xp.asarray(target)
    if target_data.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {target_data.dtype}")
    logits, rest = input, None
    if input.ndim == 1:
        logits, target_data = input.unsqueeze(0), target_data.reshape(1)
    elif input.ndim > 2:  # (N, C, d1, ...): move the class axis last, then one row per position
        rest = target_data.shape
        logits = input.permute(0, *range(2, input.ndim), 1).reshape(-1, input.shape[1])
        target_data = target_data.reshape(-1)
    if logits.shape[0] != target_data.shape[0]:
        raise RuntimeError(f"cross_entropy: input shape {input.shape} and target shape {tuple(target.shape)} don't match")
    w = weight.array if isinstance(weight, Variable) else weight
    loss = N.CrossEntropy.apply(logits, target_data, weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    if reduction == "none":
        if input.ndim == 1:
            return loss.reshape(())
        if rest is not None:
            return loss.reshape(rest)
    return loss
