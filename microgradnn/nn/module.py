"""``Module`` and ``Parameter``: PyTorch's way of organising a model.

A Module owns Parameters (tensors to train), buffers (tensors to keep but not train) and
child Modules, found by assigning them as attributes. Names are dotted paths
(``rnn.weight_ih_l0``), the same ones PyTorch uses, so a PyTorch ``state_dict`` loads
into the equivalent microgradnn model unchanged.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator

import numpy as np

from ..autograd import no_grad
from ..backend import get_backend
from ..tensor import Tensor, _as_dtype, _move_array, tensor

__all__ = [
    "Module", "Parameter", "IncompatibleKeys", "StateDictError",
    "is_parametrized",
]


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default)."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True):
        if data is None:
            data = tensor([])
        elif not isinstance(data, Tensor):
            data = tensor(data)
        super().__init__(data.array, data._backend)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(RuntimeError):
    """``load_state_dict`` found missing, unexpected or mis-shaped keys."""


def _as_array(value: Any) -> Any:
    """An array from a numpy/cupy array, a microgradnn tensor or a torch tensor (duck-typed:
    torch is never imported here)."""
    if isinstance(value, Tensor):
        return value.array
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return value


class Module:
    """Base class of every layer and model. Subclasses define ``forward``."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    # ------------------------------------------------------------------ registration

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called (call super().__init__() first)")
        if is_parametrized(self, name) and not isinstance(value, Module):
            # ``layer.weight = t`` on a parametrized weight writes the *original* tensor
            # (through each parametrization's ``right_inverse`` where it has one), as PyTorch.
            self._modules["parametrizations"]._modules[name].right_inverse(value)
            return
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
        elif name in self._buffers and (value is None or isinstance(value, Tensor)):
            self._buffers[name] = value
        elif name in self._parameters and value is None:
            self._parameters[name] = None
        else:
            self._forget(name)
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: look in the registries
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        # A parametrized tensor is computed from its original at every access (see
        # register_parametrization below): layers that read ``self.weight`` see the
        # effective weight without knowing it is parametrized.
        plist = d.get("_modules", {}).get("parametrizations")
        if plist is not None and name in plist._modules:
            return plist._modules[name]()
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: "Parameter | None") -> None:
        if param is None:
            self._parameters[name] = None
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, value: "Tensor | None", persistent: bool = True) -> None:
        """A tensor saved in ``state_dict`` (when persistent) and moved by ``to()``, but not trained."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        self._modules[name] = module
        self.__dict__.pop(name, None)

    register_module = add_module

    # ------------------------------------------------------------------ forward

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pre_hooks = self.__dict__.get("_forward_pre_hooks")
        if pre_hooks:
            for hook in list(pre_hooks.values()):
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def register_forward_hook(self, hook: Callable[["Module", tuple, Any], Any]) -> Callable[[], None]:
        key = id(hook)
        self._forward_hooks[key] = hook
        return lambda: self._forward_hooks.pop(key, None)

    def register_forward_pre_hook(self, hook: Callable[["Module", tuple], Any]) -> Callable[[], None]:
        """``hook(module, args)`` runs before ``forward``; it may return replacement args (a
        tuple, or a single value for a one-argument forward). Returns a remover, as
        :meth:`register_forward_hook`."""
        key = id(hook)
        self._forward_pre_hooks[key] = hook
        return lambda: self._forward_pre_hooks.pop(key, None)

    # ------------------------------------------------------------------ traversal

    def named_modules(self, memo: set | None = None, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, child in self._modules.items():
            if child is not None:
                yield name, child

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, store: str, prefix: str, recurse: bool) -> Iterator[tuple[str, Any]]:
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, store).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        mod = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule {part!r} (looking up {target!r})")
            mod = mod._modules[part]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        module_path, _, name = target.rpartition(".")
        mod = self.get_submodule(module_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter {name!r} (looking up {target!r})")
        return mod._parameters[name]

    # ------------------------------------------------------------------ modes and gradients

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p._grad = None
            elif p._grad is not None:
                p._grad[...] = 0

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ device and dtype

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> "Module":
        """Move and/or cast every parameter and buffer in place (floating-point ones only for dtype)."""
        for arg in args:
            if isinstance(arg, str) or hasattr(arg, "xp"):
                device = arg
            else:
                dtype = arg
        backend = get_backend(device) if device is not None else None
        dtype = _as_dtype(dtype) if dtype is not None else None
        for t in list(self.parameters()) + list(self.buffers()):
            _retarget(t, backend, dtype)
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self) -> "Module":
        return self.to("cuda")

    def double(self) -> "Module":
        return self.to(dtype=np.float64)

    def float(self) -> "Module":
        return self.to(dtype=np.float32)

    # ------------------------------------------------------------------ state dict

    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, Any]":
        """Every parameter and persistent buffer by dotted name, as plain arrays (Tensors if ``keep_vars``)."""
        out: OrderedDict[str, Any] = OrderedDict()
        for mod_prefix, mod in self.named_modules(prefix=prefix.rstrip(".")):
            for store in ("_parameters", "_buffers"):
                for name, value in getattr(mod, store).items():
                    if value is None or (store == "_buffers" and name in mod._non_persistent):
                        continue
                    key = f"{mod_prefix}.{name}" if mod_prefix else name
                    out[key] = value if keep_vars else value.array
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into this model's parameters and buffers.

        Accepts arrays, microgradnn tensors or torch tensors. With ``strict`` every key
        must match; either way a shape mismatch is an error. One error lists every
        problem at once."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        arrays = {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            array = _as_array(state_dict[key])
            shape = tuple(getattr(array, "shape", np.shape(array)))
            if shape != target.shape:
                mismatched.append(f"{key}: checkpoint has shape {shape}, the model has {target.shape}")
            else:
                arrays[key] = array
        problems = []
        if mismatched:
            problems.append("size mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise StateDictError(f"error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(problems))
        with no_grad():
            for key, array in arrays.items():
                target = own[key]
                target._store(..., _move_array(array, target._backend).astype(target.dtype, copy=False))
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ display

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {child_repr}")
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"

    def summary(self, *example_inputs: Any, **example_kwargs: Any) -> str:
        """A table of every submodule: output shape (when example inputs are given), parameter
        count, and whether its parameters train or are frozen."""
        shapes: dict[int, str] = {}
        removers = []
        if example_inputs or example_kwargs:
            for _, m in self.named_modules():
                removers.append(m.register_forward_hook(lambda mod, args, out: shapes.__setitem__(id(mod), _shape_of(out))))
            try:
                with no_grad():
                    self(*example_inputs, **example_kwargs)
            finally:
                for remove in removers:
                    remove()
        rows = []
        for name, m in self.named_modules():
            own = [p for p in m._parameters.values() if p is not None]
            count = sum(p.numel() for p in own)
            trainable = sum(p.numel() for p in own if p.requires_grad)
            state = "-" if not own else "trainable" if trainable == count else "frozen" if trainable == 0 else "partly frozen"
            rows.append((name or "(model)", type(m).__name__, shapes.get(id(m), ""), f"{count:,}", state))
        total = sum(p.numel() for p in self.parameters())
        train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        headers = ("layer", "type", "output shape", "params", "train")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*headers), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*r) for r in rows]
        lines.append(f"total parameters: {total:,}  trainable: {train:,}  frozen: {total - train:,}")
        return "\n".join(lines)

    def parameter_names(self, pattern: str) -> list[str]:
        """Names of parameters matching a glob (``"rnn.weight_*_l0"``)."""
        return [n for n, _ in self.named_parameters() if fnmatch.fnmatchcase(n, pattern)]


def _shape_of(out: Any) -> str:
    if isinstance(out, Tensor):
        return str(tuple(out.shape))
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(_shape_of(o) for o in out) + ")"
    return type(out).__name__


def _retarget(t: Tensor, backend: Any, dtype: Any) -> None:
    """Move/cast a parameter or buffer in place, so references to it (an optimizer's) stay valid."""
    data = t.array
    if dtype is not None and data.dtype.kind == "f":
        data = data.astype(dtype)
        if t._grad is not None:
            t._grad = t._grad.astype(dtype)
    if backend is not None and backend is not t._backend:
        data = _move_array(data, backend)
        if t._grad is not None:
            t._grad = _move_array(t._grad, backend)
        t._backend = backend
    t.array = data


def is_parametrized(module: Module, tensor_name: str | None = None) -> bool:
    """Whether ``module`` has any parametrization (or one on ``tensor_name``)."""
    plists = module.__dict__.get("_modules", {}).get("parametrizations")
    if plists is None:
        return False
    return True if tensor_name is None else tensor_name in plists._modules
