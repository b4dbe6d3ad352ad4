"""``gradcheck``: compare autograd's gradient with float64 central finite differences."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .autograd import Variable, no_grad
from .backend import to_host
from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def _outputs(result: Any) -> list:
    if isinstance(result, Variable):
        return [result]
    return [r for r in result if isinstance(r, Variable)]


def gradcheck(
    fn: Callable[..., Any],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    raise_exception: bool = True,
) -> bool:
    """Check ``fn``'s gradients with respect to every input that requires grad.

    The inputs should be float64. Rather than the whole Jacobian, this checks the
    vector-Jacobian product that backward computes, for a random vector ``v``:
    d<v, fn(x)>/dx by autograd against the same derivative by central differences
    ``(f(x + eps) - f(x - eps)) / (2 eps)``, one input element at a time.
    """
    checked = [t for t in inputs if isinstance(t, Variable) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for t in checked:
        if t.dtype != np.float64:
            raise ValueError(f"gradcheck: inputs must be float64 for finite differences to be accurate, got {t.dtype}")
    rng = np.random.default_rng(seed)
    outputs = _outputs(fn(*inputs))
    projections = [rng.standard_normal(o.shape) for o in outputs]

    def objective() -> float:
        with no_grad():
            outs = _outputs(fn(*inputs))
        return float(sum(np.sum(to_host(o.array) * v) for o, v in zip(outs, projections)))

    for t in checked:
        t._grad = None
    total = None
    for o, v in zip(outputs, projections):
        if not o.requires_grad:
            continue
        term = (o * Tensor(o._backend.xp.asarray(v), o._backend)).sum()
        total = term if total is None else total + term
    if total is None:
        raise GradcheckError("gradcheck: no output depends on an input that requires grad")
    total.backward()

    for position, t in enumerate(checked):
        analytic = np.zeros(t.shape) if t._grad is None else to_host(t._grad).astype(np.float64)
        numeric = np.zeros(t.shape)
        flat = t.array.reshape(-1)  # a view: nudging it nudges the input
        for i in range(flat.size):
            original = flat[i].item()
            flat[i] = original + eps
            plus = objective()
            flat[i] = original - eps
            minus = objective()
            flat[i] = original
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        if not np.allclose(analytic, numeric, atol=atol, rtol=rtol):
            if not raise_exception:
                return False
            worst = np.unravel_index(np.argmax(np.abs(analytic - numeric)), t.shape)
            raise GradcheckError(
                f"gradcheck: gradient of input {position} (shape {t.shape}) does not match finite differences;\n"
                f"largest difference at index {tuple(int(i) for i in worst)}: analytic {analytic[worst]:.8g} vs numerical {numeric[worst]:.8g}\n"
                f"analytic:\n{analytic}\nnumerical:\n{numeric}"
            )
    return True