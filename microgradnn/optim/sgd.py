"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from typing import Any, Iterable

from .optimizer import Optimizer, _at_least, _flag

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""``torch.optim.SGD``'s update, fused into one kernel per parameter::

        g = grad (+ weight_decay * p)          # -grad when maximize
        b = g on the first step, else momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov else b   # when momentum != 0
        p = p - lr * g
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _at_least(group, "momentum", "momentum value")
        _at_least(group, "dampening", "dampening value", low=float("-inf"))
        _at_least(group, "weight_decay", "weight_decay value")
        group["nesterov"] = _flag("nesterov", group["nesterov"])
        group["maximize"] = _flag("maximize", group["maximize"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, group: dict[str, Any], p: Any, grad: Any, state: dict[str, Any]) -> None:
        momentum = group["momentum"]
        buf = first = None
        if momentum != 0:
            buf = state.get("momentum_buffer")
            first = buf is None
            if first:
                buf = state["momentum_buffer"] = p._backend.xp.empty_like(p.array)
        p._backend.kernel("sgd_update")(
            p.array, grad, buf, group["lr"], group["weight_decay"], momentum, group["dampening"],
            group["nesterov"], group["maximize"], bool(first),
        )
