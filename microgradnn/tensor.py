"""``Tensor``: an n-d array on a device, with a dynamic autograd graph, PyTorch-shaped.

The operators here are thin: each calls one primitive from :mod:`microgradnn.ops` (or
composes a few), so every gradient rule lives in exactly one place.
"""

from __future__ import annotations

import builtins
import json
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
Sorted = namedtuple("Sorted", ["values", "indices"])
TopK = namedtuple("TopK", ["values", "indices"])


class Size(tuple):
    """A tensor's shape: a tuple of ints (``torch.Size``), with ``numel()``."""

    def numel(self) -> builtins.int:
        n = 1
        for d in self:
            n *= d
        return n

    def __getitem__(self, index: Any) -> Any:
        out = tuple.__getitem__(self, index)
        return Size(out) if isinstance(index, slice) else out

    def __add__(self, other: Any) -> "Size":
        return Size(tuple(self) + tuple(other))

    def __repr__(self) -> str:
        return f"mg.Size({list(self)})"

    def __str__(self) -> str:  # in messages, a shape reads as the tuple it is: (2, 3)
        return tuple.__repr__(self)

    def __reduce__(self) -> tuple:
        return (Size, (tuple(self),))


class device:
    """Where a tensor lives: ``mg.device("cpu")``, ``mg.device("cuda:0")``, ``mg.device("cuda", 0)``.

    ``str(d)`` is ``"cpu"`` / ``"cuda:0"``; unlike ``torch.device`` it also compares equal to
    that string, so code written against device names keeps working."""

    __slots__ = ("type", "index")

    def __init__(self, type: "str | device", index: builtins.int | None = None) -> None:
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        name, _, number = str(type).partition(":")
        if name not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type}")
        if number:
            if index is not None:
                raise RuntimeError(f"device {type!r} already names an index; don't pass index={index} too")
            if not number.isdigit():
                raise RuntimeError(f"Invalid device string: {type!r}")
            index = builtins.int(number)
        self.type, self.index = name, index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type={self.type!r})" if self.index is None else f"device(type={self.type!r}, index={self.index})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            other = device(other)
        if not isinstance(other, device):
            return NotImplemented
        return (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> builtins.int:
        return hash((self.type, self.index))

    def __reduce__(self) -> tuple:
        return (device, (self.type, self.index))


_Device = device  # for code where a parameter named ``device`` hides the class


def _wrap_dim(dim: Any, ndim: builtins.int) -> builtins.int:
    """``dim`` as a non-negative axis of an ``ndim``-d tensor; out of range is PyTorch's IndexError.

    A 0-d tensor accepts -1 and 0 (as PyTorch)."""
    if not isinstance(dim, (builtins.int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    top = builtins.max(ndim, 1)
    if not -top <= dim < top:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-top}, {top - 1}], but got {dim})")
    return builtins.int(dim) % top if ndim else 0

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


def _is_array_index(part: Any) -> bool:
    return isinstance(part, list) or (hasattr(part, "ndim") and hasattr(part, "dtype") and part.ndim > 0)


