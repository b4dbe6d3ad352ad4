"""``microgradnn.nn.init``: fill parameters in place, with PyTorch's names and formulas.

Why initialisation matters: a layer multiplies its input by a weight matrix, so the
variance of its output is ``fan_in * Var(w) * Var(x)``. Choosing ``Var(w) ~ 1/fan_in``
keeps the signal's scale the same from layer to layer (LeCun); Xavier/Glorot averages
fan-in and fan-out so the *gradients* keep their scale on the way back too; Kaiming/He
multiplies by 2 because a ReLU zeroes half its inputs. ``calculate_gain`` holds those
per-nonlinearity factors. ``orthogonal_`` gives a recurrent matrix all of whose
singular values are 1, so repeated multiplication over time neither blows a signal up
nor shrinks it.

Every function works in place under ``no_grad`` (so it may be called on a Parameter),
draws from microgradnn's generator (seeded by ``mg.manual_seed``), and returns the tensor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor, _random

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
]

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
NONLINEARITIES = _LINEAR_FNS + ("sigmoid", "tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor to scale a weight's standard deviation by for ``nonlinearity`` (PyTorch's table).

    ============  =========================================
    linear/conv   1
    sigmoid       1
    tanh          5/3
    relu          sqrt(2)
    leaky_relu    sqrt(2 / (1 + negative_slope^2)), slope ``param`` (default 0.01)
    selu          3/4
    ============  =========================================
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            negative_slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; allowed: {', '.join(NONLINEARITIES)}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """fan_in = columns x receptive field, fan_out = rows x receptive field (weight is (out, in, ...))."""
    if tensor.ndim < 2:
        raise ValueError(
            f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (shape {tuple(tensor.shape)})")
    receptive = int(np.prod(tensor.shape[2:], dtype=np.int64)) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} is not supported; use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _draw(tensor: Tensor, generator: Any) -> Any:
    """The generator to sample from: ``generator`` (a numpy Generator) or mg's own for the device."""
    return _random(tensor._backend) if generator is None else generator


def _write(tensor: Tensor, values: Any) -> Tensor:
    xp = tensor._backend.xp
    tensor._store(..., xp.asarray(values).astype(tensor.dtype, copy=False))
    return tensor


@no_grad()
def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with U(a, b)."""
    return _write(tensor, _draw(tensor, generator).uniform(a, b, tensor.shape))


@no_grad()
def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with N(mean, std^2)."""
    # standard_normal, not normal(): CuPy's Generator has only the former (numpy draws the same values)
    return _write(tensor, _draw(tensor, generator).standard_normal(tensor.shape) * std + mean)


@no_grad()
def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: Any = None) -> Tensor:
    """Fill with N(mean, std^2) conditioned on [a, b] (inverse-CDF sampling, as PyTorch)."""
    from math import erf

    def cdf(x: float) -> float:
        return (1.0 + erf(x / math.sqrt(2.0))) / 2.0

    low, high = cdf((a - mean) / std), cdf((b - mean) / std)
    u = _draw(tensor, generator).uniform(2 * low - 1, 2 * high - 1, tensor.shape)
    xp = tensor._backend.xp
    values = _erfinv(xp, u) * (std * math.sqrt(2.0)) + mean
    return _write(tensor, xp.clip(values, a, b))


def _erfinv(xp: Any, u: Any) -> Any:
    if xp is np:
        try:
            from scipy.special import erfinv
        except ImportError:  # scipy is optional: Newton's method on math.erf
            return _erfinv_newton(np.asarray(u, dtype=np.float64))
        return erfinv(u)
    import cupyx.scipy.special

    return cupyx.scipy.special.erfinv(u)


def _erfinv_newton(u: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    with np.errstate(all="ignore"):
        # a rough start (exact in the tails' leading order), then Newton steps
        w = -np.log((1.0 - u) * (1.0 + u))
        x = np.where(w < 5.0, 0.886226925 * u * (1 + 0.2 * w), np.sign(u) * np.sqrt(w))
        for _ in range(8):
            x = x - (erf(x) - u) / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
        # u = +-1 exactly (a truncation bound at infinity) has erfinv +-inf; the caller clips
        return np.where(np.isfinite(x), x, np.sign(u) * np.inf)


@no_grad()
def constant_(tensor: Tensor, val: float) -> Tensor:
    tensor._store(..., val)
    return tensor


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


@no_grad()
def eye_(tensor: Tensor) -> Tensor:
    """The identity matrix (2-D tensors only)."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only 2-D tensors are supported, got shape {tuple(tensor.shape)}")
    xp = tensor._backend.xp
    return _write(tensor, xp.eye(*tensor.shape))


@no_grad()
def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std  # a uniform on [-a, a] has standard deviation a / sqrt(3)
    return uniform_(tensor, -bound, bound, generator)


@no_grad()
def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


@no_grad()
def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Any = None) -> Tensor:
    """U(-b, b) with ``b = gain * sqrt(3 / fan)`` (He et al. 2015); ``a`` is the leaky_relu slope.

    ``nn.Linear``'s default is ``kaiming_uniform_(w, a=sqrt(5))``, i.e. ``b = 1/sqrt(fan_in)``."""
    if 0 in tensor.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


@no_grad()
def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Any = None) -> Tensor:
    """N(0, std^2) with ``std = gain / sqrt(fan)``."""
    if 0 in tensor.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


@no_grad()
def orthogonal_(tensor: Tensor, gain: float = 1, generator: Any = None) -> Tensor:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013), from the QR of a Gaussian matrix.

    Dims after the first are flattened. Multiplying Q's columns by the signs of R's
    diagonal makes the result uniformly distributed over orthogonal matrices (plain QR
    would favour some)."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    xp = tensor._backend.xp
    flat = xp.asarray(_draw(tensor, generator).standard_normal((rows, cols)))
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diag(r))
    if rows < cols:
        q = q.T
    return _write(tensor, (q * gain).reshape(tensor.shape))
