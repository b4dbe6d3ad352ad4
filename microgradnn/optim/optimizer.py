"""``Optimizer``: the base class of every optimizer, PyTorch-shaped.

An optimizer holds ``param_groups`` (a list of dicts: ``"params"`` plus that group's
options, defaulting to the constructor's) and ``state`` (per-parameter arrays such as
Adam's moments, keyed by the parameter). A subclass only writes :meth:`_update`, which
calls one fused backend kernel (``param._backend.kernel("adam_update")``) per parameter:
numba on the CPU, CuPy on the GPU, a plain-``xp`` reference twin otherwise.

``state_dict()`` has PyTorch's layout, parameters replaced by their index in the order
they appear across the groups::

    {"state": {0: {"step": 3, "exp_avg": array, ...}, ...},
     "param_groups": [{"lr": 0.001, ..., "params": [0, 1]}, ...]}

so it goes into a checkpoint (:func:`microgradnn.save`) as arrays plus plain data, and a
PyTorch optimizer's ``state_dict`` (tensors become arrays) loads too.
"""

from __future__ import annotations

import copy
import numbers
from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np

from ..autograd import enable_grad, mark_modified
from ..tensor import Tensor, _move_array

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


#: Marks a default every group must set itself (as ``torch.optim.optimizer.required``).
required = _RequiredParameter()


# ----------------------------------------------------------------------------- validation


