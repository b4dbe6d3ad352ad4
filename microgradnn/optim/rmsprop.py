"""RMSprop, with optional momentum and centering."""

from __future__ import annotations

from typing import Any, Iterable

from .optimizer import Optimizer, _at_least, _flag, _zeros_like

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""``torch.optim.RMSprop``'s update, fused into one kernel per parameter::

        g = grad (+ weight_decay * p)
        s = alpha * s + (1 - alpha) * g * g
        avg = sqrt(s - a * a) + eps  with a = lerp(a, g, 1 - alpha) when centered, else sqrt(s) + eps
        b = momentum * b + g / avg;  p = p - lr * b     # when momentum > 0
        p = p - lr * g / avg                             # otherwise
    """

    _state_keys = ("step", "square_avg")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _at_least(group, "eps", "epsilon value")
        _at_least(group, "momentum", "momentum value")
        _at_least(group, "weight_decay", "weight_decay value")
        _at_least(group, "alpha", "alpha value")
        group["centered"] = _flag("centered", group["centered"])
        group["maximize"] = _flag("maximize", group["maximize"])

    def _init_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        state["step"] = 0
        state["square_avg"] = _zeros_like(p)
        if group["momentum"] > 0:
            state["momentum_buffer"] = _zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = _zeros_like(p)

    def _update(self, group: dict[str, Any], p: Any, grad: Any, state: dict[str, Any]) -> None:
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = _zeros_like(p)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = _zeros_like(p)
        state["step"] += 1
        p._backend.kernel("rmsprop_update")(
            p.array, grad, state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer"),
            group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
            group["centered"], group["maximize"],
        )
