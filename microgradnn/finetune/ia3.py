"""``ia3``: learned per-unit scaling of pre-activations (Liu et al. 2022, "(IA)^3"),
carried over to recurrent layers.

IA3 multiplies chosen activations by a learned vector that starts at 1. In a recurrent
layer the natural place is each gate's pre-activation: for the LSTM

    i = sigmoid(s_i * (W_ii x + b_ii + W_hi h + b_hi))       (likewise f, g, o)

one scale per gate and unit, 4H numbers per layer and direction. Because
``s * (W x + b) = (diag(s) W) x + s b``, scaling the pre-activation is the same as scaling
the *rows* of ``weight_ih``, ``weight_hh`` and both biases by the same vector. So IA3 is
done with parametrizations of those four tensors (sharing one scale), the fused kernels
run unchanged, and merging is exact: the merged rows are the very products the
fine-tuned model computed. (It holds for the GRU's candidate gate too, where the reset
gate multiplies ``W_hn h + b_hn``: ``s * (a + r * b) = s*a + r * (s*b)``.)

On a Linear layer the scale multiplies its outputs: the rows of ``weight`` and ``bias``.
"""

from __future__ import annotations

from ..autograd import no_grad
from ..nn.layers import Linear
from ..nn.module import Module, Parameter
from ..nn.parametrize import register_parametrization, remove_parametrizations
from ..nn.rnn import Recurrent, RNNBase, RNNCellBase
from ..tensor import Tensor, ones
from .base import FinetuneError, Strategy, _as_list, _module_names, match_globs

__all__ = ["IA3", "RowScale"]


class RowScale(Module):
    """``W -> diag(scale) W`` (a bias: ``scale * b``).

    Several tensors share one scale; only the first RowScale registers it as its
    parameter (so it is trained, saved and counted once); the others hold a plain
    reference to the same Parameter."""

    def __init__(self, scale: Parameter, owner: bool) -> None:
        super().__init__()
        if owner:
            self.scale = scale
        else:
            object.__setattr__(self, "_shared_scale", scale)

    def _scale(self) -> Parameter:
        return self._parameters["scale"] if "scale" in self._parameters else self.__dict__["_shared_scale"]

    def forward(self, x: Tensor) -> Tensor:
        s = self._scale()
        return x * s.unsqueeze(1) if x.ndim == 2 else x * s


def _groups(module: Module) -> list[list[str]]:
    """Tensor names of ``module`` that share one scale vector (the first is a weight)."""
    if isinstance(module, RNNBase):
        return [[n for n in names if not n.startswith("weight_hr")] for names in module._all_weights]
    if isinstance(module, RNNCellBase):
        return [[n for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if module._parameters.get(n) is not None]]
    if isinstance(module, Linear):
        return [["weight"] + (["bias"] if module._parameters.get("bias") is not None else [])]
    return []


class IA3(Strategy):
    """Learned per-unit scales (initialised to 1) of the gate pre-activations of the
    recurrent layers, and of the outputs of Linear layers, chosen by ``modules``.

    Args:
        modules: globs over module names: ``RNN``/``LSTM``/``GRU`` layers, the built-in
            cells inside a generic ``Recurrent``, or ``Linear`` layers (``"head"``).
    """

    name = "ia3"

    def __init__(self, modules: list[str] | None = None) -> None:
        super().__init__()
        self._options = {"modules": modules}
        self.modules = ["rnn"] if modules is None else _as_list(modules, "modules", self.name)
        self.scaled: list[tuple[Module, str]] = []

    def _resolve(self, model: Module) -> list[tuple[str, Module]]:
        chosen = match_globs(_module_names(model), self.modules, what="module", option="modules", owner=self.name)
        out: list[tuple[str, Module]] = []
        for name in chosen:
            module = model.get_submodule(name)
            if isinstance(module, Recurrent):
                cells = [(f"{name}.{n}", c) for n, c in module.named_children()]
                bad = [n for n, c in cells if not isinstance(c, RNNCellBase)]
                if bad:
                    raise FinetuneError(f"ia3: {name} runs cells IA3 doesn't know the gate layout of ({', '.join(bad)}); "
                                        "IA3 supports RNN/LSTM/GRU layers, the built-in cells and Linear layers")
                out += [c for c in cells if c[0] not in chosen]
            elif _groups(module):
                out.append((name, module))
            elif any(name.startswith(other + ".") for other in chosen):
                continue  # inside a chosen layer (a glob like "rnn*" also matched its cells)
            else:
                raise FinetuneError(f"ia3: modules: {name!r} is a {type(module).__name__}; IA3 scales RNN/LSTM/GRU "
                                    "layers, built-in cells and Linear layers")
        return out

    def _apply(self, model: Module) -> None:
        targets = self._resolve(model)
        self._freeze_all(model)
        self.scaled = []
        for _, module in targets:
            for group in _groups(module):
                first = module._parameters[group[0]]
                scale = Parameter(ones(first.shape[0], dtype=first.dtype, device=first._backend))
                for i, tensor_name in enumerate(group):
                    register_parametrization(module, tensor_name, RowScale(scale, owner=i == 0))
                    self.scaled.append((module, tensor_name))

    def _merge(self, model: Module) -> None:
        with no_grad():
            for module, tensor_name in reversed(self.scaled):  # last in, first out: restores the key order
                remove_parametrizations(module, tensor_name, leave_parametrized=True)
        self.scaled = []
