"""Version counters: a backward whose saved tensors were written in place since its forward
refuses to run (PyTorch's "modified by an inplace operation" error) instead of silently
differentiating at the new values.

Every scenario runs twice, once on microgradnn and once on PyTorch (the oracle): both must
raise, or both must run and give the same gradients.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn import autograd


def _inputs(lib, seed=0):
    rng = np.random.default_rng(seed)
    x = lib.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    w = lib.tensor(rng.standard_normal((4, 2)).astype(np.float32), requires_grad=True)
    return x, w


def saved_input_written(lib):
    x, w = _inputs(lib)
    y = (x @ w).sum()  # the product saves x to compute w's gradient
    x.add_(1.0)
    y.backward()
    return w


def unsaved_input_written(lib):
    x, w = _inputs(lib)
    y = (x[:, :2] + w[0]).sum()  # addition saves nothing: writing x afterwards is harmless
    x.mul_(3.0)
    y.backward()
    return w


def output_saved_by_exp_written(lib):
    _, w = _inputs(lib)
    y = w.exp()  # exp's backward reuses its own output
    with lib.no_grad():
        y.add_(1.0)
    y.sum().backward()
    return w


def written_through_setitem(lib):
    x, w = _inputs(lib)
    y = (x @ w).sum()
    x[0, 1] = 5.0
    y.backward()
    return w


def written_through_a_view(lib):
    x, w = _inputs(lib)
    y = (x @ w).sum()
    x[1].fill_(2.0)  # a view of x shares its version
    y.backward()
    return w


def written_through_detach(lib):
    x, w = _inputs(lib)
    y = (x @ w).sum()
    x.detach().zero_()  # detach() shares the storage and the version (as PyTorch)
    y.backward()
    return w


def written_through_data(lib):
    x, w = _inputs(lib)
    y = (x @ w).sum()
    x.data.add_(1.0)  # .data is PyTorch's untracked alias: no error, the new values are used
    y.backward()
    return w


def optimizer_step_between_two_backwards(lib):
    x, w = _inputs(lib)
    opt = lib.optim.SGD([w], lr=0.5)
    y = ((x @ w) ** 2).sum()  # the square saves x @ w, the product saves x and w
    y.backward(retain_graph=True)
    opt.step()
    y.backward()
    return w


def two_backwards_without_a_write(lib):
    x, w = _inputs(lib)
    y = ((x @ w) ** 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    return w


def written_before_forward(lib):
    x, w = _inputs(lib)
    x.add_(1.0)  # a write before the forward that saves x is simply part of x's value
    y = (x @ w).sum()
    y.backward()
    return w


def other_tensor_written(lib):
    x, w = _inputs(lib)
    other = x.clone()
    y = (x @ w).sum()
    other.add_(1.0)
    y.backward()
    return w


def load_state_dict_after_forward(lib):
    rng = np.random.default_rng(3)
    layer = lib.nn.Linear(4, 2)
    state = {k: lib.tensor(rng.standard_normal(tuple(v.shape)).astype(np.float32)) for k, v in layer.state_dict().items()}
    x = lib.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    y = layer(x).sum()  # the product saves the weight to compute x's gradient
    layer.load_state_dict(state)
    y.backward()
    return x


def init_after_forward(lib):
    rng = np.random.default_rng(4)
    layer = lib.nn.Linear(4, 2)
    x = lib.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    y = layer(x).sum()
    lib.nn.init.constant_(layer.weight, 0.5)
    y.backward()
    return x


def lstm_weight_written_before_backward(lib):
    rng = np.random.default_rng(5)
    lstm = lib.nn.LSTM(3, 4, batch_first=True)
    x = lib.tensor(rng.standard_normal((2, 5, 3)).astype(np.float32), requires_grad=True)
    out, _ = lstm(x)  # the fused sequence op saves W_hh for the backward time loop
    with lib.no_grad():
        lstm.weight_hh_l0.mul_(0.5)
    out.sum().backward()
    return x


SCENARIOS = [
    saved_input_written, unsaved_input_written, output_saved_by_exp_written, written_through_setitem,
    written_through_a_view, written_through_detach, written_through_data,
    optimizer_step_between_two_backwards, two_backwards_without_a_write, written_before_forward, other_tensor_written,
    load_state_dict_after_forward, init_after_forward, lstm_weight_written_before_backward,
]


def _outcome(scenario, lib):
    try:
        return "ran", scenario(lib).grad
    except RuntimeError as error:
        return "raised", str(error)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_raises_exactly_where_pytorch_does(scenario):
    ours, theirs = _outcome(scenario, mg), _outcome(scenario, torch)
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "raised":
        assert "modified by an inplace operation" in ours[1] and "written after the forward pass" in ours[1]
    else:
        np.testing.assert_allclose(ours[1].numpy(), theirs[1].numpy(), rtol=1e-5, atol=1e-6)


def test_the_error_names_the_saved_array_and_the_versions():
    with pytest.raises(RuntimeError, match=r"\[float32 \[3, 4\]\], saved by MatMul, is at version 1, written after the forward pass"):
        saved_input_written(mg)


def test_version_counts_writes_and_views_share_it_like_pytorch():
    for lib in (mg, torch):
        x = lib.zeros(4, 3)
        row = x[1]
        assert x._version == 0 and row._version == 0
        x.add_(1.0)
        assert x._version == row._version and x._version > 0, lib.__name__
        before = x._version
        row.fill_(2.0)
        assert x._version > before, lib.__name__
        before = x._version
        x.data.add_(1.0)  # untracked
        _ = x + 1  # out of place
        assert x._version == before, lib.__name__


def test_optimizer_step_bumps_the_parameter_version_like_pytorch():
    for lib in (mg, torch):
        p = lib.nn.Parameter(lib.ones(3))
        opt = lib.optim.Adam([p], lr=0.1)
        (p * p).sum().backward()
        before = p._version
        opt.step()
        assert p._version > before, lib.__name__


def test_counts_of_freed_arrays_are_forgotten():
    gc.collect()
    start = len(autograd._writes)
    for _ in range(500):
        mg.zeros(8).add_(1.0)  # each array is written once, then freed
    gc.collect()
    assert len(autograd._writes) <= start + 5


SHAPES = [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5))]


CASES = [(op, shapes) for op in ("matmul", "mul", "div", "linear") for shapes in SHAPES
         if op != "linear" or len(shapes[1]) == 2]  # linear's weight is 2-d


@pytest.mark.parametrize("which", ["a", "b", "both"])
@pytest.mark.parametrize("op, shapes", CASES, ids=str)
def test_ops_that_save_only_what_a_gradient_reads_still_match_pytorch(op, which, shapes):
    """MatMul, Linear, Mul and Div keep an operand only when the other's gradient is asked
    for: every combination of which inputs need a gradient still gives PyTorch's gradients."""
    a_shape, b_shape = shapes
    if op in ("mul", "div"):
        b_shape = a_shape[-1:]  # broadcast against a's last axis
    if op == "linear":
        b_shape = b_shape[::-1]  # (out, in)
    rng = np.random.default_rng(7)
    a0 = rng.standard_normal(a_shape)
    b0 = rng.standard_normal(b_shape) + (3.0 if op == "div" else 0.0)
    grads = {}
    for lib in (mg, torch):
        a = lib.tensor(a0, requires_grad=which in ("a", "both"))
        b = lib.tensor(b0, requires_grad=which in ("b", "both"))
        fn = {"matmul": lambda: a @ b, "mul": lambda: a * b, "div": lambda: a / b,
              "linear": lambda: lib.nn.functional.linear(a, b)}[op]
        out = fn()
        out.backward(lib.tensor(np.cos(np.arange(out.numel()).reshape(tuple(out.shape)))))
        grads[lib] = [t.grad for t in (a, b)]
    for ours, theirs in zip(grads[mg], grads[torch]):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-12)


