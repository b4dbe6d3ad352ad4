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
    Tensor,
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
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp",
    "softmax", "log_softmax", "reshape", "transpose", "permute", "unsqueeze", "squeeze",
    "flatten", "unbind", "clone", "detach",
):
    globals()[_name] = _method(_name)
del _name


def __getattr__(name: str) -> _Any:
    # `mg.viz` on first use: it imports rich, which `import microgradnn` need not pay for.
    if name == "viz":
        import importlib

        return importlib.import_module(".viz", __name__)
    raise AttributeError(f"module 'microgradnn' has no attribute {name!r}")