def _split_index(index: Any, ndim: builtins.int) -> tuple | None:
    """PyTorch's order for an index mixing integers with arrays: ``(basic, advanced)`` or None.

    numpy counts an integer as an advanced index, so in ``x[1, :, d]`` the ``1`` and ``d``
    are "separated by a slice" and the selected axis moves to the front. PyTorch first
    applies the integers (and slices, None, ...), then the arrays on what remains. Two
    plain numpy steps do the same: ``x[basic][advanced]``."""
    if not isinstance(index, tuple):
        return None
    has_int = any(isinstance(p, (builtins.int, np.integer)) and not isinstance(p, bool) for p in index)
    if not (has_int and any(_is_array_index(p) for p in index)):
        return None
    basic, advanced = [], []
    for part in index:
        if isinstance(part, (builtins.int, np.integer)) and not isinstance(part, bool):
            basic.append(part)  # the axis goes away: nothing left for the second step
        elif _is_array_index(part):
            # a boolean mask covers as many axes as it has dimensions
            kind = part.dtype.kind if hasattr(part, "dtype") else np.asarray(part).dtype.kind
            width = (part.ndim if hasattr(part, "ndim") else np.ndim(part)) if kind == "b" else 1
            basic.extend([slice(None)] * width)
            advanced.append(part)
        elif part is None:
            basic.append(None)
            advanced.append(slice(None))
        elif part is Ellipsis:
            basic.append(Ellipsis)
            advanced.append(Ellipsis)
        else:
            basic.append(part)
            advanced.append(slice(None))
    return tuple(basic), tuple(advanced)


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
        self._post_hooks = None
        self._counts_writes = True

    # ------------------------------------------------------------------ attributes

    @property
    def shape(self) -> Size:
        return Size(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def device(self) -> device:
        return device(self._backend.name)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def dim(self) -> int:
        return self.array.ndim

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self.shape
        if not self.ndim:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        return self.array.shape[_wrap_dim(dim, self.ndim)]

    def nelement(self) -> builtins.int:
        return builtins.int(self.array.size)

    def element_size(self) -> builtins.int:
        return self.array.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self.array.flags.c_contiguous)

    def contiguous(self) -> "Tensor":
        """This tensor when its memory is row-major already, else a row-major copy (as PyTorch)."""
        return self if self.is_contiguous() else E.Clone.apply(self)

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
        recorded in the graph, nor counted in ``p._version`` (as PyTorch: a backward that
        needs the old values then runs on the new ones). The raw backend array is ``.array``
        (what the library itself uses); users get a numpy array from ``.numpy()``.
        """
        alias = Tensor(self.array, self._backend)
        alias._counts_writes = False
        return alias

    @data.setter
    def data(self, value: "Tensor") -> None:
        if not isinstance(value, Variable):
            raise TypeError(f"Variable data has to be a tensor, but got {type(value).__name__}")
        if value._backend is not self._backend and value._backend.name != self._backend.name:
            raise RuntimeError(f"data set to a tensor on {value.device} for a tensor on {self.device}")
        self.array = value.array

    @property
    def _version(self) -> builtins.int:
        """How many in-place writes this tensor's memory has had (PyTorch's ``Tensor._version``;
        views share it). A backward whose saved tensors were written since refuses to run."""
        return autograd.version(self.array)

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
            elif isinstance(arg, (str, Backend, _Device)):
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

    def register_post_accumulate_grad_hook(self, hook: Callable[["Tensor"], None]) -> Callable[[], None]:
        """Call ``hook(self)`` after each backward pass has accumulated into ``self.grad`` (leaves only)."""
        return autograd.register_post_accumulate_grad_hook(self, hook)

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

    def _count_write(self) -> None:
        """Count an in-place write in ``_version`` (see :func:`autograd.mark_modified`)."""
        if self._counts_writes:
            autograd.mark_modified(self.array)

    def _store(self, index: Any, values: Any) -> None:
        """``array[index] = values``, counted in ``_version``."""
        self.array[index] = values
        self._count_write()

    def zero_(self) -> "Tensor":
        self._check_inplace("zero_")
        self._store(..., 0)
        return self

    def fill_(self, value: Any) -> "Tensor":
        self._check_inplace("fill_")
        self._store(..., self._value(value))
        return self

    def copy_(self, src: Any) -> "Tensor":
        self._check_inplace("copy_")
        value = self._value(src)
        if not isinstance(value, type(self.array)):
            value = _move_array(value, self._backend)
        self._store(..., value)
        return self

    def _write(self, name: str, values: Any) -> "Tensor":
        """Store ``values`` into this tensor's own storage (so ``p.data.op_()`` changes ``p``).

        As PyTorch, the result must fit this tensor's shape and be castable to its dtype
        (a float result can't go into an integer tensor)."""
        self._check_inplace(name)
        values = values.array if isinstance(values, Variable) else values
        result_dtype = getattr(values, "dtype", None)
        if result_dtype is not None and not np.can_cast(result_dtype, self.dtype, casting="same_kind"):
            raise RuntimeError(f"{name}: result type {result_dtype} can't be cast to the desired output type {self.dtype}")
        shape = getattr(values, "shape", None)
        if shape is not None and tuple(shape) != self.shape:
            try:
                broadcast = np.broadcast_shapes(tuple(shape), self.shape)
            except ValueError:
                broadcast = tuple(shape)
            if broadcast != self.shape:
                raise RuntimeError(f"{name}: output with shape {list(self.shape)} doesn't match the broadcast shape {list(broadcast)}")
        self._store(..., values)
        return self

    def _no_graph(self, fn: Callable[[], "Tensor"]) -> "Tensor":
        with autograd.no_grad():
            return fn()

    def add_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return self._write("add_", self._no_graph(lambda: self + (other * alpha if alpha != 1 else other)))

    def sub_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return self._write("sub_", self._no_graph(lambda: self - (other * alpha if alpha != 1 else other)))

    def mul_(self, other: Any) -> "Tensor":
        return self._write("mul_", self._no_graph(lambda: self * other))

    def div_(self, other: Any, *, rounding_mode: str | None = None) -> "Tensor":
        return self._write("div_", self._no_graph(lambda: self.div(other, rounding_mode=rounding_mode)))

    def pow_(self, exponent: Any) -> "Tensor":
        return self._write("pow_", self._no_graph(lambda: self ** exponent))

    def addcmul_(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> "Tensor":
        return self._write("addcmul_", self._no_graph(lambda: self + value * tensor1 * tensor2))

    def addcdiv_(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> "Tensor":
        return self._write("addcdiv_", self._no_graph(lambda: self + value * tensor1 / tensor2))

    def lerp_(self, end: Any, weight: Any) -> "Tensor":
        return self._write("lerp_", self._no_graph(lambda: self + weight * (end - self)))

    def clamp_(self, min: Any = None, max: Any = None) -> "Tensor":
        return self._write("clamp_", self._no_graph(lambda: self.clamp(min, max)))

    clip_ = clamp_

    def clamp_min_(self, min: Any) -> "Tensor":
        return self.clamp_(min=min)

    def clamp_max_(self, max: Any) -> "Tensor":
        return self.clamp_(max=max)

    def masked_fill_(self, mask: Any, value: Any) -> "Tensor":
        return self._write("masked_fill_", self._no_graph(lambda: self.masked_fill(mask, value)))

    def scatter_(self, dim: builtins.int, index: Any, src: Any = None, *, value: Any = None) -> "Tensor":
        return self._write("scatter_", self._no_graph(lambda: self.scatter(dim, index, src, value=value)))

    def scatter_add_(self, dim: builtins.int, index: Any, src: Any) -> "Tensor":
        return self._write("scatter_add_", self._no_graph(lambda: self.scatter_add(dim, index, src)))

    def _seeded(self, generator: "Generator | None") -> Any:
        return _random(self._backend) if generator is None else generator._numpy_like(self._backend)

    def uniform_(self, a: builtins.float = 0.0, b: builtins.float = 1.0, *, generator: "Generator | None" = None) -> "Tensor":
        self._check_inplace("uniform_")
        self._store(..., self._seeded(generator).uniform(a, b, self.shape).astype(self.dtype))
        return self

    def normal_(self, mean: builtins.float = 0.0, std: builtins.float = 1.0, *, generator: "Generator | None" = None) -> "Tensor":
        self._check_inplace("normal_")
        # standard_normal * std + mean: CuPy's Generator has no .normal(); same values on numpy
        self._store(..., (self._seeded(generator).standard_normal(self.shape) * std + mean).astype(self.dtype))
        return self

    def bernoulli_(self, p: builtins.float = 0.5, *, generator: "Generator | None" = None) -> "Tensor":
        self._check_inplace("bernoulli_")
        self._store(..., (self._seeded(generator).random(self.shape) < self._value(p)).astype(self.dtype))
        return self

    def random_(self, from_: builtins.int | None = None, to: builtins.int | None = None, *, generator: "Generator | None" = None) -> "Tensor":
        """Integers uniform in ``[from_, to)``; ``random_(n)`` is ``[0, n)``; ``random_()`` spans
        the integers the dtype holds exactly (as PyTorch: up to 2**24 for float32, 2**53 for float64)."""
        self._check_inplace("random_")
        if from_ is None:
            from_, to = 0, (2 ** (np.finfo(self.dtype).nmant + 1) + 1 if self.dtype.kind == "f"
                            else 2 if self.dtype.kind == "b" else builtins.int(np.iinfo(self.dtype).max))
        elif to is None:
            from_, to = 0, from_
        self._store(..., self._seeded(generator).integers(from_, to, self.shape).astype(self.dtype))
        return self

    def exponential_(self, lambd: builtins.float = 1.0, *, generator: "Generator | None" = None) -> "Tensor":
        self._check_inplace("exponential_")
        self._store(..., (-self._backend.xp.log1p(-self._seeded(generator).random(self.shape)) / lambd).astype(self.dtype))
        return self

    def _inplace_or_new(self, name: str, inplace: Callable[[], Any], new: Callable[[], "Tensor"]) -> "Tensor":
        """``x += y`` and friends: in place when no graph is being recorded for ``x`` (the
        optimizer-update case, ``with mg.no_grad(): p -= lr * p.grad``); as PyTorch, an
        error for a leaf that requires grad; otherwise a new node (the name is rebound)."""
        if not (self.requires_grad and autograd.is_grad_enabled()):
            inplace()
            self._count_write()
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
        index = _unwrap_index(index)
        steps = _split_index(index, self.ndim)
        if steps is not None:  # PyTorch's dimension order (see __getitem__); basic indexing is a view
            basic, advanced = steps
            self.array[basic][advanced] = self._value(value)
            self._count_write()
            return
        self._store(index, self._value(value))

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
        # ``other / self`` is ``self.reciprocal() * other``, as in PyTorch: the same rounding
        # (a true division differs from it in the last bit for ~1 element in 4), and the
        # node keeps 1/self, not self
        return E.Mul.apply(self.reciprocal(), other)

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

    def __floordiv__(self, other: Any) -> "Tensor":
        return self.div(other, rounding_mode="floor")

    def __rfloordiv__(self, other: Any) -> "Tensor":
        return _as_tensor(other, self).div(self, rounding_mode="floor")

    def __mod__(self, other: Any) -> "Tensor":
        return E.Remainder.apply(self, other)

    def __rmod__(self, other: Any) -> "Tensor":
        return E.Remainder.apply(other, self)

    # bitwise: integer and boolean tensors only, no gradient (as PyTorch)
    def _bitwise(self, name: str, fn: Callable, other: Any, reflected: bool = False) -> "Tensor":
        value = self._value(other)
        for operand in (self.array, value):
            kind = getattr(operand, "dtype", np.dtype(type(operand))).kind
            if kind not in "biu":
                raise TypeError(f"{name}: only integer and boolean tensors are allowed, got {getattr(operand, 'dtype', type(operand).__name__)}")
        a, b = E._promote(self.array, value)
        return Tensor(self._backend.xp.asarray(fn(b, a) if reflected else fn(a, b)), self._backend)

    def __invert__(self) -> "Tensor":
        return self._bitwise("bitwise_not", lambda a, b: ~a, self)

    def __and__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_and", lambda a, b: a & b, other)

    def __or__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_or", lambda a, b: a | b, other)

    def __xor__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_xor", lambda a, b: a ^ b, other)

    def __lshift__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_left_shift", lambda a, b: a << b, other)

    def __rshift__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_right_shift", lambda a, b: a >> b, other)

    def __rand__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_and", lambda a, b: a & b, other, reflected=True)

    def __ror__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_or", lambda a, b: a | b, other, reflected=True)

    def __rxor__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_xor", lambda a, b: a ^ b, other, reflected=True)

    def __rlshift__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_left_shift", lambda a, b: a << b, other, reflected=True)

    def __rrshift__(self, other: Any) -> "Tensor":
        return self._bitwise("bitwise_right_shift", lambda a, b: a >> b, other, reflected=True)

    bitwise_not = __invert__
    bitwise_and, bitwise_or, bitwise_xor = __and__, __or__, __xor__
    bitwise_left_shift, bitwise_right_shift = __lshift__, __rshift__

    def logical_not(self) -> "Tensor":
        return Tensor(self._backend.xp.logical_not(self.array), self._backend)

    def logical_and(self, other: Any) -> "Tensor":
        return Tensor(self._backend.xp.logical_and(self.array, self._value(other)), self._backend)

    def logical_or(self, other: Any) -> "Tensor":
        return Tensor(self._backend.xp.logical_or(self.array, self._value(other)), self._backend)

    def logical_xor(self, other: Any) -> "Tensor":
        return Tensor(self._backend.xp.logical_xor(self.array, self._value(other)), self._backend)

    def isnan(self) -> "Tensor":
        return Tensor(self._backend.xp.isnan(self.array), self._backend)

    def isinf(self) -> "Tensor":
        return Tensor(self._backend.xp.isinf(self.array), self._backend)

    def isfinite(self) -> "Tensor":
        return Tensor(self._backend.xp.isfinite(self.array), self._backend)

    def isposinf(self) -> "Tensor":
        return Tensor(self._backend.xp.isposinf(self.array), self._backend)

    def isneginf(self) -> "Tensor":
        return Tensor(self._backend.xp.isneginf(self.array), self._backend)

    def div(self, other: Any, *, rounding_mode: str | None = None) -> "Tensor":
        """True division, or with ``rounding_mode="trunc"`` / ``"floor"`` (PyTorch's ``div``).

        Rounded results have zero gradient (as PyTorch); integer inputs stay integer."""
        if rounding_mode is None:
            return E.Div.apply(self, other)
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found {rounding_mode!r}")
        other_kind = getattr(self._value(other), "dtype", np.dtype(type(other))).kind
        if self.dtype.kind in "biu" and other_kind in "biu":
            return self._integer_division(other, rounding_mode)
        quotient = E.Div.apply(self, other)
        return E.Floor.apply(quotient) if rounding_mode == "floor" else E.Trunc.apply(quotient)

    def _integer_division(self, other: Any, rounding_mode: str) -> "Tensor":
        xp = self._backend.xp
        a, b = E._promote(self.array, self._value(other))
        if xp.any(xp.asarray(b) == 0):
            raise ZeroDivisionError("ZeroDivisionError: integer division by zero")
        floor = a // b  # numpy's integer // already rounds toward -inf
        if rounding_mode == "trunc":  # toward zero: one up where the signs differ and it didn't divide evenly
            floor = floor + ((a % b != 0) & ((a < 0) != (xp.asarray(b) < 0)))
        return Tensor(xp.asarray(floor), self._backend)

    divide = true_divide = div

    def floor_divide(self, other: Any) -> "Tensor":
        return self.div(other, rounding_mode="floor")

    def remainder(self, other: Any) -> "Tensor":
        return E.Remainder.apply(self, other)

    def fmod(self, other: Any) -> "Tensor":
        """Remainder with the sign of the dividend (C's fmod): ``a - trunc(a / b) * b``."""
        if self.dtype.kind in "biu" and getattr(self._value(other), "dtype", np.dtype(type(other))).kind in "biu":
            a, b = E._promote(self.array, self._value(other))
            return Tensor(self._backend.xp.asarray(self._backend.xp.fmod(a, b)), self._backend)
        return self - self.div(other, rounding_mode="trunc") * other

    def atan2(self, other: Any) -> "Tensor":
        return E.Atan2.apply(self, other)

    arctan2 = atan2

    def add(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return E.Add.apply(self, other * alpha if alpha != 1 else other)

    def sub(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return E.Sub.apply(self, other * alpha if alpha != 1 else other)

    mul = __mul__
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

    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: DTypeLike = None) -> "Tensor":
        """Sum over ``dim``; integer and boolean sums are int64 (as PyTorch); ``dtype``
        casts the input first."""
        x = self if dtype is None else self.to(_as_dtype(dtype))
        if dtype is None and x.dtype.kind in "biu" and x.dtype != int64:
            x = x.to(int64)
        return R.Sum.apply(x, dim=dim, keepdim=keepdim)

    def nansum(self, dim: Any = None, keepdim: bool = False, *, dtype: DTypeLike = None) -> "Tensor":
        return where(self.isnan(), 0.0, self).sum(dim, keepdim, dtype=dtype) if self.is_floating_point() else self.sum(dim, keepdim, dtype=dtype)

    def prod(self, dim: builtins.int | None = None, keepdim: bool = False, *, dtype: DTypeLike = None) -> "Tensor":
        x = self if dtype is None else self.to(_as_dtype(dtype))
        if dtype is None and x.dtype.kind in "biu" and x.dtype != int64:
            x = x.to(int64)
        if dim is not None:
            dim = _wrap_dim(dim, self.ndim)
        return R.Prod.apply(x, dim=dim, keepdim=keepdim)

    def cumsum(self, dim: builtins.int, *, dtype: DTypeLike = None) -> "Tensor":
        x = self if dtype is None else self.to(_as_dtype(dtype))
        return R.Cumsum.apply(x, dim=_wrap_dim(dim, self.ndim))

    def cumprod(self, dim: builtins.int, *, dtype: DTypeLike = None) -> "Tensor":
        x = self if dtype is None else self.to(_as_dtype(dtype))
        return R.Cumprod.apply(x, dim=_wrap_dim(dim, self.ndim))

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: DTypeLike = None) -> "Tensor":
        x = self if dtype is None else self.to(_as_dtype(dtype))
        if x.dtype.kind not in "fc":
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point or "
                               f"complex dtype. Got: {x.dtype}")
        return R.Mean.apply(x, dim=dim, keepdim=keepdim)

    def var(self, dim: Any = None, keepdim: bool = False, *, correction: builtins.int = 1, unbiased: bool | None = None) -> "Tensor":
        if unbiased is not None:
            correction = 1 if unbiased else 0
        return R.Var.apply(self, dim=dim, keepdim=keepdim, correction=correction)

    def std(self, dim: Any = None, keepdim: bool = False, *, correction: builtins.int = 1, unbiased: bool | None = None) -> "Tensor":
        if unbiased is not None:
            correction = 1 if unbiased else 0
        return R.Std.apply(self, dim=dim, keepdim=keepdim, correction=correction)

    def norm(self, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: DTypeLike = None) -> "Tensor":
        """The vector p-norm over ``dim`` (all elements by default), as ``torch.norm``: ``p``
        is a number (``inf``, ``-inf`` and 0 included) or ``"fro"`` (the 2-norm of the
        elements, over at most two dims). ``dtype`` casts the input first."""
        x = self if dtype is None else self.to(_as_dtype(dtype))
        if isinstance(p, str):
            if p != "fro":
                raise ValueError(f"norm: p={p!r} is not supported: only vector norms (a number, or 'fro')")
            if dim is not None and not isinstance(dim, builtins.int) and len(dim) > 2:
                raise RuntimeError(f"norm: 'fro' takes at most two dims, got dim={tuple(dim)}")
            p = 2.0
        if isinstance(p, builtins.bool) or not isinstance(p, (builtins.int, builtins.float)):
            raise TypeError(f"norm: p must be a number or 'fro', got {type(p).__name__} {p!r}")
        if x.dtype.kind not in "fc":
            raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                               f"Got {_scalar_type_name(x.dtype)}")
        return R.VectorNorm.apply(x, ord=builtins.float(p), dim=dim, keepdim=keepdim)

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
        dim = _wrap_dim(dim, self.ndim)
        if self.ndim == 0:  # a 0-d tensor is its own extreme, at index 0 (as PyTorch)
            return MaxMin(self * 1, Tensor(self._backend.xp.zeros((), dtype=int64), self._backend))
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
        if dim is not None:
            dim = _wrap_dim(dim, self.ndim)
            if not self.ndim:
                return Tensor(self._backend.xp.zeros((), dtype=int64), self._backend)
        out = fn(self.array, axis=dim)
        if keepdim:  # with dim=None, keepdim gives every axis length 1 (as PyTorch)
            out = self._backend.xp.expand_dims(out, dim) if dim is not None else out.reshape((1,) * self.ndim)
        return Tensor(self._backend.xp.asarray(out, dtype=int64), self._backend)

    def all(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        axes = None if dim is None else R.normalize_dims(dim, self.ndim) or None
        return Tensor(self._backend.xp.asarray(self.array.all(axis=axes, keepdims=keepdim)), self._backend)

    def any(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        axes = None if dim is None else R.normalize_dims(dim, self.ndim) or None
        return Tensor(self._backend.xp.asarray(self.array.any(axis=axes, keepdims=keepdim)), self._backend)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> "Tensor":
        return R.LogSumExp.apply(self, dim=dim, keepdim=keepdim)

    def softmax(self, dim: builtins.int) -> "Tensor":
        return N.Softmax.apply(self, dim=_wrap_dim(dim, self.ndim) if self.ndim else None)

    def log_softmax(self, dim: builtins.int) -> "Tensor":
        return N.LogSoftmax.apply(self, dim=_wrap_dim(dim, self.ndim) if self.ndim else None)

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
        start, end = _wrap_dim(start_dim, len(shape)), _wrap_dim(end_dim, len(shape))
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        middle = 1
        for n in shape[start : end + 1]:
            middle *= n
        return self.reshape(shape[:start] + (middle,) + shape[end + 1 :])

    def transpose(self, dim0: builtins.int, dim1: builtins.int) -> "Tensor":
        dims = list(range(self.ndim))
        if not self.ndim:  # a 0-d tensor's transpose(0, 0) is itself (PyTorch accepts 0 and -1)
            _wrap_dim(dim0, 0), _wrap_dim(dim1, 0)
            return S.Reshape.apply(self, shape=())
        dim0, dim1 = _wrap_dim(dim0, self.ndim), _wrap_dim(dim1, self.ndim)
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return S.Permute.apply(self, dims=tuple(dims))

    def permute(self, *dims: Any) -> "Tensor":
        given = _dims(dims)
        if len(given) != self.ndim:
            raise RuntimeError(f"permute: number of dims don't match: the tensor has {self.ndim} dimensions "
                               f"(shape {self.shape}) but {len(given)} were given: {given}")
        dims = tuple(_wrap_dim(d, self.ndim) for d in given)
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
        shape.insert(_wrap_dim(dim, self.ndim + 1), 1)
        return S.Reshape.apply(self, shape=tuple(shape))

    def squeeze(self, dim: Any = None) -> "Tensor":
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            dims = {_wrap_dim(d, self.ndim) for d in ((dim,) if isinstance(dim, (builtins.int, np.integer)) else dim)}
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
        index = _unwrap_index(index)
        steps = _split_index(index, self.ndim)
        if steps is not None:  # integers first, then the arrays: PyTorch's order of dimensions
            basic, advanced = steps
            return S.GetItem.apply(S.GetItem.apply(self, index=basic), index=advanced)
        return S.GetItem.apply(self, index=index)

    def split(self, split_size_or_sections: Any, dim: builtins.int = 0) -> tuple:
        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks: builtins.int, dim: builtins.int = 0) -> tuple:
        return chunk(self, chunks, dim)

    def unbind(self, dim: builtins.int = 0) -> tuple:
        return S.Unbind.apply(self, dim=_wrap_dim(dim, self.ndim))

    def narrow(self, dim: builtins.int, start: Any, length: builtins.int) -> "Tensor":
        """``length`` elements of ``dim`` from ``start`` (a view in PyTorch; here a slice)."""
        dim = _wrap_dim(dim, self.ndim)
        start, size = builtins.int(start), self.shape[dim]
        if not -size <= start <= size:
            raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], but got {start})")
        start %= size if size else 1
        if length < 0 or start + length > size:
            raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
        return self[(slice(None),) * dim + (slice(start, start + length),)]

    def select(self, dim: builtins.int, index: builtins.int) -> "Tensor":
        dim = _wrap_dim(dim, self.ndim)
        size = self.shape[dim]
        if not -size <= index < size:
            raise IndexError(f"select(): index {index} out of range for tensor of size {list(self.shape)} at dimension {dim}")
        return self[(slice(None),) * dim + (index,)]

    def flip(self, *dims: Any) -> "Tensor":
        axes = {_wrap_dim(d, self.ndim) for d in _dims(dims)}
        return self[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(self.ndim))]

    def movedim(self, source: Any, destination: Any) -> "Tensor":
        src = [_wrap_dim(d, self.ndim) for d in ((source,) if isinstance(source, builtins.int) else source)]
        dst = [_wrap_dim(d, self.ndim) for d in ((destination,) if isinstance(destination, builtins.int) else destination)]
        order = [d for d in range(self.ndim) if d not in src]
        for d, s in sorted(zip(dst, src)):
            order.insert(d, s)
        return S.Permute.apply(self, dims=tuple(order))

    def repeat(self, *sizes: Any) -> "Tensor":
        """Tile this tensor ``sizes`` times along each dimension (``torch.Tensor.repeat``, numpy's ``tile``).

        A composite: view each axis ``n`` as ``(1, n)``, expand to ``(r, n)``, merge; the
        gradient is Expand's (a sum over the copies)."""
        sizes = _dims(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
        shape = (1,) * (len(sizes) - self.ndim) + tuple(self.shape)
        paired = builtins.sum(((1, n) for n in shape), ())
        expanded = builtins.sum(((r, n) for r, n in zip(sizes, shape)), ())
        return self.reshape(paired).expand(expanded).reshape(tuple(r * n for r, n in zip(sizes, shape)))

    def gather(self, dim: builtins.int, index: "Tensor") -> "Tensor":
        index_array = self._index_array("gather", dim, index)
        return S.Gather.apply(self, index_array, dim=_wrap_dim(dim, self.ndim))

    def scatter(self, dim: builtins.int, index: "Tensor", src: Any = None, *, value: Any = None) -> "Tensor":
        """This tensor with ``self[..., index[i, j], ...] = src[i, j]`` along ``dim`` (``value`` for a number)."""
        index_array = self._index_array("scatter", dim, index)
        if src is None:
            if value is None:
                raise TypeError("scatter() missing 'src' (a tensor) or 'value' (a number)")
            src = value
        return S.Scatter.apply(self, index_array, src, dim=_wrap_dim(dim, self.ndim))

    def scatter_add(self, dim: builtins.int, index: "Tensor", src: "Tensor") -> "Tensor":
        index_array = self._index_array("scatter_add", dim, index)
        return S.ScatterAdd.apply(self, index_array, src, dim=_wrap_dim(dim, self.ndim))

    def _index_array(self, name: str, dim: builtins.int, index: Any) -> Any:
        array = index.array if isinstance(index, Variable) else self._backend.xp.asarray(index)
        if array.dtype != int64:
            raise RuntimeError(f"{name}(): Expected dtype int64 for index, got {array.dtype}")
        if array.ndim != self.ndim:
            raise RuntimeError(f"Index tensor must have the same number of dimensions as input tensor ({array.ndim} vs {self.ndim})")
        _wrap_dim(dim, self.ndim)
        return array

    def sort(self, dim: builtins.int = -1, descending: bool = False, stable: bool = False) -> Sorted:
        """``(values, indices)`` sorted along ``dim``; ties keep their order (a stable sort, always)."""
        indices = self.argsort(dim, descending).array
        if not self.ndim:
            return Sorted(self * 1, Tensor(indices, self._backend))
        values = R.SelectAlongDim.apply(self, indices, dim=_wrap_dim(dim, self.ndim), keepdim=True)
        return Sorted(values, Tensor(indices, self._backend))

    def argsort(self, dim: builtins.int = -1, descending: bool = False, stable: bool = False) -> "Tensor":
        xp = self._backend.xp
        if not self.ndim:
            return Tensor(xp.zeros((), dtype=int64), self._backend)
        dim = _wrap_dim(dim, self.ndim)
        # a stable sort always: equal values keep their order (PyTorch's stable=True), both ways
        key = self.array
        if descending:
            key = -(key.astype(int64) if key.dtype.kind in "bu" else key)
        indices = xp.argsort(key, axis=dim, kind="stable")
        return Tensor(indices.astype(int64), self._backend)

    def topk(self, k: builtins.int, dim: builtins.int = -1, largest: bool = True, sorted: bool = True) -> TopK:
        """The ``k`` largest (or smallest) values along ``dim`` and their indices."""
        size = self.shape[_wrap_dim(dim, self.ndim)] if self.ndim else 1
        if not 0 <= k <= size:
            raise RuntimeError(f"selected index k out of range: k={k} for a dimension of size {size}")
        values, indices = self.sort(dim, descending=largest)
        if not self.ndim:
            return TopK(values, indices)
        keep = (slice(None),) * _wrap_dim(dim, self.ndim) + (slice(0, k),)
        index = indices.array[keep]
        return TopK(R.SelectAlongDim.apply(self, index, dim=_wrap_dim(dim, self.ndim), keepdim=True), Tensor(index, self._backend))

    # ------------------------------------------------------------------ composites PyTorch code often calls

    def index_select(self, dim: builtins.int, index: Any) -> "Tensor":
        index = index.array if isinstance(index, Variable) else self._backend.xp.asarray(index)
        if index.ndim > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        return self[(slice(None),) * _wrap_dim(dim, self.ndim) + (index.reshape(-1),)]

    def masked_select(self, mask: Any) -> "Tensor":
        xp = self._backend.xp
        mask = mask.array if isinstance(mask, Variable) else xp.asarray(mask)
        shape = np.broadcast_shapes(self.shape, tuple(mask.shape))
        return self.expand(shape)[xp.broadcast_to(mask, shape)]

    def mm(self, mat2: "Tensor") -> "Tensor":
        if self.ndim != 2 or mat2.ndim != 2:
            raise RuntimeError(f"mm: both arguments must be 2-D matrices, got shapes {self.shape} and {mat2.shape}")
        return matmul(self, mat2)

    def bmm(self, mat2: "Tensor") -> "Tensor":
        if self.ndim != 3 or mat2.ndim != 3 or self.shape[0] != mat2.shape[0]:
            raise RuntimeError(f"bmm: expected two 3-D tensors with the same batch size, got shapes {self.shape} and {mat2.shape}")
        return matmul(self, mat2)

    def dot(self, other: "Tensor") -> "Tensor":
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors")
        return matmul(self, other)

    def mv(self, vec: "Tensor") -> "Tensor":
        if self.ndim != 2 or vec.ndim != 1:
            raise RuntimeError(f"mv: expected a matrix and a vector, got shapes {self.shape} and {vec.shape}")
        return matmul(self, vec)

    def outer(self, vec2: "Tensor") -> "Tensor":
        return self.reshape(-1, 1) * vec2.reshape(1, -1)

    def _triangle(self, diagonal: builtins.int, upper: bool) -> "Tensor":
        if self.ndim < 2:
            raise RuntimeError(f"{'triu' if upper else 'tril'}: input tensor must have at least 2 dimensions")
        xp = self._backend.xp
        rows, cols = self.shape[-2:]
        keep = xp.triu(xp.ones((rows, cols), dtype=bool), diagonal) if upper else xp.tril(xp.ones((rows, cols), dtype=bool), diagonal)
        return where(Tensor(keep, self._backend), self, xp.zeros((), dtype=self.dtype))

    def tril(self, diagonal: builtins.int = 0) -> "Tensor":
        return self._triangle(diagonal, upper=False)

    def triu(self, diagonal: builtins.int = 0) -> "Tensor":
        return self._triangle(diagonal, upper=True)

    def trace(self) -> "Tensor":
        if self.ndim != 2:
            raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {self.ndim}")
        n = builtins.min(self.shape)
        return einsum("ii->", self[:n, :n])

    def swapaxes(self, axis0: builtins.int, axis1: builtins.int) -> "Tensor":
        return self.transpose(axis0, axis1)

    swapdims = swapaxes

    def broadcast_to(self, size: Sequence[builtins.int]) -> "Tensor":
        return self.expand(tuple(size))

    def tile(self, *dims: Any) -> "Tensor":
        dims = _dims(dims)
        return self.repeat((1,) * (self.ndim - len(dims)) + tuple(dims))

    def unflatten(self, dim: builtins.int, sizes: Sequence[builtins.int]) -> "Tensor":
        dim = _wrap_dim(dim, self.ndim)
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

    def clamp_min(self, min: Any) -> "Tensor":
        return self.clamp(min=min)

    def clamp_max(self, max: Any) -> "Tensor":
        return self.clamp(max=max)

    def lerp(self, end: Any, weight: Any) -> "Tensor":
        return self + weight * (end - self)

    def nonzero(self, *, as_tuple: bool = False) -> Any:
        found = self._backend.xp.nonzero(self.array if self.ndim else self.array.reshape(1))
        if as_tuple:
            return tuple(Tensor(i.astype(int64), self._backend) for i in found)
        return Tensor(self._backend.xp.stack(found, axis=1).astype(int64) if found else self._backend.xp.zeros((0, 0), dtype=int64), self._backend)

    def count_nonzero(self, dim: Any = None) -> "Tensor":
        return (self != 0).sum(dim)

    def addcmul(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> "Tensor":
        return self + value * tensor1 * tensor2

    def addcdiv(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> "Tensor":
        return self + value * tensor1 / tensor2

    def addmm(self, mat1: "Tensor", mat2: "Tensor", *, beta: Any = 1, alpha: Any = 1) -> "Tensor":
        product = mat1.mm(mat2)
        return (self if beta == 1 else beta * self) + (product if alpha == 1 else alpha * product)

    def subtract(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return self - (other * alpha if alpha != 1 else other)

    def negative(self) -> "Tensor":
        return -self

    def positive(self) -> "Tensor":
        return self

    def absolute(self) -> "Tensor":
        return self.abs()

    def ravel(self) -> "Tensor":
        return self.reshape(-1)

    def reshape_as(self, other: "Tensor") -> "Tensor":
        return self.reshape(other.shape)

    moveaxis = movedim

    def take_along_dim(self, indices: "Tensor", dim: builtins.int) -> "Tensor":
        index = indices.array if isinstance(indices, Variable) else self._backend.xp.asarray(indices)
        shape = tuple(np.broadcast_shapes(tuple(n if i != _wrap_dim(dim, self.ndim) else 1 for i, n in enumerate(self.shape)),
                                          tuple(n if i != _wrap_dim(dim, self.ndim) else 1 for i, n in enumerate(index.shape))))
        want = list(shape)
        want[_wrap_dim(dim, self.ndim)] = index.shape[_wrap_dim(dim, self.ndim)]
        source = list(shape)
        source[_wrap_dim(dim, self.ndim)] = self.shape[_wrap_dim(dim, self.ndim)]
        return self.expand(source).gather(dim, Tensor(self._backend.xp.broadcast_to(index, want), self._backend))

    def hypot(self, other: Any) -> "Tensor":
        return (self * self + other * other).sqrt()

    def logaddexp(self, other: Any) -> "Tensor":
        """``log(exp(a) + exp(b))`` without overflow: ``max + log1p(exp(-|a - b|))``."""
        return maximum(self, other) + (-(self - other).abs()).exp().log1p()

    def logit(self, eps: builtins.float | None = None) -> "Tensor":
        x = self if eps is None else self.clamp(eps, 1 - eps)
        return (x / (1 - x)).log()

    def xlogy(self, other: Any) -> "Tensor":
        """``self * log(other)``, 0 where ``self`` is 0 (as PyTorch)."""
        other = _as_tensor(other, self)
        return where(self == 0, 0.0, self * other.log())

    def nan_to_num(self, nan: builtins.float = 0.0, posinf: builtins.float | None = None, neginf: builtins.float | None = None) -> "Tensor":
        if not self.is_floating_point():
            return self * 1
        info = np.finfo(self.dtype)
        out = where(self.isnan(), nan, self)
        out = where(out.isposinf(), builtins.float(info.max) if posinf is None else posinf, out)
        return where(out.isneginf(), builtins.float(info.min) if neginf is None else neginf, out)

    def isclose(self, other: Any, rtol: builtins.float = 1e-05, atol: builtins.float = 1e-08, equal_nan: bool = False) -> "Tensor":
        return Tensor(self._backend.xp.isclose(self.array, self._value(other), rtol=rtol, atol=atol, equal_nan=equal_nan), self._backend)

    def allclose(self, other: Any, rtol: builtins.float = 1e-05, atol: builtins.float = 1e-08, equal_nan: bool = False) -> bool:
        return bool(self.isclose(other, rtol, atol, equal_nan).all())

    def equal(self, other: "Tensor") -> bool:
        return self.shape == other.shape and bool((self == other).all())

    def roll(self, shifts: Any, dims: Any = None) -> "Tensor":
        if dims is None:
            return self.flatten().roll(shifts, 0).reshape(self.shape)
        shifts = (shifts,) if isinstance(shifts, builtins.int) else tuple(shifts)
        dims = (dims,) if isinstance(dims, builtins.int) else tuple(dims)
        out = self
        for shift, dim in zip(shifts, dims):
            dim = _wrap_dim(dim, self.ndim)
            n = self.shape[dim]
            shift = shift % n if n else 0
            if shift:
                lead = (slice(None),) * dim
                out = cat([out[lead + (slice(n - shift, None),)], out[lead + (slice(0, n - shift),)]], dim)
        return out

    def repeat_interleave(self, repeats: Any, dim: builtins.int | None = None) -> "Tensor":
        x = self.flatten() if dim is None else self
        dim = 0 if dim is None else _wrap_dim(dim, self.ndim)
        counts = repeats.array if isinstance(repeats, Variable) else repeats
        index = self._backend.xp.repeat(self._backend.xp.arange(x.shape[dim]), counts)
        return x.index_select(dim, Tensor(index.astype(int64), self._backend))

    def diagonal(self, offset: builtins.int = 0, dim1: builtins.int = 0, dim2: builtins.int = 1) -> "Tensor":
        d1, d2 = _wrap_dim(dim1, self.ndim), _wrap_dim(dim2, self.ndim)
        rows = np.arange(builtins.max(0, -offset), self.shape[d1])
        cols = rows + offset
        keep = cols < self.shape[d2]
        rows, cols = rows[keep], cols[keep]
        moved = self.movedim((d1, d2), (-2, -1))
        return moved[..., self._backend.xp.asarray(rows), self._backend.xp.asarray(cols)]

    def diag(self, diagonal: builtins.int = 0) -> "Tensor":
        if self.ndim == 2:
            return self.diagonal(diagonal)
        if self.ndim != 1:
            raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {self.ndim}D")
        n = self.shape[0] + builtins.abs(diagonal)
        out = zeros(n, n, dtype=self.dtype, device=self._backend)
        rows = np.arange(self.shape[0]) + builtins.max(0, -diagonal)
        index = Tensor(self._backend.xp.asarray((rows * n + rows + diagonal).astype(np.int64)), self._backend)
        return out.flatten().scatter(0, index, self).reshape(n, n)

    # ------------------------------------------------------------------ new tensors like this one

    def type(self, dtype: Any = None) -> Any:
        """With no argument, PyTorch's type string (``"torch.FloatTensor"``); with a dtype
        (or such a string), this tensor cast to it."""
        if dtype is None:
            name = _TYPE_NAMES.get(self.dtype, f"torch.{self.dtype}Tensor")
            return name if self._backend.name == "cpu" else name.replace("torch.", "torch.cuda.", 1)
        if isinstance(dtype, str):
            by_name = {v: k for k, v in _TYPE_NAMES.items()}
            name = dtype.replace("torch.cuda.", "torch.")
            if name not in by_name:
                raise ValueError(f"invalid type: {dtype!r}")
            return self.to(by_name[name], device="cuda" if "cuda" in dtype else None)
        return self.to(_as_dtype(dtype))

    def new_tensor(self, data: Any, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> "Tensor":
        return tensor(data, dtype=dtype or self.dtype, device=device or self._backend, requires_grad=requires_grad)

    def new_zeros(self, *size: Any, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> "Tensor":
        return zeros(*size, dtype=dtype or self.dtype, device=device or self._backend, requires_grad=requires_grad)

    def new_ones(self, *size: Any, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> "Tensor":
        return ones(*size, dtype=dtype or self.dtype, device=device or self._backend, requires_grad=requires_grad)

    def new_empty(self, *size: Any, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> "Tensor":
        return empty(*size, dtype=dtype or self.dtype, device=device or self._backend, requires_grad=requires_grad)

    def new_full(self, size: Sequence[builtins.int], fill_value: Any, dtype: DTypeLike = None, device: DeviceLike = None, requires_grad: bool = False) -> "Tensor":
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self._backend, requires_grad=requires_grad)

    def __iter__(self):
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))


    # ------------------------------------------------------------------ copying and pickling

    def __reduce_ex__(self, protocol: builtins.int) -> tuple:
        """Pickle the values (as numpy), device, dtype and requires_grad; never the backend
        module nor the graph (as PyTorch, a pickled tensor is a leaf; its grad is not kept)."""
        return (_rebuild_tensor, (type(self), np.array(self._backend.to_host(self.array), copy=True), self._backend.name, self.requires_grad))

    def __deepcopy__(self, memo: dict) -> "Tensor":
        """A leaf copy with its own storage, ``requires_grad`` and ``.grad`` (as ``copy.deepcopy`` in PyTorch).

        Tensors that share one array (``p`` and ``p.data``) still share one after the copy."""
        if self._ctx is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                               "protocol at the moment. If you were attempting to deepcopy a module, this may be "
                               "because of a torch.nn.utils.weight_norm usage, see "
                               "https://github.com/pytorch/pytorch/pull/103001")
        key = ("microgradnn.array", id(self.array))
        array = memo.get(key)
        if array is None:
            array = memo[key] = self.array.copy()
            memo.setdefault("microgradnn.keep", []).append(self.array)  # keep id() unique while copying
        out = type(self).__new__(type(self))
        Variable.__init__(out, array, self._backend, self.requires_grad)
        memo[id(self)] = out
        if self._grad is not None:
            out._grad = self._grad.copy()
        return out

    def __copy__(self) -> "Tensor":
        return self.__deepcopy__({})


def _rebuild_tensor(cls: type, array: np.ndarray, device_name: str, requires_grad: bool) -> Tensor:
    backend = get_backend(device_name)
    out = cls.__new__(cls)
    Variable.__init__(out, _move_array(array, backend), backend, requires_grad)
    return out


# Methods made from one primitive each: float math (mg.sin(x) and x.sin()), and the steps.
for _name in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
              "log2", "log10", "log1p", "expm1", "exp2", "erf", "rsqrt", "reciprocal", "floor", "ceil", "trunc",
              "sign", "frac"):
    def _unary(self: Tensor, _op: type = getattr(E, _name.capitalize())) -> Tensor:
        return _op.apply(self)

    _unary.__name__ = _unary.__qualname__ = _name
    _unary.__doc__ = f"Elementwise {_name} (as ``torch.{_name}``)."
    setattr(Tensor, _name, _unary)
for _alias, _name in (("arcsin", "asin"), ("arccos", "acos"), ("arctan", "atan"), ("arcsinh", "asinh"),
                      ("arccosh", "acosh"), ("arctanh", "atanh"), ("fix", "trunc"), ("sgn", "sign")):
    setattr(Tensor, _alias, getattr(Tensor, _name))


def _round(self: Tensor, decimals: builtins.int = 0) -> Tensor:
    """Round half to even, to ``decimals`` places (as ``torch.round``)."""
    return E.Round.apply(self, decimals=decimals)


Tensor.round = _round
Tensor.square = lambda self: self * self
Tensor.square.__doc__ = "``x * x``."

# In-place forms, written through storage without a graph: x.exp_(), p.data.sign_() ...
for _name in ("abs", "neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sin", "cos", "tan", "asin", "acos",
              "atan", "sinh", "cosh", "log2", "log10", "log1p", "expm1", "exp2", "erf", "rsqrt", "reciprocal",
              "floor", "ceil", "trunc", "round", "sign", "frac", "square"):
    def _inplace(self: Tensor, *args: Any, _name: str = _name, **kwargs: Any) -> Tensor:
        return self._write(_name + "_", self._no_graph(lambda: getattr(self, _name)(*args, **kwargs)))

    _inplace.__name__ = _inplace.__qualname__ = _name + "_"
    setattr(Tensor, _name + "_", _inplace)
del _name, _alias

_TYPE_NAMES = {
    float32: "torch.FloatTensor", float64: "torch.DoubleTensor", float16: "torch.HalfTensor",
    int64: "torch.LongTensor", int32: "torch.IntTensor", np.dtype("int16"): "torch.ShortTensor",
    np.dtype("int8"): "torch.CharTensor", np.dtype("uint8"): "torch.ByteTensor", bool_: "torch.BoolTensor",
}



def _scalar_type_name(dtype: Any) -> str:
    """PyTorch's name for a dtype in its error messages: int64 -> "Long", float32 -> "Float"."""
    return _TYPE_NAMES.get(np.dtype(dtype), str(dtype)).replace("torch.", "").replace("Tensor", "")

def _as_tensor(value: Any, like: Tensor) -> Tensor:
    """A Python number or array as a constant tensor on ``like``'s device (for reflected operators)."""
    if isinstance(value, Variable):
        return value
    return tensor(value, device=like._backend)


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


def _creator(fill: Callable[[Any, tuple, np.dtype, Any], Any]) -> Callable[..., Tensor]:
    def create(*size: Any, generator: "Generator | None" = None, dtype: DTypeLike = None, device: DeviceLike = "cpu",
               requires_grad: bool = False) -> Tensor:
        backend = get_backend(device)
        out = Tensor(fill(backend, _dims(size), _as_dtype(dtype) if dtype is not None else get_default_dtype(), generator), backend)
        return out.requires_grad_(True) if requires_grad else out

    return create


zeros = _creator(lambda b, shape, dtype, g: b.xp.zeros(shape, dtype=dtype))
ones = _creator(lambda b, shape, dtype, g: b.xp.ones(shape, dtype=dtype))
empty = _creator(lambda b, shape, dtype, g: b.xp.empty(shape, dtype=dtype))
randn = _creator(lambda b, shape, dtype, g: _rng(b, g).standard_normal(shape).astype(dtype, copy=False))
rand = _creator(lambda b, shape, dtype, g: _rng(b, g).random(shape).astype(dtype, copy=False))
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


def randint(low: builtins.int, high: Any = None, size: Sequence[builtins.int] = (), *, generator: "Generator | None" = None,
            dtype: DTypeLike = int64, device: DeviceLike = "cpu") -> Tensor:
    """Integers uniform in ``[low, high)``: ``randint(10, (3,))`` or ``randint(2, 10, (3,))``."""
    if high is None or (isinstance(high, (tuple, list)) and size == ()):
        low, high, size = 0, low, (size if high is None else high)
    backend = get_backend(device)
    return Tensor(_rng(backend, generator).integers(low, high, tuple(size)).astype(_as_dtype(dtype)), backend)


def randperm(n: builtins.int, *, generator: "Generator | None" = None, dtype: DTypeLike = int64, device: DeviceLike = "cpu") -> Tensor:
    backend = get_backend(device)
    return Tensor(_rng(backend, generator).permutation(n).astype(_as_dtype(dtype)), backend)


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


def _rng(backend: Backend, generator: "Generator | None") -> Any:
    """The global generator of ``backend``, or the user's ``generator=``."""
    return _random(backend) if generator is None else generator._numpy_like(backend)


class Generator:
    """A random-number stream of its own (``torch.Generator``), for ``generator=`` arguments.

    ``g = mg.Generator().manual_seed(0)``; ``mg.randn(3, generator=g)``. Its state is a
    uint8 tensor (as PyTorch's), so it can go into a checkpoint with ``mg.save``. The
    numbers come from the device's own generator (``backend.generator``), not PyTorch's
    Mersenne Twister: the same seed gives a different stream than torch."""

    def __init__(self, device: DeviceLike = "cpu") -> None:
        self._backend = get_backend(device)
        self._seed = DEFAULT_SEED
        self._gen = self._backend.generator(self._seed)

    @property
    def device(self) -> _Device:
        return _Device(self._backend.name)

    def manual_seed(self, seed: builtins.int) -> "Generator":
        self._seed = builtins.int(seed)
        self._gen = self._backend.generator(self._seed)
        return self

    def seed(self) -> builtins.int:
        """Seed from the operating system's entropy; returns the seed used."""
        self.manual_seed(builtins.int(np.random.SeedSequence().entropy) % (2**63))
        return self._seed

    def initial_seed(self) -> builtins.int:
        return self._seed

    def get_state(self) -> Tensor:
        if self._backend.name != "cpu":
            raise RuntimeError("Generator.get_state: only a CPU generator's state can be read here")
        text = json.dumps({"seed": self._seed, "state": self._gen.bit_generator.state})
        return Tensor(np.frombuffer(text.encode(), dtype=np.uint8).copy(), get_backend("cpu"))

    def set_state(self, new_state: Tensor) -> "Generator":
        if self._backend.name != "cpu":
            raise RuntimeError("Generator.set_state: only a CPU generator's state can be set here")
        array = new_state.array if isinstance(new_state, Variable) else np.asarray(new_state)
        try:
            state = json.loads(bytes(np.asarray(array, dtype=np.uint8)).decode())
            seed, inner = builtins.int(state["seed"]), state["state"]
            gen = self._backend.generator(seed)
            gen.bit_generator.state = inner
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise RuntimeError(f"Generator.set_state: not a state from Generator.get_state() ({exc})") from None
        self._seed, self._gen = seed, gen
        return self

    def _numpy_like(self, backend: Backend) -> Any:
        if backend.name != self._backend.name:
            raise RuntimeError(f"Expected a '{backend.name}' device type for generator but found '{self._backend.name}'")
        return self._gen

    def __repr__(self) -> str:
        return f"<microgradnn.Generator on {self._backend.name}, initial seed {self._seed}>"


def get_rng_state() -> dict:
    """The CPU generator's state as plain data (JSON-serialisable), for checkpoints."""
    return {"seed": _seed, "state": _random(get_backend("cpu")).bit_generator.state}


def set_rng_state(state: dict) -> None:
    manual_seed(state["seed"])
    _random(get_backend("cpu")).bit_generator.state = state["state"]


# ---------------------------------------------------------------------- data-parallel draws
# Under data parallelism each rank holds rows start:start+n of every global batch. For
# dropout to give one process's numbers, every rank keeps one process's random stream (the
# same seed and the same draws in the same order) and, where a draw has one row per example,
# draws the whole global batch's rows and keeps its own. Each rank then pays for (N-1)/N more
# random numbers than it uses; the arithmetic is unchanged.
_batch_rows: tuple[builtins.int, builtins.int] | None = None  # (global batch size, this rank's first row)


class batch_shard:
    """``with batch_shard(global_batch_size, start):`` per-example random draws (dropout masks)
    made inside are the rows ``start:start+n`` of the draw one process makes for the whole
    global batch, so N data-parallel ranks see the masks one process would."""

    def __init__(self, global_batch_size: builtins.int, start: builtins.int) -> None:
        if not 0 <= start <= global_batch_size:
            raise ValueError(f"batch_shard: start must be in [0, {global_batch_size}], got {start}")
        self.rows = (builtins.int(global_batch_size), builtins.int(start))
        self._outer: Any = None

    def __enter__(self) -> "batch_shard":
        global _batch_rows
        self._outer, _batch_rows = _batch_rows, self.rows
        return self

    def __exit__(self, *exc: Any) -> None:
        global _batch_rows
        _batch_rows = self._outer


def rand_rows(shape: Sequence[builtins.int], batch_dim: builtins.int, dtype: DTypeLike = None,
              device: DeviceLike = "cpu") -> Tensor:
    """``rand(*shape)`` whose axis ``batch_dim`` runs over the examples of a batch.

    Outside :class:`batch_shard` this is exactly ``rand``; inside it, the rows of this
    rank's shard of the global draw (see above)."""
    if _batch_rows is None:
        return rand(*shape, dtype=dtype, device=device)
    total, start = _batch_rows
    shape = tuple(shape)
    rows = shape[batch_dim]
    if start + rows > total:
        raise ValueError(f"rand_rows: rows {start}:{start + rows} lie outside the global batch of {total}")
    full_draw = rand(*shape[:batch_dim], total, *shape[batch_dim + 1:], dtype=dtype, device=device)
    index = (slice(None),) * (batch_dim % len(shape)) + (slice(start, start + rows),)
    return Tensor(full_draw.array[index], full_draw._backend)


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
    if ndim == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = _wrap_dim(dim, ndim)
    for t in tensors[1:]:
        if t.ndim != ndim or any(t.shape[i] != tensors[0].shape[i] for i in range(ndim) if i != d):
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {dim}: got shapes {[x.shape for x in tensors]}")
    return S.Cat.apply(*tensors, dim=d)


def stack(tensors: Sequence[Tensor], dim: builtins.int = 0) -> Tensor:
    tensors = _check_tensors("stack", tensors)
    if any(t.shape != tensors[0].shape for t in tensors):
        raise RuntimeError(f"stack expects each tensor to be equal size, got shapes {[t.shape for t in tensors]}")
    return S.Stack.apply(*tensors, dim=_wrap_dim(dim, tensors[0].ndim + 1))


def split(x: Tensor, split_size_or_sections: Any, dim: builtins.int = 0) -> tuple:
    dim = _wrap_dim(dim, x.ndim)
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
    dim = _wrap_dim(dim, x.ndim)
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


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation (``torch.einsum``): ``einsum("bij,bjk->bik", a, b)``.

    Accepts ``...`` and the implicit form (no ``->``: the letters used once, sorted). The
    equation is first rewritten with a letter for every axis, then one primitive
    (:class:`ops.linalg.Einsum`) runs it; its gradient is itself an einsum."""
    import string

    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise ValueError("einsum(): more operands were provided than specified in the equation" if len(operands) > len(inputs)
                         else "einsum(): fewer operands were provided than specified in the equation")
    letters = set(equation) - set(".,->")
    if any(c not in string.ascii_letters for c in letters):
        raise ValueError(f"einsum(): invalid subscript given at index in the equation string {equation!r}: "
                         "subscripts must be in [a-zA-Z]")
    spare = [c for c in string.ascii_letters if c not in letters]
    widest = 0
    for subs, op in zip(inputs, operands):
        if "..." in subs:
            widest = builtins.max(widest, op.ndim - (len(subs) - 3))
    ellipsis = "".join(spare[:widest])
    explicit = []
    for i, (subs, op) in enumerate(zip(inputs, operands)):
        if "..." in subs:
            subs = subs.replace("...", ellipsis[widest - (op.ndim - (len(subs) - 3)):])
        if len(subs) != op.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(subs)}) does not match the "
                               f"number of dimensions ({op.ndim}) for operand {i} and no ellipsis was given")
        explicit.append(subs)
    if arrow:
        out = rhs.replace("...", ellipsis)
    else:
        counts = "".join(explicit)
        out = ellipsis + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in ellipsis))
    return L.Einsum.apply(*operands, equation=",".join(explicit) + "->" + out)


def linspace(start: Any, end: Any, steps: builtins.int, *, dtype: DTypeLike = None, device: DeviceLike = "cpu",
             requires_grad: bool = False) -> Tensor:
    backend = get_backend(device)
    out = Tensor(backend.xp.linspace(start, end, steps).astype(_as_dtype(dtype) if dtype is not None else get_default_dtype()), backend)
    return out.requires_grad_(True) if requires_grad else out


def eye(n: builtins.int, m: builtins.int | None = None, *, dtype: DTypeLike = None, device: DeviceLike = "cpu",
        requires_grad: bool = False) -> Tensor:
    backend = get_backend(device)
    out = Tensor(backend.xp.eye(n, m, dtype=_as_dtype(dtype) if dtype is not None else get_default_dtype()), backend)
    return out.requires_grad_(True) if requires_grad else out


def as_tensor(data: Any, dtype: DTypeLike = None, device: DeviceLike = None) -> Tensor:
    """``data`` itself when it is a tensor of that dtype and device already, else :func:`tensor` (sharing
    a numpy array's memory where it can, as ``torch.as_tensor``)."""
    if isinstance(data, Variable) and (dtype is None or _as_dtype(dtype) == data.dtype) and (
            device is None or get_backend(device) is data._backend):
        return data
    if isinstance(data, np.ndarray) and (device is None or str(device) == "cpu") and (dtype is None or _as_dtype(dtype) == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device if device is not None else "cpu")


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> builtins.int:
    return input.numel()


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    tensors = [t.reshape(1) if t.ndim == 0 else t for t in _check_tensors("hstack", tensors)]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in _check_tensors("vstack", tensors)], 0)


def meshgrid(*tensors: Any, indexing: str = "ij") -> tuple:
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    swap = indexing == "xy" and len(tensors) >= 2
    order = [1, 0] + list(range(2, len(tensors))) if swap else list(range(len(tensors)))
    shape = tuple(tensors[i].numel() for i in order)
    grids = []
    for k, t in enumerate(tensors):
        position = order.index(k)
        view = [1] * len(tensors)
        view[position] = t.numel()
        grids.append(t.reshape(view).expand(shape))
    return tuple(grids)


def atan2(input: Tensor, other: Any) -> Tensor:
    return E.Atan2.apply(input, other)


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    if not isinstance(input, Variable):
        input = tensor(input, device=other._backend)
    return input.div(other, rounding_mode=rounding_mode)