# Every unary op with a gradient: which of its input and output it keeps decides which
# in-place writes make its backward refuse; PyTorch keeps the input for some (sin, log, ...)
# and the output for others (exp, tanh, relu, rsqrt, reciprocal, ...).
UNARY = ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "log2", "log10",
         "log1p", "expm1", "exp2", "erf", "rsqrt", "reciprocal", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs",
         "neg", "reflected division"]


def _unary(lib, name, x):
    if name == "reflected division":
        return 3.0 / x
    return getattr(x, name)()


@pytest.mark.parametrize("written", ["input", "output"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_keep_what_pytorch_keeps(name, written):
    rng = np.random.default_rng(len(name))
    low, high = (1.2, 2.0) if name == "acosh" else (0.2, 0.9)  # inside every op's domain
    x0 = rng.uniform(low, high, (3, 4)) * (rng.choice([-1.0, 1.0], (3, 4)) if name in ("relu", "abs") else 1.0)
    outcome = {}
    for lib in (mg, torch):
        x = lib.tensor(x0, requires_grad=True)
        y = _unary(lib, name, x)
        with lib.no_grad():
            (x if written == "input" else y).mul_(1.5)
        try:
            (y * lib.tensor(np.cos(np.arange(12.0)).reshape(3, 4))).sum().backward()
            outcome[lib] = ("ran", x.grad.numpy())
        except RuntimeError as error:
            assert lib is torch or "modified by an inplace operation" in str(error)
            outcome[lib] = ("raised", None)
    assert outcome[mg][0] == outcome[torch][0], (outcome[mg][0], outcome[torch][0])
    if outcome[mg][0] == "ran":
        np.testing.assert_allclose(outcome[mg][1], outcome[torch][1], rtol=1e-12, atol=1e-12)


def test_reflected_division_rounds_like_pytorch():
    # PyTorch computes ``c / x`` as ``x.reciprocal() * c``: a true division differs from that
    # in the last bit of about one float32 element in four
    x0 = np.random.default_rng(1).uniform(0.1, 3.0, 4096).astype(np.float32)
    ours, theirs = 3.0 / mg.tensor(x0), 3.0 / torch.tensor(x0)
    assert ours.dtype == mg.float32
    assert np.array_equal(ours.numpy(), theirs.numpy())
    ints = 2 / mg.tensor([1, 2, 4])
    assert ints.dtype == mg.float32 and np.array_equal(ints.numpy(), (2 / torch.tensor([1, 2, 4])).numpy())
