"""Adagrad."""

from __future__ import annotations

from typing import Any, Iterable

from .optimizer import Optimizer, _at_least, _flag, _zeros_like

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""``torch.optim.Adagrad``'s update, fused into one kernel per parameter::

        g = grad (+ weight_decay * p);   clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g;                   p = p - clr * g / (sqrt(s) + eps)

    As in PyTorch, the state (``sum`` starting at ``initial_accumulator_value``) is created
    when a parameter joins the optimizer, not at its first step."""

    _state_keys = ("step", "sum")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _at_least(group, "lr_decay", "lr_decay value")
        _at_least(group, "weight_decay", "weight_decay value")
        _at_least(group, "initial_accumulator_value", "initial_accumulator_value value")
        _at_least(group, "eps", "epsilon value")
        group["maximize"] = _flag("maximize", group["maximize"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            self._init_state(group, p, self.state[p])

    def _init_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        state["step"] = 0
        state["sum"] = _zeros_like(p, group["initial_accumulator_value"])

    def _update(self, group: dict[str, Any], p: Any, grad: Any, state: dict[str, Any]) -> None:
        state["step"] += 1
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        p._backend.kernel("adagrad_update")(
            p.array, grad, state["sum"], clr, group["weight_decay"], group["eps"], group["maximize"],
        )
