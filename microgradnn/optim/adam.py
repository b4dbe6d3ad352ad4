"""Adam and AdamW (decoupled weight decay), with optional AMSGrad."""

from __future__ import annotations

import math
from typing import Any, Iterable

from .optimizer import Optimizer, _at_least, _flag, _number, _zeros_like

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""``torch.optim.Adam``'s update, fused into one kernel per parameter::

        g = grad (+ weight_decay * p)         # AdamW instead: p *= 1 - lr * weight_decay
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_max, v) if amsgrad else v
        p = p - lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)
    """

    _state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _at_least(group, "eps", "epsilon value")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {betas!r}")
        checked = []
        for i, beta in enumerate(betas):
            value = _number(f"betas[{i}]", beta)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
            checked.append(value)
        group["betas"] = tuple(checked)
        _at_least(group, "weight_decay", "weight_decay value")
        for flag in ("amsgrad", "maximize", "decoupled_weight_decay"):
            group[flag] = _flag(flag, group[flag])

    def _init_state(self, group: dict[str, Any], p: Any, state: dict[str, Any]) -> None:
        state["step"] = 0
        state["exp_avg"] = _zeros_like(p)
        state["exp_avg_sq"] = _zeros_like(p)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = _zeros_like(p)

    def _update(self, group: dict[str, Any], p: Any, grad: Any, state: dict[str, Any]) -> None:
        if group["amsgrad"] and "max_exp_avg_sq" not in state:  # amsgrad switched on mid-run
            state["max_exp_avg_sq"] = _zeros_like(p)
        state["step"] += 1
        step = state["step"]
        beta1, beta2 = group["betas"]
        p._backend.kernel("adam_update")(
            p.array, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
            group["lr"], beta1, beta2, group["eps"], group["weight_decay"], group["decoupled_weight_decay"],
            group["amsgrad"], group["maximize"], 1 - beta1**step, math.sqrt(1 - beta2**step),
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the step),
    as ``torch.optim.AdamW``; note the default ``weight_decay=1e-2``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["decoupled_weight_decay"] = True
        super()._check_group(group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # AdamW always decouples, whatever was saved
            group["decoupled_weight_decay"] = True
