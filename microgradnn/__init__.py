"""microgradnn: an autograd engine and teaching framework for recurrent networks.

``import microgradnn as mg`` gives a PyTorch-shaped API::

    x = mg.randn(3, 4, requires_grad=True)
    loss = (x.tanh() ** 2).sum()
    loss.backward()
    x.grad

and ``mg.Value``, the scalar engine small enough to read in one sitting.
"""

from __future__ import annotations

from typing import Any as _Any

from . import autograd, backend, ops
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import DeviceError, cuda_is_available
from .dtypes import ALIASES as _ALIASES
from .dtypes import bool_, float16, float32, float64, int8, int16, int32, int64, uint8
from .gradcheck import GradcheckError, gradcheck
from .checkpoint import CheckpointError, CheckpointNotFoundError, load, save
from . import nn, optim
from . import distributed  # mg.distributed: MPI is loaded by init_process_group only
from .scalar import Value
from .tensor import (
    Generator,
    Size,
    Tensor,
    as_tensor,
    atan2,
    device,
    eye,
    hstack,
    is_tensor,
    linspace,
    meshgrid,
    numel,
    vstack,
    div,
    einsum,
    arange,
    cat,
    chunk,
    cross_entropy,
    empty,
    empty_like,
    from_numpy,
    full,
    full_like,
    get_default_dtype,
    get_rng_state,
    initial_seed,
    linear,
    manual_seed,
    matmul,
    maximum,
    minimum,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    set_default_dtype,
    set_rng_state,
    split,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

from . import utils  # noqa: E402  mg.utils.data: datasets, samplers, DataLoader

globals().update(_ALIASES)  # mg.float, mg.long, mg.bool ... as in torch


def _method(name: str):
    def fn(input: Tensor, *args: _Any, **kwargs: _Any) -> _Any:
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``mg.{name}(x, ...)`` is ``x.{name}(...)``."
    return fn


# Functional forms of Tensor methods: mg.exp(x), mg.sum(x, dim=1), mg.max(x, 0) ...
for _name in (
    "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "clamp", "clip", "neg",
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp", "norm",
    "softmax", "log_softmax", "reshape", "transpose", "permute", "unsqueeze", "squeeze",
    "flatten", "unbind", "clone", "detach",
    # float math and steps
    "sin", "cos", "tan", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh", "asinh", "acosh",
    "atanh", "log2", "log10", "log1p", "expm1", "exp2", "erf", "rsqrt", "reciprocal", "square", "floor", "ceil",
    "round", "trunc", "fix", "frac", "sign", "sgn", "isnan", "isinf", "isfinite", "isposinf", "isneginf",
    "remainder", "fmod", "floor_divide", "true_divide", "divide",
    "logical_not", "logical_and", "logical_or", "logical_xor",
    "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift",
    # reductions, sorting, cumulative
    "prod", "nansum", "cumsum", "cumprod", "any", "all", "sort", "argsort", "topk",
    # shape and indexing
    "narrow", "select", "flip", "movedim", "gather", "scatter", "scatter_add",
    "index_select", "masked_select", "mm", "bmm", "dot", "mv", "outer", "tril", "triu", "trace", "swapaxes",
    "swapdims", "broadcast_to", "tile", "unflatten", "clamp_min", "clamp_max", "lerp", "nonzero", "count_nonzero",
    "addcmul", "addcdiv", "addmm", "subtract", "negative", "positive", "absolute", "ravel", "moveaxis",
    "take_along_dim", "hypot", "logaddexp", "logit", "xlogy", "nan_to_num", "isclose", "allclose", "equal", "roll",
    "repeat_interleave", "diagonal", "diag", "add", "sub", "mul", "pow", "t", "is_floating_point",
):
    globals()[_name] = _method(_name)
del _name


def __getattr__(name: str) -> _Any:
    # `mg.viz` on first use: it imports rich, which `import microgradnn` need not pay for.
    if name in ("viz", "onnx"):  # mg.onnx: loaded on first use, like mg.viz
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'microgradnn' has no attribute {name!r}")
