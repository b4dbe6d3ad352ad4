"""Basic layers with PyTorch's signatures, defaults, parameter names and initialisation.

Each layer is a thin Module around one or two tensor ops: the gradients come from the ops,
so a layer never writes a backward of its own.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Iterable, Iterator, Mapping

from ..autograd import no_grad
from ..tensor import Tensor, empty, rand
from .module import Module, Parameter

__all__ = [
    "Identity", "Linear", "Embedding", "Dropout",
    "Sequential", "ModuleList", "ModuleDict",
    "Tanh", "Sigmoid", "ReLU", "GELU",
]


class Identity(Module):
    """Returns its input unchanged; a placeholder that keeps a model's structure."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features).

    Initialised as PyTorch does: weight and bias uniform in ±1/sqrt(in_features)
    (kaiming-uniform with a=sqrt(5) works out to exactly this bound for the weight).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device or "cpu"))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device or "cpu"))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @no_grad()
    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        self.weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.uniform_(-bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        from ..tensor import linear

        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` (num_embeddings, embedding_dim) is token i's vector.

    ``padding_idx``: that row starts at zero and never receives a gradient, as in PyTorch.
    Weights are drawn from N(0, 1), PyTorch's default.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx={padding_idx} must be within num_embeddings={num_embeddings}")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype, device=device or "cpu"))
        self.reset_parameters()

    @no_grad()
    def reset_parameters(self) -> None:
        self.weight.normal_(0.0, 1.0)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input: Tensor) -> Tensor:
        from .. import ops

        embedding = getattr(ops.nn, "embedding", None)
        if embedding is not None:  # the fused primitive (scatter-add backward kernel)
            return embedding(input, self.weight, self.padding_idx)
        out = self.weight[input]
        return out

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Dropout(Module):
    """Zeroes each element with probability ``p`` in training and scales the rest by 1/(1-p)
    (inverted dropout), so evaluation needs no rescaling."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be between 0 and 1, got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return input
        if self.p == 1.0:
            return input * 0.0
        keep = rand(*input.shape, dtype=input.dtype, device=input.device) >= self.p
        return input * (keep.to(input.dtype) * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Activation(Module):
    method = ""

    def forward(self, input: Tensor) -> Tensor:
        return getattr(input, self.method)()


class Tanh(_Activation):
    method = "tanh"


class Sigmoid(_Activation):
    method = "sigmoid"


class ReLU(_Activation):
    method = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()


class GELU(Module):
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return input.gelu(approximate=self.approximate)


class Sequential(Module):
    """Calls its children in order; children are named "0", "1", ... or by an OrderedDict."""

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return modules[index]

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input: Any) -> Any:
        for module in self._modules.values():
            input = module(input)
        return input


class ModuleList(Module):
    """A list of Modules whose parameters the parent sees (a plain list would hide them)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        for module in modules or ():
            self.append(module)

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Any:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[index]

    def __setitem__(self, index: int, module: Module) -> None:
        name = list(self._modules.keys())[index]
        self.add_module(name, module)


class ModuleDict(Module):
    """A dict of Modules whose parameters the parent sees."""

    def __init__(self, modules: Mapping[str, Module] | None = None) -> None:
        super().__init__()
        for name, module in (modules or {}).items():
            self.add_module(name, module)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()