def _number(name: str, value: Any) -> float:
    """``value`` as a float, or a TypeError saying what was given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _at_least(group: dict, key: str, what: str, low: float = 0.0) -> None:
    """``group[key]`` must be a number >= ``low``: ``Invalid learning rate: -1``."""
    value = _number(key, group[key])
    if not value >= low:  # also catches NaN
        raise ValueError(f"Invalid {what}: {group[key]}")
    group[key] = value


def _as_state_array(value: Any) -> Any:
    """An array from a numpy/cupy array, a microgradnn Tensor or a torch tensor (duck-typed)."""
    if isinstance(value, Tensor):
        return value.array
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def _as_step(value: Any) -> Any:
    """A saved step counter (int, float, 0-d array or torch tensor) as a Python int."""
    value = _as_state_array(value)
    if hasattr(value, "item"):
        value = value.item()
    value = float(value)
    return int(value) if value.is_integer() else value


# ----------------------------------------------------------------------------- Optimizer


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of Tensors, or of dicts (param groups) each with a
    ``"params"`` entry and any per-group options. Subclasses define :meth:`_update` and
    may define :meth:`_check_group` (validate and normalise one group's options) and
    :meth:`_init_state`."""

    #: per-parameter state entries every non-empty saved state must hold (checked on load)
    _state_keys: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got a single {type(params).__name__}: wrap it in a list, or pass model.parameters()"
            )
        if isinstance(params, dict):
            params = [params]
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (the defaults fill the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"a parameter group needs a 'params' entry (the Tensors to optimize), got keys "
                             f"{sorted(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs; please use a list instead")
        else:
            params = list(params)
        # model.named_parameters() works too, as in PyTorch: the names go into the group
        # (and its state_dict) as "param_names"
        names = None
        named = [isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in params]
        if any(named):
            if not all(named):
                raise ValueError("a parameter group mixes (name, Tensor) pairs and bare Tensors: use one or the other")
            names = [name for name, _ in params]
            params = [p for _, p in params]
        if self.param_groups and ("param_names" in self.param_groups[0]) != (names is not None):
            raise ValueError("all parameter groups should be given with names (named_parameters()) or all without")
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed from others); "
                                 "optimize the leaf it came from, or call .detach().requires_grad_()")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same parameter twice")

        group = dict(param_group)
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        self._check_group(group)

        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate (and normalise in place) one group's options. Subclasses extend it."""
        _at_least(group, "lr", "learning rate")

    # ------------------------------------------------------------------ stepping

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (``None``), or zero it in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p._grad = None
                elif p._grad is not None:
                    p._grad[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient. ``closure`` (optional)
        re-evaluates the model and returns the loss, which ``step`` returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                grad = p._grad
                if grad is None:
                    continue
                if grad.shape != p.array.shape:
                    raise RuntimeError(f"a parameter of shape {p.shape} has a gradient of shape {tuple(grad.shape)}")
                state = self.state[p]
                if not state:
                    self._init_state(group, p, state)
                self._update(group, p, grad, state)
                mark_modified(p.array)  # as PyTorch, a step bumps p._version: a graph made before it is stale
        return loss

    def _init_state(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        """Create a parameter's state on its first step (arrays on its device, its dtype)."""

    def _update(self, group: dict[str, Any], p: Tensor, grad: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")

    # ------------------------------------------------------------------ state dict

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}`` (PyTorch's
        layout). Arrays are the optimizer's own (not copies), as in PyTorch."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = self.state[p]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore groups' options and per-parameter state saved by :meth:`state_dict` (or by
        the same PyTorch optimizer). Arrays are copied onto each parameter's device and, when
        floating point, cast to its dtype."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups' entries")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        for i, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(ours["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has {len(saved['params'])} parameters, "
                                 f"the optimizer's has {len(ours['params'])}")
        by_index = {}
        for ours, saved in zip(self.param_groups, saved_groups):
            for p, idx in zip(ours["params"], saved["params"]):
                by_index[int(idx)] = p

        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for idx, values in state_dict["state"].items():
            idx = int(idx)
            if idx not in by_index:
                raise ValueError(f"loaded state dict has state for parameter {idx}, which no parameter group lists")
            p = by_index[idx]
            if values:
                lacking = [key for key in self._state_keys if key not in values]
                if lacking:
                    raise ValueError(
                        f"loaded state dict's state for parameter {idx} lacks {', '.join(map(repr, lacking))}, which "
                        f"{type(self).__name__} keeps (it has {', '.join(map(repr, values)) or 'nothing'}): was it "
                        "saved by a different optimizer?"
                    )
            restored = {}
            for key, value in values.items():
                restored[key] = value = self._restore_value(key, value, p)
                shape = getattr(value, "shape", None)
                if shape is not None and key != "step" and tuple(shape) != tuple(p.shape):
                    raise ValueError(f"loaded state dict's {key!r} for parameter {idx} has shape {tuple(shape)}, but "
                                     f"that parameter has shape {tuple(p.shape)}: was it saved for a different model?")
            new_state[p] = restored

        new_groups = []
        for i, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            group = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            group["params"] = ours["params"]
            if "param_names" in ours and "param_names" not in group:
                group["param_names"] = ours["param_names"]
            # an option the saved group lacks (saved by an older version, as PyTorch's
            # __setstate__ allows for) takes the constructor's value
            for name, default in self.defaults.items():
                if name not in group:
                    if default is required:
                        raise ValueError(f"loaded state dict's parameter group {i} has no value of {name!r}")
                    group[name] = copy.deepcopy(default)
            if isinstance(group.get("betas"), list):
                group["betas"] = tuple(group["betas"])
            try:
                self._check_group(group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"loaded state dict's parameter group {i}: {exc}") from None
            new_groups.append(group)
        self.state = new_state
        self.param_groups = new_groups

    @staticmethod
    def _restore_value(key: str, value: Any, p: Tensor) -> Any:
        if key == "step":
            return _as_step(value)
        value = _as_state_array(value)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__cuda_array_interface__"):
            array = _move_array(value, p._backend)
            dtype = p.dtype if array.dtype.kind == "f" else array.dtype
            # always a fresh contiguous array: the optimizer updates its state in place
            return p._backend.xp.array(array, dtype=dtype, copy=True, order="C")
        return copy.deepcopy(value)

    # ------------------------------------------------------------------ display

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k not in ("params", "param_names")):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _zeros_like(p: Tensor, fill: float = 0.0) -> Any:
    xp = p._backend.xp
    out = xp.zeros_like(p.array) if fill == 0 else xp.full_like(p.array, fill)
    return xp.ascontiguousarray(out)
