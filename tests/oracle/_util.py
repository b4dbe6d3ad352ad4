"""Helpers for the PyTorch-oracle tests: run one function on microgradnn and on torch,
then compare outputs (values, shapes, dtypes) and the gradients of a randomly weighted sum
of the outputs with respect to every floating-point input."""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings

import microgradnn as mg

# float64: atol/rtol 1e-6; float32: rtol 1e-4, atol 1e-5
TOLERANCES = {
    np.dtype(np.float64): dict(rtol=1e-6, atol=1e-6),
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
}
FLOATS = [np.float32, np.float64]
FLOAT_IDS = ["f32", "f64"]

# Modest, reproducible hypothesis runs that leave no example database behind.
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class _TorchLib:
    """``torch`` with the few functional names microgradnn keeps at top level."""

    linear = staticmethod(F.linear)
    cross_entropy = staticmethod(F.cross_entropy)
    gelu = staticmethod(F.gelu)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


TORCH = _TorchLib()
MG = mg


class Const:
    """An array that becomes a tensor on both sides but never requires grad."""

    def __init__(self, value: Any) -> None:
        self.value = np.asarray(value)


def np_dtype(t: Any) -> np.dtype:
    """The numpy dtype of a torch or microgradnn tensor."""
    if isinstance(t, torch.Tensor):
        return torch.empty((), dtype=t.dtype).numpy().dtype
    return np.dtype(t.dtype)


def data(shape: tuple, dtype: Any = np.float64, seed: int = 0, kind: str = "normal", scale: float = 1.0) -> np.ndarray:
    """Random input (never all zeros), times ``scale``. ``kind``: normal | positive | nonzero | ties."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if kind == "normal":
        a = rng.standard_normal(shape)
    elif kind == "positive":  # away from 0: log, sqrt, pow bases, divisors
        a = rng.uniform(0.5, 2.0, shape)
    elif kind == "nonzero":  # either sign, |a| >= 0.5
        a = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    elif kind == "ties":  # few distinct values: maximum/minimum/max ties
        a = rng.integers(-2, 3, shape).astype(np.float64)
        if a.size and not a.any():
            a.flat[0] = 1.0
    else:
        raise ValueError(kind)
    return np.asarray(a * scale, dtype=dtype)


def _flat(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        return [o for part in out for o in _flat(part)]
    return [out]


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return t.detach().numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: Any, what: str) -> None:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        tol = TOLERANCES.get(dtype, TOLERANCES[np.dtype(np.float32)])
        np.testing.assert_allclose(actual, expected, err_msg=what, equal_nan=True, **tol)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def _make(arg: Any, requires_grad: bool) -> tuple:
    if isinstance(arg, Const):
        return mg.tensor(arg.value), torch.tensor(arg.value), False
    if isinstance(arg, np.ndarray):
        rg = requires_grad and arg.dtype.kind == "f"
        return mg.tensor(arg, requires_grad=rg), torch.tensor(arg, requires_grad=rg), rg
    return arg, arg, False


def check(
    fn: Callable,
    *args: Any,
    tfn: Callable | None = None,
    grad: bool = True,
    seed: int = 0,
    **kwargs: Any,
) -> tuple:
    """Compare ``fn(mg, *args)`` with ``(tfn or fn)(torch, *args)``.

    numpy arrays in ``args`` become tensors on both sides (floating ones require grad when
    ``grad``); :class:`Const` wraps an array that must not; anything else passes through.
    Checks every output's type, shape, dtype and values, then backpropagates
    ``sum(w_i * out_i)`` with random weights ``w_i`` through both and compares the
    gradients of every input that requires grad. Returns (mg outputs, torch outputs)."""
    made = [_make(a, grad) for a in args]
    mg_args = [m for m, _, _ in made]
    t_args = [t for _, t, _ in made]
    out_m = fn(MG, *mg_args, **kwargs)
    out_t = (tfn or fn)(TORCH, *t_args, **kwargs)
    outs_m, outs_t = _flat(out_m), _flat(out_t)
    assert len(outs_m) == len(outs_t), f"{len(outs_m)} outputs, torch gives {len(outs_t)}"
    for i, (om, ot) in enumerate(zip(outs_m, outs_t)):
        assert isinstance(om, mg.Tensor), f"output {i} is a {type(om).__name__}, not a Tensor"
        assert om.shape == tuple(ot.shape), f"output {i}: shape {om.shape}, torch {tuple(ot.shape)}"
        assert np_dtype(om) == np_dtype(ot), f"output {i}: dtype {om.dtype}, torch {ot.dtype}"
        assert om.requires_grad == ot.requires_grad, f"output {i}: requires_grad {om.requires_grad}, torch {ot.requires_grad}"
        assert_close(_to_numpy(om), _to_numpy(ot), np_dtype(ot), f"forward output {i}")

    leaves = [(m, t) for m, t, rg in made if rg]
    diff = [(om, ot) for om, ot in zip(outs_m, outs_t) if ot.requires_grad]
    if not (grad and leaves and diff):
        return out_m, out_t
    rng = np.random.default_rng(seed + 7919)
    terms_m, terms_t = [], []
    for om, ot in diff:
        w = rng.standard_normal(om.shape).astype(om.dtype)
        terms_m.append((om * mg.tensor(w)).sum())
        terms_t.append((ot * torch.tensor(w)).sum())
    functools.reduce(lambda a, b: a + b, terms_m).backward()
    functools.reduce(lambda a, b: a + b, terms_t).backward()
    for i, (lm, lt) in enumerate(leaves):
        if lt.grad is None:  # torch: input did not reach the output; mg may give zeros or None
            assert lm.grad is None or not np.any(lm.grad.numpy()), f"input {i}: torch has no grad, mg a nonzero one"
            continue
        assert lm.grad is not None, f"input {i}: no gradient, torch has one"
        assert lm.grad.shape == tuple(lt.grad.shape), f"grad {i}: shape {lm.grad.shape}, torch {tuple(lt.grad.shape)}"
        assert np_dtype(lm.grad) == np_dtype(lt.grad), f"grad {i}: dtype {lm.grad.dtype}, torch {lt.grad.dtype}"
        assert_close(lm.grad.numpy(), lt.grad.numpy(), np_dtype(lt.grad), f"gradient of input {i}")
    return out_m, out_t
