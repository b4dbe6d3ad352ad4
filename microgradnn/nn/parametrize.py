"""Parametrizations: a module's tensor computed from a stored original at every access,
as PyTorch's ``torch.nn.utils.parametrize`` (same attribute and state_dict key names).

It lives apart from :mod:`.module` because a parametrized module holds its
parametrizations in a :class:`~microgradnn.nn.ModuleDict` (:mod:`.layers`), which is
itself a Module: module <- layers <- parametrize, no cycle.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..autograd import no_grad
from ..tensor import Tensor, _move_array, tensor
from .layers import ModuleDict
from .module import Module, is_parametrized

__all__ = ["ParametrizationList", "register_parametrization", "remove_parametrizations", "is_parametrized"]


# ============================================================================ parametrization
#
# A parametrization makes a module's tensor a *function* of a stored original:
#
#     register_parametrization(layer, "weight", fn)      # fn: a Module, fn(original) -> tensor
#     layer.weight                                       # == fn(original), recomputed each access
#     layer.parametrizations.weight.original             # the stored Parameter
#
# This is PyTorch's ``torch.nn.utils.parametrize`` (same attribute and state_dict key
# names: ``parametrizations.weight.original``, ``parametrizations.weight.0.<fn's params>``).
# Because the layer reads ``self.weight`` at forward time, it uses the effective weight
# without any change to its code: the fused RNN kernels, Linear and Embedding all do.
# Fine-tuning uses it for LoRA (W + B A), IA3 (diag(s) W) and AdaLoRA; gradients flow
# through ``fn`` into both the original (if it trains) and fn's own parameters.


class ParametrizationList(Module):
    """The parametrizations of one tensor, applied in order to ``original``.

    Children are named "0", "1", ... (the order they were registered in)."""

    def __init__(self, original: Tensor, is_parameter: bool) -> None:
        super().__init__()
        if is_parameter:
            self.original = original
        else:
            self.register_buffer("original", original)
        object.__setattr__(self, "is_parameter", is_parameter)

    def __len__(self) -> int:
        return sum(1 for n in self._modules if n.isdigit())

    def __iter__(self) -> Iterator[Module]:
        return (m for n, m in self._modules.items() if n.isdigit())

    def __getitem__(self, index: int) -> Module:
        return list(self)[index]

    def append(self, fn: Module) -> None:
        self.add_module(str(len(self)), fn)

    def forward(self) -> Tensor:
        x = self.original
        for fn in self:
            x = fn(x)
        return x

    def right_inverse(self, value: Any) -> None:
        """Set ``original`` so that ``forward()`` gives ``value``: each parametrization's
        ``right_inverse`` in reverse order (the identity for one that has none)."""
        value = value if isinstance(value, Tensor) else tensor(value)
        with no_grad():
            for fn in reversed(list(self)):
                inverse = getattr(fn, "right_inverse", None)
                if inverse is not None:
                    value = inverse(value)
            if tuple(value.shape) != tuple(self.original.shape):
                raise ValueError(f"cannot assign a tensor of shape {tuple(value.shape)} to a parametrized tensor "
                                 f"whose original has shape {tuple(self.original.shape)}")
            self.original._store(..., _move_array(value.array, self.original._backend).astype(self.original.dtype, copy=False))


def register_parametrization(module: Module, tensor_name: str, parametrization: Module, *,
                             unsafe: bool = False) -> Module:
    """Make ``module.<tensor_name>`` be ``parametrization(original)``, computed at each access.

    ``tensor_name`` must be a parameter or buffer of ``module`` (or already parametrized:
    then ``parametrization`` is chained after the existing ones). The original moves to
    ``module.parametrizations.<tensor_name>.original`` keeping its object identity, so an
    optimizer holding it still works. Unless ``unsafe``, the parametrization is checked once
    to keep the tensor's shape and dtype (a layer relies on both)."""
    if not isinstance(parametrization, Module):
        raise TypeError(f"register_parametrization: the parametrization must be a Module, got {type(parametrization).__name__}")
    if is_parametrized(module, tensor_name):
        plist = module.parametrizations._modules[tensor_name]
        with no_grad():
            before = getattr(module, tensor_name)
        plist.append(parametrization)
    else:
        if tensor_name in module._parameters and module._parameters[tensor_name] is not None:
            original, is_parameter = module._parameters[tensor_name], True
            position = list(module._parameters).index(tensor_name)
        elif tensor_name in module._buffers and module._buffers[tensor_name] is not None:
            original, is_parameter = module._buffers[tensor_name], False
            position = list(module._buffers).index(tensor_name)
        else:
            names = [n for n, v in list(module._parameters.items()) + list(module._buffers.items()) if v is not None]
            raise AttributeError(f"register_parametrization: {type(module).__name__} has no parameter or buffer "
                                 f"{tensor_name!r}; it has {names}")
        before = original
        plist = ParametrizationList(original, is_parameter)
        object.__setattr__(plist, "position", position)  # where to put the tensor back on removal
        plist.append(parametrization)
        if "parametrizations" not in module._modules:
            module.add_module("parametrizations", ModuleDict())
        (module._parameters if is_parameter else module._buffers).pop(tensor_name)
        module._non_persistent.discard(tensor_name)
        module.parametrizations._modules[tensor_name] = plist
    if not unsafe:
        with no_grad():
            after = getattr(module, tensor_name)
        if tuple(after.shape) != tuple(before.shape) or after.dtype != before.dtype:
            if len(plist) == 1:  # undo, so a failed registration leaves the module as it was
                remove_parametrizations(module, tensor_name, leave_parametrized=False)
            else:
                plist._modules.pop(str(len(plist) - 1))
            raise ValueError(f"register_parametrization: {type(parametrization).__name__} changes {tensor_name!r} from "
                             f"shape {tuple(before.shape)} {before.dtype} to {tuple(after.shape)} {after.dtype} "
                             "(pass unsafe=True if that is intended)")
    return module


def remove_parametrizations(module: Module, tensor_name: str, leave_parametrized: bool = True) -> Module:
    """Undo :func:`register_parametrization` for ``tensor_name``.

    ``leave_parametrized=True`` keeps the current *effective* value as a plain parameter
    (this is how LoRA and IA3 are merged into the weights); ``False`` puts the original
    back unchanged. The tensor returns to its old place in the module's ordering (exactly
    so when several are removed in the reverse order of registration)."""
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"remove_parametrizations: {type(module).__name__}.{tensor_name} is not parametrized")
    plists = module.parametrizations
    plist = plists._modules[tensor_name]
    original = plist.original
    if leave_parametrized:
        with no_grad():
            value = plist()
        original.array = value.array.copy() if value.array is original.array else value.array
    del plists._modules[tensor_name]
    if not plists._modules:
        del module._modules["parametrizations"]
    store = module._parameters if plist.is_parameter else module._buffers
    items = list(store.items())
    items.insert(min(getattr(plist, "position", len(items)), len(items)), (tensor_name, original))
    store.clear()
    store.update(items)
    return module
