"""PyTorch as the oracle: every op's forward values, output dtype and gradients match torch.

Each case runs the same code on ``microgradnn`` and on ``torch`` (see ``_util.check``):
outputs must agree in shape, dtype and value, and the gradients of a randomly weighted
sum of the outputs must agree for every floating-point input. float64 within 1e-6,
float32 within rtol 1e-4 / atol 1e-5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import microgradnn as mg

from ._util import FLOAT_IDS, FLOATS, SETTINGS, Const, assert_close, check, data, np_dtype

dtypes = pytest.mark.parametrize("dtype", FLOATS, ids=FLOAT_IDS)
seeds = st.integers(0, 2**16)


def _ids(table):
    return list(table)


# =============================================================== arithmetic, broadcasting

BINARY = {
    "add": (lambda L, a, b: a + b, "normal", "normal"),
    "sub": (lambda L, a, b: a - b, "normal", "normal"),
    "mul": (lambda L, a, b: a * b, "normal", "normal"),
    "truediv": (lambda L, a, b: a / b, "normal", "nonzero"),
    "pow": (lambda L, a, b: a**b, "positive", "normal"),
    "add_method": (lambda L, a, b: a.add(b), "normal", "normal"),
    "sub_method": (lambda L, a, b: a.sub(b), "normal", "normal"),
    "mul_method": (lambda L, a, b: a.mul(b), "normal", "normal"),
    "div_method": (lambda L, a, b: a.div(b), "normal", "nonzero"),
    "pow_method": (lambda L, a, b: a.pow(b), "positive", "normal"),
    "maximum": (lambda L, a, b: L.maximum(a, b), "normal", "normal"),
    "minimum": (lambda L, a, b: L.minimum(a, b), "normal", "normal"),
    "maximum_ties": (lambda L, a, b: L.maximum(a, b), "ties", "ties"),
    "minimum_ties": (lambda L, a, b: L.minimum(a, b), "ties", "ties"),
    "where": (lambda L, a, b: L.where(a > b, a, b * 2), "normal", "normal"),
}


@pytest.mark.parametrize("op", _ids(BINARY))
@dtypes
@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4), seed=seeds)
def test_binary_broadcast(op, dtype, shapes, seed):
    fn, kind_a, kind_b = BINARY[op]
    sa, sb = shapes.input_shapes
    check(fn, data(sa, dtype, seed, kind_a), data(sb, dtype, seed + 1, kind_b), seed=seed)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "pow", "maximum", "minimum"])
@dtypes
def test_binary_one_side_constant(op, dtype):
    # only one side requires grad: the other gets none (and no error)
    fn, kind_a, kind_b = BINARY[op]
    check(fn, data((3, 4), dtype, 1, kind_a), Const(data((4,), dtype, 2, kind_b)))
    check(fn, Const(data((3, 1), dtype, 3, kind_a)), data((4,), dtype, 4, kind_b))


# python scalars on either side; (function, input kind)
SCALAR = {
    "x+2.5": (lambda L, x: x + 2.5, "normal"),
    "2.5+x": (lambda L, x: 2.5 + x, "normal"),
    "x+2": (lambda L, x: x + 2, "normal"),
    "2+x": (lambda L, x: 2 + x, "normal"),
    "x-1.5": (lambda L, x: x - 1.5, "normal"),
    "1.5-x": (lambda L, x: 1.5 - x, "normal"),
    "3-x": (lambda L, x: 3 - x, "normal"),
    "x*-1.5": (lambda L, x: x * -1.5, "normal"),
    "-1.5*x": (lambda L, x: -1.5 * x, "normal"),
    "x*3": (lambda L, x: x * 3, "normal"),
    "3*x": (lambda L, x: 3 * x, "normal"),
    "x/2.5": (lambda L, x: x / 2.5, "normal"),
    "x/4": (lambda L, x: x / 4, "normal"),
    "2.5/x": (lambda L, x: 2.5 / x, "nonzero"),
    "3/x": (lambda L, x: 3 / x, "nonzero"),
    "x**2": (lambda L, x: x**2, "normal"),
    "x**3": (lambda L, x: x**3, "normal"),
    "x**-2": (lambda L, x: x**-2, "nonzero"),
    "x**2.0": (lambda L, x: x**2.0, "normal"),
    "x**0.5": (lambda L, x: x**0.5, "positive"),
    "x**-1.5": (lambda L, x: x**-1.5, "positive"),
    "x**0": (lambda L, x: x**0, "normal"),
    "x**1": (lambda L, x: x**1, "normal"),
    "2.0**x": (lambda L, x: 2.0**x, "normal"),
    "2**x": (lambda L, x: 2**x, "normal"),
    "0.5**x": (lambda L, x: 0.5**x, "normal"),
    "-x": (lambda L, x: -x, "normal"),
    "x.neg()": (lambda L, x: x.neg(), "normal"),
    "chain": (lambda L, x: (2 - x * 3) / (x**2 + 1) + 0.5**x, "normal"),
}


@pytest.mark.parametrize("op", _ids(SCALAR))
@dtypes
@SETTINGS
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=4), seed=seeds)
def test_python_scalar(op, dtype, shape, seed):
    fn, kind = SCALAR[op]
    check(fn, data(shape, dtype, seed, kind), seed=seed)


# =============================================================== unary math and activations

UNARY = {
    "neg": (lambda L, x: L.neg(x), "normal"),
    "abs": (lambda L, x: L.abs(x), "nonzero"),
    "abs_op": (lambda L, x: abs(x), "normal"),
    "exp": (lambda L, x: L.exp(x), "normal"),
    "log": (lambda L, x: L.log(x), "positive"),
    "sqrt": (lambda L, x: L.sqrt(x), "positive"),
    "tanh": (lambda L, x: L.tanh(x), "normal"),
    "sigmoid": (lambda L, x: L.sigmoid(x), "normal"),
    "relu": (lambda L, x: L.relu(x), "normal"),
    "gelu": (lambda L, x: L.gelu(x), "normal"),
    "gelu_none": (lambda L, x: L.gelu(x, approximate="none"), "normal"),
    "gelu_tanh": (lambda L, x: L.gelu(x, approximate="tanh"), "normal"),
    "clamp_min": (lambda L, x: L.clamp(x, min=-0.3), "normal"),
    "clamp_max": (lambda L, x: L.clamp(x, max=0.4), "normal"),
    "clamp_both": (lambda L, x: L.clamp(x, -0.3, 0.4), "normal"),
    "clamp_int_bounds": (lambda L, x: x.clamp(-1, 1), "normal"),
    "clip": (lambda L, x: x.clip(min=-0.5, max=0.5), "normal"),
    "clamp_at_bound": (lambda L, x: x.clamp(min=0.0, max=1.0), "ties"),  # bounds hit exactly
    "method_exp": (lambda L, x: x.exp(), "normal"),
    "method_log": (lambda L, x: x.log(), "positive"),
    "method_sqrt": (lambda L, x: x.sqrt(), "positive"),
    "method_tanh": (lambda L, x: x.tanh(), "normal"),
    "method_sigmoid": (lambda L, x: x.sigmoid(), "normal"),
    "method_relu": (lambda L, x: x.relu(), "normal"),
    "relu_at_zero": (lambda L, x: x.relu(), "ties"),
    "abs_at_zero": (lambda L, x: x.abs(), "ties"),
}


@pytest.mark.parametrize("op", _ids(UNARY))
@dtypes
@SETTINGS
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=5), seed=seeds)
def test_unary(op, dtype, shape, seed):
    fn, kind = UNARY[op]
    check(fn, data(shape, dtype, seed, kind, scale=3 if kind == "normal" else 1), seed=seed)


# =============================================================== matmul, linear

MATMUL = {
    "1d@1d": ((5,), (5,)),
    "1d@2d": ((5,), (5, 3)),
    "2d@1d": ((4, 5), (5,)),
    "2d@2d": ((4, 5), (5, 3)),
    "1d@3d": ((5,), (2, 5, 3)),
    "3d@1d": ((2, 4, 5), (5,)),
    "batched": ((2, 4, 5), (2, 5, 3)),
    "broadcast_batched": ((3, 1, 4, 5), (2, 5, 3)),
    "batched@2d": ((2, 4, 5), (5, 3)),
    "2d@batched": ((4, 5), (2, 5, 3)),
}


@pytest.mark.parametrize("case", _ids(MATMUL))
@pytest.mark.parametrize("form", ["matmul", "@"])
@dtypes
def test_matmul(case, form, dtype):
    sa, sb = MATMUL[case]
    a, b = data(sa, dtype, 1), data(sb, dtype, 2)
    if form == "@":
        check(lambda L, x, y: x @ y, a, b)
    else:
        check(lambda L, x, y: L.matmul(x, y), a, b)


@pytest.mark.parametrize("x_shape", [(5,), (3, 5), (2, 3, 5)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@dtypes
def test_linear(x_shape, bias, dtype):
    args = [data(x_shape, dtype, 1), data((4, 5), dtype, 2)]
    if bias:
        args.append(data((4,), dtype, 3))
    check(lambda L, *a: L.linear(*a), *args)


@dtypes
def test_linear_bias_keyword_none(dtype):
    check(lambda L, x, w: L.linear(x, w, None), data((2, 3, 5), dtype, 1), data((4, 5), dtype, 2))


# =============================================================== reductions

REDUCE = {
    "sum": lambda L, x, dim, keepdim: x.sum(dim=dim, keepdim=keepdim),
    "mean": lambda L, x, dim, keepdim: x.mean(dim=dim, keepdim=keepdim),
    "var": lambda L, x, dim, keepdim: x.var(dim=dim, keepdim=keepdim),
    "std": lambda L, x, dim, keepdim: x.std(dim=dim, keepdim=keepdim),
    "var_correction0": lambda L, x, dim, keepdim: x.var(dim=dim, keepdim=keepdim, correction=0),
    "std_unbiased_false": lambda L, x, dim, keepdim: x.std(dim=dim, keepdim=keepdim, unbiased=False),
    "amax": lambda L, x, dim, keepdim: x.amax(dim=dim, keepdim=keepdim),
    "amin": lambda L, x, dim, keepdim: x.amin(dim=dim, keepdim=keepdim),
    "logsumexp": lambda L, x, dim, keepdim: L.logsumexp(x, dim=dim, keepdim=keepdim),
    "fn_sum": lambda L, x, dim, keepdim: L.sum(x, dim, keepdim),
    "fn_mean": lambda L, x, dim, keepdim: L.mean(x, dim, keepdim=keepdim),
    "norm": lambda L, x, dim, keepdim: x.norm(dim=dim, keepdim=keepdim),
    "norm_p1": lambda L, x, dim, keepdim: x.norm(1, dim, keepdim),
    "norm_p3": lambda L, x, dim, keepdim: x.norm(3, dim, keepdim),
    "norm_p1.5": lambda L, x, dim, keepdim: x.norm(1.5, dim, keepdim),
    "norm_inf": lambda L, x, dim, keepdim: x.norm(float("inf"), dim, keepdim),
    "norm_neg_inf": lambda L, x, dim, keepdim: x.norm(p=float("-inf"), dim=dim, keepdim=keepdim),
    "fn_norm": lambda L, x, dim, keepdim: L.norm(x, 2, dim, keepdim),
}
DIMS = {"None": None, "0": 0, "1": 1, "-1": -1, "(0,2)": (0, 2), "(-1,0)": (-1, 0), "(1,)": (1,)}


def _torch_reduce(op):
    fn = REDUCE[op]

    def tfn(L, x, dim, keepdim):
        if op == "logsumexp" and dim is None:  # torch.logsumexp needs dim
            dim = tuple(range(x.ndim))
        return fn(L, x, dim, keepdim)

    return tfn


@pytest.mark.parametrize("op", _ids(REDUCE))
@pytest.mark.parametrize("dim", _ids(DIMS))
@pytest.mark.parametrize("keepdim", [False, True], ids=["nokeep", "keep"])
@dtypes
@SETTINGS
@given(shape=array_shapes(min_dims=3, max_dims=3, min_side=2, max_side=4), seed=seeds)
def test_reduce(op, dim, keepdim, dtype, shape, seed):
    check(REDUCE[op], data(shape, dtype, seed), DIMS[dim], keepdim, tfn=_torch_reduce(op), seed=seed)


@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "var", "std"])
@dtypes
def test_reduce_all_default(op, dtype):
    # x.sum(), x.mean() ... with no arguments, on several ranks
    for shape in [(), (5,), (3, 4)] if op not in ("var", "std") else [(5,), (3, 4)]:
        check(lambda L, x: getattr(x, op)(), data(shape, dtype, 3))


@pytest.mark.parametrize("p", [2, 1, 3, 0.5, 1.5, float("inf"), float("-inf")])
@dtypes
def test_norm_where_it_is_zero_or_tied(p, dtype):
    # rows of zeros (the formula's 0/0: torch's gradient is 0 there) and of tied magnitudes
    # (the infinity norms share the gradient evenly), with exact zeros among the elements
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.5, -1.5, 0.5, 0.0], [-2.0, 2.0, 2.0, -1.0]], dtype=dtype)
    check(lambda L, x: x.norm(p, 1), x)
    check(lambda L, x: x.norm(p, 1, keepdim=True), x)
    if p not in (0.5, float("-inf")):  # a zero element makes these norms 0 (p < 1: a 0 ** negative power)
        check(lambda L, x: x.norm(p), x)


@dtypes
def test_norm_zero_counts_nonzeros_and_has_no_gradient(dtype):
    x0 = np.array([[0.0, 2.0, -1.0], [0.0, 0.0, 3.0]], dtype=dtype)
    for L in (mg, torch):
        x = L.tensor(x0, requires_grad=True)
        out = x.norm(0, 1)
        np.testing.assert_array_equal(out.detach().numpy(), [2.0, 1.0])
        out.sum().backward()
        assert x.grad is None  # torch leaves it unset: a count has no slope


def test_norm_errors_as_torch():
    for L in (mg, torch):
        with pytest.raises(RuntimeError, match="Expected a floating point or complex tensor as input. Got Long"):
            L.tensor([1, 2]).norm()
    with pytest.raises(ValueError, match="only vector norms"):
        mg.tensor([1.0, 2.0]).norm("nuc")
    with pytest.raises(TypeError, match="p must be a number"):
        mg.tensor([1.0, 2.0]).norm(True)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("kind", ["normal", "ties"])
@dtypes
def test_max_min_all(op, kind, dtype):
    # x.max() over everything: ties share the gradient evenly (as torch)
    check(lambda L, x: getattr(x, op)(), data((3, 4), dtype, 5, kind))
    check(lambda L, x: getattr(L, op)(x), data((6,), dtype, 6, kind))


@pytest.mark.parametrize("op", ["amax", "amin"])
@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1)], ids=["None", "0", "1", "(0,1)"])
@dtypes
def test_amax_amin_ties(op, dim, dtype):
    check(lambda L, x: getattr(x, op)(dim=dim), data((5, 6), dtype, 7, "ties"))


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("keepdim", [False, True], ids=["nokeep", "keep"])
@dtypes
def test_max_min_dim(op, dim, keepdim, dtype):
    out_m, out_t = check(lambda L, x: getattr(x, op)(dim, keepdim=keepdim), data((3, 4, 5), dtype, dim + 10))
    assert isinstance(out_m, tuple) and len(out_m) == 2
    np.testing.assert_array_equal(out_m.values.detach().numpy(), out_t.values.detach().numpy())
    np.testing.assert_array_equal(out_m.indices.numpy(), out_t.indices.numpy())
    # functional form and the dim= keyword
    check(lambda L, x: getattr(L, op)(x, dim=dim, keepdim=keepdim), data((3, 4, 5), dtype, dim + 20))


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("dim", [None, 0, 1, -1], ids=["None", "0", "1", "-1"])
@pytest.mark.parametrize("keepdim", [False, True], ids=["nokeep", "keep"])
@dtypes
def test_argmax_argmin(op, dim, keepdim, dtype):
    check(lambda L, x: getattr(x, op)(dim=dim, keepdim=keepdim), data((3, 4, 5), dtype, 4), grad=False)
    check(lambda L, x: getattr(L, op)(x, dim), data((4, 6), dtype, 5), grad=False)


# =============================================================== softmax family

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("form", ["method", "function"])
@dtypes
@SETTINGS
@given(shape=array_shapes(min_dims=2, max_dims=3, max_side=5), seed=seeds)
def test_softmax_family(op, dim, form, dtype, shape, seed):
    if form == "method":
        fn = lambda L, x: getattr(x, op)(dim)  # noqa: E731
    else:
        fn = lambda L, x: getattr(L, op)(x, dim=dim)  # noqa: E731
    check(fn, data(shape, dtype, seed, scale=3), seed=seed)


@pytest.mark.parametrize("dim", [0, 1, -1, (0, 1)], ids=["0", "1", "-1", "(0,1)"])
@pytest.mark.parametrize("keepdim", [False, True], ids=["nokeep", "keep"])
@dtypes
def test_logsumexp(dim, keepdim, dtype):
    check(lambda L, x: x.logsumexp(dim, keepdim), data((3, 4, 5), dtype, 11, scale=4))


# =============================================================== cross entropy

def _ce_case(dtype, seed, shape, classes, ignore=None):
    rng = np.random.default_rng(seed)
    logits = data(shape, dtype, seed, scale=2)
    tshape = (shape[0],) + tuple(shape[2:]) if len(shape) > 1 else ()
    target = rng.integers(0, classes, tshape).astype(np.int64)
    if ignore is not None and target.ndim:
        target.flat[:: 3] = ignore
    return logits, target


CE = {
    "mean": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight": dict(weight=True),
    "weight_sum": dict(weight=True, reduction="sum"),
    "weight_none": dict(weight=True, reduction="none"),
    "ignore_index": dict(ignore_index=-100, ignore=-100),
    "ignore_index_2": dict(ignore_index=2, ignore=2),
    "ignore_index_sum": dict(ignore_index=-1, ignore=-1, reduction="sum"),
    "ignore_index_none": dict(ignore_index=-1, ignore=-1, reduction="none"),
    "smoothing": dict(label_smoothing=0.1),
    "smoothing_sum": dict(label_smoothing=0.2, reduction="sum"),
    "smoothing_none": dict(label_smoothing=0.3, reduction="none"),
    "weight_smoothing": dict(weight=True, label_smoothing=0.1),
    "weight_smoothing_none": dict(weight=True, label_smoothing=0.25, reduction="none"),
    "weight_ignore_smoothing": dict(weight=True, ignore_index=1, ignore=1, label_smoothing=0.15),
    "weight_ignore_smoothing_sum": dict(weight=True, ignore_index=1, ignore=1, label_smoothing=0.15, reduction="sum"),
    "full_smoothing": dict(label_smoothing=1.0),
}
CE_SHAPES = {"NC": (6, 5), "NCd1d2": (2, 5, 3, 4), "NCd1": (3, 5, 4), "C": (5,)}


@pytest.mark.parametrize("case", _ids(CE))
@pytest.mark.parametrize("shape", _ids(CE_SHAPES))
@dtypes
def test_cross_entropy(case, shape, dtype):
    opts = dict(CE[case])
    ignore = opts.pop("ignore", None)
    use_weight = opts.pop("weight", False)
    if shape == "C" and ignore is not None:
        ignore = None  # a single target: don't ignore the only sample (mean of nothing is nan)
        opts.pop("ignore_index")
    logits, target = _ce_case(dtype, 3, CE_SHAPES[shape], 5, ignore)
    args = [logits, Const(target)]
    if use_weight:
        args.append(Const(data((5,), dtype, 9, "positive")))
        check(lambda L, x, t, w: L.cross_entropy(x, t, weight=w, **opts), *args)
    else:
        check(lambda L, x, t: L.cross_entropy(x, t, **opts), *args)


@dtypes
@SETTINGS
@given(n=st.integers(1, 6), c=st.integers(2, 6), seed=seeds, smoothing=st.sampled_from([0.0, 0.1]))
def test_cross_entropy_random(dtype, n, c, seed, smoothing):
    logits, target = _ce_case(dtype, seed, (n, c), c)
    check(lambda L, x, t: L.cross_entropy(x, t, label_smoothing=smoothing), logits, Const(target), seed=seed)


# =============================================================== shape ops

SHAPE = {
    "reshape": ((2, 3, 4), lambda L, x: x.reshape(4, 6)),
    "reshape_tuple": ((2, 3, 4), lambda L, x: x.reshape((3, -1))),
    "reshape_fn": ((2, 3, 4), lambda L, x: L.reshape(x, (-1,))),
    "reshape_scalar": ((1,), lambda L, x: x.reshape(())),
    "view": ((2, 3, 4), lambda L, x: x.view(6, 4)),
    "view_-1": ((2, 3, 4), lambda L, x: x.view(-1, 2)),
    "view_as": ((2, 3, 4), lambda L, x: x.view_as(x.reshape(4, 6))),
    "transpose": ((2, 3, 4), lambda L, x: x.transpose(0, 2)),
    "transpose_neg": ((2, 3, 4), lambda L, x: x.transpose(-1, -2)),
    "transpose_fn": ((2, 3, 4), lambda L, x: L.transpose(x, 1, 0)),
    "permute": ((2, 3, 4), lambda L, x: x.permute(2, 0, 1)),
    "permute_tuple": ((2, 3, 4), lambda L, x: x.permute((1, 2, 0))),
    "permute_neg": ((2, 3, 4), lambda L, x: x.permute(-1, 0, -2)),
    "T_2d": ((3, 4), lambda L, x: x.T),
    "T_1d": ((4,), lambda L, x: x.T),
    "mT": ((2, 3, 4), lambda L, x: x.mT),
    "t": ((3, 4), lambda L, x: x.t()),
    "unsqueeze_0": ((3, 4), lambda L, x: x.unsqueeze(0)),
    "unsqueeze_2": ((3, 4), lambda L, x: x.unsqueeze(2)),
    "unsqueeze_-1": ((3, 4), lambda L, x: x.unsqueeze(-1)),
    "unsqueeze_-2": ((3, 4), lambda L, x: x.unsqueeze(-2)),
    "squeeze": ((1, 3, 1, 4), lambda L, x: x.squeeze()),
    "squeeze_dim": ((1, 3, 1, 4), lambda L, x: x.squeeze(2)),
    "squeeze_neg": ((3, 4, 1), lambda L, x: x.squeeze(-1)),
    "squeeze_non1": ((1, 3, 1, 4), lambda L, x: x.squeeze(1)),
    "squeeze_tuple": ((1, 3, 1, 4), lambda L, x: x.squeeze((0, 2))),
    "expand": ((3, 1), lambda L, x: x.expand(3, 4)),
    "expand_new_dims": ((3, 1), lambda L, x: x.expand(2, 3, 5)),
    "expand_-1": ((1, 4), lambda L, x: x.expand(3, -1)),
    "expand_tuple": ((1, 4), lambda L, x: x.expand((2, 3, 4))),
    "expand_as": ((1, 4), lambda L, x: x.expand_as(x.reshape(1, 1, 4).expand(2, 3, 4))),
    "flatten": ((2, 3, 4), lambda L, x: x.flatten()),
    "flatten_1": ((2, 3, 4), lambda L, x: x.flatten(1)),
    "flatten_0_1": ((2, 3, 4, 5), lambda L, x: x.flatten(0, 1)),
    "flatten_1_-2": ((2, 3, 4, 5), lambda L, x: x.flatten(1, -2)),
    "flatten_0d": ((), lambda L, x: x.flatten()),
    "flatten_fn": ((2, 3, 4), lambda L, x: L.flatten(x, start_dim=1)),
    "clone": ((2, 3), lambda L, x: x.clone()),
    "chain": ((2, 3, 4), lambda L, x: x.permute(1, 0, 2).reshape(3, 8).T.unsqueeze(0).expand(2, 8, 3)),
}


@pytest.mark.parametrize("op", _ids(SHAPE))
@dtypes
@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")  # torch deprecates .T on 1-d
def test_shape_ops(op, dtype):
    shape, fn = SHAPE[op]
    check(fn, data(shape, dtype, 2))


# =============================================================== indexing

def _tidx(L, values):
    """An index tensor of the library at hand."""
    return L.tensor(np.asarray(values))


GETITEM = {
    "int": ((4, 5), lambda L, x: x[1]),
    "neg_int": ((4, 5), lambda L, x: x[-1]),
    "int_int": ((4, 5), lambda L, x: x[2, -3]),
    "slice": ((6, 5), lambda L, x: x[1:4]),
    "slice_step": ((7, 5), lambda L, x: x[1::2]),
    "slice_2d": ((6, 5), lambda L, x: x[1:5:2, -3:]),
    "slice_int": ((6, 5), lambda L, x: x[:, 2]),
    "slice_empty": ((6, 5), lambda L, x: x[4:2]),
    "ellipsis": ((3, 4, 5), lambda L, x: x[..., 1]),
    "ellipsis_mid": ((3, 4, 5), lambda L, x: x[0, ..., 1:3]),
    "none": ((3, 4), lambda L, x: x[None]),
    "none_mid": ((3, 4), lambda L, x: x[:, None, 1:]),
    "none_ellipsis": ((3, 4), lambda L, x: x[..., None]),
    "list": ((5, 3), lambda L, x: x[[0, 2, 4]]),
    "list_repeated": ((5, 3), lambda L, x: x[[1, 1, 3, 1]]),
    "list_negative": ((5, 3), lambda L, x: x[[-1, 0, -1]]),
    "list_2d_rows_cols": ((4, 5), lambda L, x: x[[0, 1, 1, 3], [2, 2, 2, 0]]),
    "slice_then_list": ((4, 5), lambda L, x: x[:, [4, 0, 4]]),
    "int_then_list": ((3, 4, 5), lambda L, x: x[1, [0, 0, 3]]),
    "tensor_index": ((5, 3), lambda L, x: x[_tidx(L, [3, 0, 3])]),
    "tensor_index_2d": ((5, 3), lambda L, x: x[_tidx(L, [[0, 1], [1, 4]])]),
    "tensor_index_scalar": ((5, 3), lambda L, x: x[_tidx(L, 2)]),
    "tensor_pair": ((4, 5), lambda L, x: x[_tidx(L, [0, 0, 2]), _tidx(L, [1, 1, 4])]),
    "tensor_index_dim1": ((4, 5), lambda L, x: x[:, _tidx(L, [1, 1, 1])]),
    "bool_mask": ((4, 5), lambda L, x: x[x > 0]),
    "bool_mask_rows": ((4, 5), lambda L, x: x[_tidx(L, [True, False, True, True])]),
    "bool_mask_list": ((4, 5), lambda L, x: x[[True, False, True, False]]),
    "bool_mask_cols": ((4, 5), lambda L, x: x[:, _tidx(L, [False, True, True, False, True])]),
    "bool_mask_2d_const": ((4, 5), lambda L, x: x[_tidx(L, np.arange(20).reshape(4, 5) % 3 == 0)]),
}


@pytest.mark.parametrize("op", _ids(GETITEM))
@dtypes
def test_getitem(op, dtype):
    shape, fn = GETITEM[op]
    check(fn, data(shape, dtype, 6))


# torch has no negative slice steps; numpy (and so microgradnn) has: compare with torch.flip
NEG_STEP = {
    "rev_0": ((5, 3), lambda x: x[::-1], lambda x: torch.flip(x, [0])),
    "rev_1_step2": ((4, 5), lambda x: x[:, ::-2], lambda x: torch.flip(x, [1])[:, ::2]),
    "rev_both": ((4, 5), lambda x: x[::-1, ::-1], lambda x: torch.flip(x, [0, 1])),
    "rev_bounded": ((6, 2), lambda x: x[4:0:-2], lambda x: x[1:5].flip(0)[::2]),
}


@pytest.mark.parametrize("op", _ids(NEG_STEP))
@dtypes
def test_getitem_negative_step(op, dtype):
    shape, fm, ft = NEG_STEP[op]
    check(lambda L, x: fm(x), data(shape, dtype, 8), tfn=lambda L, x: ft(x))


# =============================================================== cat / stack / split / chunk / unbind

@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@dtypes
def test_cat(dim, dtype):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, s in enumerate(shapes):
        s[dim] += i  # different lengths along dim
    check(lambda L, *xs: L.cat(list(xs), dim=dim), *[data(s, dtype, i) for i, s in enumerate(shapes)])


@dtypes
def test_cat_default_dim_and_single(dtype):
    check(lambda L, a, b: L.cat((a, b)), data((2, 3), dtype, 1), data((4, 3), dtype, 2))
    check(lambda L, a: L.cat([a], 1), data((2, 3), dtype, 3))
    check(lambda L, a, b: L.cat([a, b], 0), data((2, 3), dtype, 1), Const(data((1, 3), dtype, 2)))


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -4])
@dtypes
def test_stack(dim, dtype):
    check(lambda L, *xs: L.stack(xs, dim=dim), *[data((2, 3, 4), dtype, i) for i in range(3)])


@dtypes
def test_stack_1d_and_default(dtype):
    check(lambda L, a, b: L.stack([a, b]), data((5,), dtype, 1), data((5,), dtype, 2))


SPLIT = {
    "int_even": (6, 0, 2),
    "int_uneven": (7, 0, 3),
    "int_larger": (4, 0, 10),
    "int_dim1": (5, 1, 2),
    "int_neg_dim": (5, -1, 4),
    "sections": (6, 0, [1, 2, 3]),
    "sections_dim1": (5, 1, [2, 3]),
    "sections_zero": (5, -1, [0, 5]),
    "sections_tuple": (6, -1, (4, 1, 1)),
}


def _split_shape(n, dim):
    shape = [3, 3, 3]
    shape[dim] = n
    return shape


@pytest.mark.parametrize("case", _ids(SPLIT))
@pytest.mark.parametrize("form", ["method", "function"])
@dtypes
def test_split(case, form, dtype):
    n, dim, sizes = SPLIT[case]
    x = data(_split_shape(n, dim), dtype, 3)
    if form == "method":
        check(lambda L, t: t.split(sizes, dim), x)
    else:
        check(lambda L, t: L.split(t, sizes, dim=dim), x)


@pytest.mark.parametrize("n,chunks", [(6, 3), (7, 3), (5, 2), (6, 4), (3, 5), (1, 1)])
@pytest.mark.parametrize("dim", [0, -1])
@dtypes
def test_chunk(n, chunks, dim, dtype):
    check(lambda L, t: t.chunk(chunks, dim), data(_split_shape(n, dim), dtype, 4))
    check(lambda L, t: L.chunk(t, chunks, dim=dim), data(_split_shape(n, dim), dtype, 5))


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@dtypes
def test_unbind(dim, dtype):
    check(lambda L, t: t.unbind(dim), data((2, 3, 4), dtype, 6))
    check(lambda L, t: L.unbind(t, dim), data((2, 3, 4), dtype, 7))


@dtypes
def test_unbind_partial_use(dtype):
    # only some pieces reach the loss: the others' gradient is zero
    check(lambda L, t: t.unbind(1)[2] * 2 + t.split(2, 1)[0].sum(1), data((3, 4), dtype, 8))


@dtypes
def test_iter(dtype):
    check(lambda L, t: tuple(row * (i + 1) for i, row in enumerate(t)), data((3, 4), dtype, 9))


# =============================================================== where / maximum / minimum

WHERE = {
    "tensors": (lambda L, c, a, b: L.where(c, a, b), (3, 4), (3, 4)),
    "broadcast": (lambda L, c, a, b: L.where(c, a, b), (3, 1), (4,)),
    "scalar_b": (lambda L, c, a, b: L.where(c, a, 0.5), (3, 4), (3, 4)),
    "scalar_a": (lambda L, c, a, b: L.where(c, -1.0, b), (3, 4), (3, 4)),
    "method": (lambda L, c, a, b: a.where(c, b), (3, 4), (1, 4)),
    "masked_fill": (lambda L, c, a, b: a.masked_fill(c, 2.0), (3, 4), (3, 4)),
    "self_condition": (lambda L, c, a, b: L.where(a > 0, a, a * b), (3, 4), (3, 4)),
}


@pytest.mark.parametrize("case", _ids(WHERE))
@dtypes
def test_where(case, dtype):
    fn, sa, sb = WHERE[case]
    cond = Const(data((3, 4), np.float64, 1) > 0)
    check(fn, cond, data(sa, dtype, 2), data(sb, dtype, 3))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
@pytest.mark.parametrize("form", ["function", "method", "max_tensor"])
@dtypes
def test_maximum_minimum_ties(op, form, dtype):
    a, b = data((4, 5), dtype, 1, "ties"), data((4, 5), dtype, 2, "ties")
    assert (a == b).any()
    if form == "function":
        check(lambda L, x, y: getattr(L, op)(x, y), a, b)
    elif form == "method":
        check(lambda L, x, y: getattr(x, op)(y), a, b)
    else:  # x.max(other) / x.min(other) is maximum / minimum
        check(lambda L, x, y: getattr(x, op[:3])(y), a, b)
    check(lambda L, x, y: getattr(L, op)(x, y), a, b[0:1])  # broadcast, with ties
    check(lambda L, x, y: getattr(L, op)(x, y), a, a)  # all ties: half each


# =============================================================== comparisons

COMPARE = {
    "lt": lambda L, a, b: a < b,
    "le": lambda L, a, b: a <= b,
    "gt": lambda L, a, b: a > b,
    "ge": lambda L, a, b: a >= b,
    "eq": lambda L, a, b: a == b,
    "ne": lambda L, a, b: a != b,
    "lt_scalar": lambda L, a, b: a < 0.5,
    "ge_scalar": lambda L, a, b: a >= 0,
    "eq_scalar": lambda L, a, b: a == 1.0,
    "rgt_scalar": lambda L, a, b: 0 > a,
    "method_eq": lambda L, a, b: a.eq(b),
    "method_lt": lambda L, a, b: a.lt(b),
    "and_or_not": lambda L, a, b: ((a > 0) & (b < 1)) | ~(a == b),
}


@pytest.mark.parametrize("op", _ids(COMPARE))
@dtypes
def test_comparisons(op, dtype):
    a, b = data((3, 4), dtype, 1, "ties"), data((4,), dtype, 2, "ties")
    out_m, _ = check(COMPARE[op], a, b)
    assert out_m.dtype == mg.bool_ and not out_m.requires_grad and out_m.grad_fn is None


# =============================================================== creation: dtypes and shapes like torch

CREATE = {
    "zeros": lambda L: L.zeros(2, 3),
    "zeros_tuple": lambda L: L.zeros((2, 3)),
    "zeros_list": lambda L: L.zeros([4]),
    "zeros_f64": lambda L: L.zeros(2, dtype=L.float64),
    "zeros_int": lambda L: L.zeros(2, 2, dtype=L.int64),
    "zeros_0d": lambda L: L.zeros(()),
    "ones": lambda L: L.ones(3),
    "ones_f64": lambda L: L.ones((2, 1), dtype=L.float64),
    "ones_bool": lambda L: L.ones(2, dtype=L.bool),
    "full_float": lambda L: L.full((2, 3), 1.5),
    "full_int": lambda L: L.full((2,), 7),
    "full_bool": lambda L: L.full((2,), True),
    "full_dtype": lambda L: L.full((2, 2), 3, dtype=L.float64),
    "arange_int": lambda L: L.arange(5),
    "arange_start_end": lambda L: L.arange(2, 9),
    "arange_step": lambda L: L.arange(1, 10, 3),
    "arange_neg_step": lambda L: L.arange(5, -3, -2),
    "arange_float": lambda L: L.arange(0.0, 1.0, 0.25),
    "arange_float_end": lambda L: L.arange(5.0),
    "arange_mixed": lambda L: L.arange(0, 2, 0.5),
    "arange_dtype": lambda L: L.arange(4, dtype=L.float64),
    "tensor_float": lambda L: L.tensor([1.5]),
    "tensor_int": lambda L: L.tensor([1]),
    "tensor_nested": lambda L: L.tensor([[1.0, 2.0], [3.0, 4.0]]),
    "tensor_mixed_list": lambda L: L.tensor([1, 2.5]),
    "tensor_bool": lambda L: L.tensor([True, False]),
    "tensor_scalar_float": lambda L: L.tensor(2.5),
    "tensor_scalar_int": lambda L: L.tensor(3),
    "tensor_np_f64": lambda L: L.tensor(np.array([1.0, 2.0])),
    "tensor_np_f32": lambda L: L.tensor(np.array([1.0, 2.0], dtype=np.float32)),
    "tensor_np_i32": lambda L: L.tensor(np.array([1, 2], dtype=np.int32)),
    "tensor_np_i64": lambda L: L.tensor(np.array([1, 2], dtype=np.int64)),
    "tensor_np_bool": lambda L: L.tensor(np.array([True])),
    "tensor_dtype": lambda L: L.tensor([1, 2], dtype=L.float32),
    "tensor_dtype_f64": lambda L: L.tensor([1.5], dtype=L.float64),
    "tensor_empty": lambda L: L.tensor([]),
    "zeros_like": lambda L: L.zeros_like(L.ones(2, 3, dtype=L.float64)),
    "ones_like": lambda L: L.ones_like(L.arange(4)),
    "ones_like_dtype": lambda L: L.ones_like(L.arange(4), dtype=L.float32),
    "full_like": lambda L: L.full_like(L.zeros(2, 2), 0.5),
    "full_like_int": lambda L: L.full_like(L.arange(3), 7),
    "full_like_int_float_fill": lambda L: L.full_like(L.arange(3), 2.7),
    "zeros_like_dtype": lambda L: L.zeros_like(L.ones(3), dtype=L.int64),
    "empty_shape": lambda L: L.empty(2, 3).shape and L.zeros(L.empty(2, 3).shape),
    "empty_like_shape": lambda L: L.zeros(L.empty_like(L.ones(4, 1, dtype=L.float64)).shape, dtype=L.float64),
    "randn_dtype": lambda L: L.zeros_like(L.randn(2, 3)),
    "rand_dtype": lambda L: L.zeros_like(L.rand(2, dtype=L.float64)),
    "randint_dtype": lambda L: L.zeros_like(L.randint(0, 5, (3,))),
}


@pytest.mark.parametrize("case", _ids(CREATE))
def test_creation(case):
    out_m, out_t = CREATE[case](mg), CREATE[case](torch)
    assert isinstance(out_m, mg.Tensor)
    assert out_m.shape == tuple(out_t.shape), (out_m.shape, tuple(out_t.shape))
    assert np_dtype(out_m) == np_dtype(out_t), (out_m.dtype, out_t.dtype)
    assert_close(out_m.numpy(), out_t.numpy(), np_dtype(out_t), case)
    assert not out_m.requires_grad


@pytest.mark.parametrize("case", ["zeros", "ones", "randn", "rand", "full"])
def test_creation_requires_grad(case):
    if case == "full":
        m, t = mg.full((2, 3), 1.5, requires_grad=True), torch.full((2, 3), 1.5, requires_grad=True)
    else:
        m, t = getattr(mg, case)(2, 3, requires_grad=True), getattr(torch, case)(2, 3, requires_grad=True)
    assert m.requires_grad and t.requires_grad and m.is_leaf and np_dtype(m) == np_dtype(t)


def test_default_dtype_float64():
    prev = mg.get_default_dtype()
    prev_t = torch.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    torch.set_default_dtype(torch.float64)
    try:
        for fn in (
            lambda L: L.tensor([1.5]),
            lambda L: L.zeros(2),
            lambda L: L.arange(0.0, 1.0, 0.5),
            lambda L: L.full((1,), 2.0),
            lambda L: L.tensor([1]),
            lambda L: L.arange(3),
        ):
            assert np_dtype(fn(mg)) == np_dtype(fn(torch))
    finally:
        mg.set_default_dtype(prev)
        torch.set_default_dtype(prev_t)


# =============================================================== output dtypes of mixed operands

MIXED = {
    "f32*pyfloat": ("f32", lambda L, x: x * 2.5),
    "pyfloat/f32": ("f32", lambda L, x: 2.5 / x),
    "f32**pyfloat": ("f32", lambda L, x: x**2.5),
    "pyfloat**f32": ("f32", lambda L, x: 2.5**x),
    "f32+pyint": ("f32", lambda L, x: x + 3),
    "f32>pyfloat": ("f32", lambda L, x: x > 0.5),
    "f32*f64": ("f32", lambda L, x: x * x.double()),
    "f64+f32": ("f64", lambda L, x: x + x.float()),
    "f32@f64_err_free_add": ("f32", lambda L, x: x.double() - x),
    "f64*pyfloat": ("f64", lambda L, x: x * 1e-3),
    "int*pyint": ("i64", lambda L, x: x * 3),
    "int+int": ("i64", lambda L, x: x + x),
    "int.sum": ("i64", lambda L, x: x.sum()),
    "int>pyint": ("i64", lambda L, x: x > 2),
    "int*pyfloat": ("i64", lambda L, x: x * 0.5),
    "int/pyint": ("i64", lambda L, x: x / 2),
    "int/int": ("i64", lambda L, x: x / (x + 1)),
    "int+f32": ("i64", lambda L, x: x + L.ones(1)),
    "int*f64": ("i64", lambda L, x: x * L.ones(1, dtype=L.float64)),
    "f32*0d_f64": ("f32", lambda L, x: x * L.tensor(2.0, dtype=L.float64)),
    "f64*0d_f32": ("f64", lambda L, x: x * L.tensor(2.0)),
    "int*0d_f32": ("i64", lambda L, x: x * L.tensor(2.0)),
    "where_int_pyfloat": ("i64", lambda L, x: L.where(x > 1, x, 0.5)),
    "maximum_int_f32": ("i64", lambda L, x: L.maximum(x, L.ones(3))),
    "int**pyfloat": ("i64", lambda L, x: x**0.5),
    "int-0d_int32": ("i64", lambda L, x: x - L.tensor(1, dtype=L.int32)),
    "bool*pyint": ("i64", lambda L, x: (x > 1) * 3),
    "bool+pyfloat": ("i64", lambda L, x: (x > 1) + 0.5),
    "f32.to_f64": ("f32", lambda L, x: x.to(L.float64)),
    "f64.float": ("f64", lambda L, x: x.float()),
    "f32.long": ("f32", lambda L, x: x.long()),
    "int.float": ("i64", lambda L, x: x.float()),
    "type_as": ("f32", lambda L, x: x.type_as(L.zeros(1, dtype=L.float64))),
}
_SOURCES = {
    "f32": lambda L: L.tensor(np.array([0.5, 1.5, 2.5], dtype=np.float32)),
    "f64": lambda L: L.tensor(np.array([0.5, 1.5, 2.5])),
    "i64": lambda L: L.arange(1, 4),
}


@pytest.mark.parametrize("case", _ids(MIXED))
def test_mixed_dtype(case):
    src, fn = MIXED[case]
    out_m, out_t = fn(mg, _SOURCES[src](mg)), fn(torch, _SOURCES[src](torch))
    assert np_dtype(out_m) == np_dtype(out_t), f"{case}: mg {out_m.dtype}, torch {out_t.dtype}"
    assert_close(out_m.numpy(), out_t.numpy(), np_dtype(out_t), case)


@dtypes
def test_mixed_dtype_gradients(dtype):
    # a float32 leaf used in float64 arithmetic gets a gradient of its own dtype
    other = np.float64 if dtype == np.float32 else np.float32
    check(lambda L, a, b: (a * b).exp(), data((3,), dtype, 1), data((3,), other, 2))
    check(lambda L, a: (a.to(L.float64 if dtype == np.float32 else L.float32) * 2).sum(), data((3,), dtype, 1))
    # integer tensors meeting a float leaf: the result (and the gradient) stay in the float's dtype
    ints = Const(np.array([[1, -2, 3], [0, 4, 5]], dtype=np.int64))
    check(lambda L, a, i: a * i + i / 4 - L.maximum(a, i) + L.where(i > 2, a, i), data((2, 3), dtype, 3), ints)


# =============================================================== numerical stability

LARGE = np.array([[1000.0, -1000.0, 0.0, 999.0], [-1000.0, -1000.0, -999.0, -1000.0], [1000.0, 1000.0, 1000.0, 1000.0]])


def _raising(fn):
    """Run ``fn`` with numpy's overflow / divide / invalid errors raised and warnings turned
    into errors (underflow to 0 is the right answer here, so it stays quiet)."""
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


STABLE = {
    "softmax_-1": lambda L, x: L.softmax(x, -1),
    "softmax_0": lambda L, x: L.softmax(x, 0),
    "log_softmax_-1": lambda L, x: L.log_softmax(x, -1),
    "log_softmax_0": lambda L, x: L.log_softmax(x, dim=0),
    "logsumexp_-1": lambda L, x: L.logsumexp(x, -1),
    "logsumexp_0": lambda L, x: L.logsumexp(x, 0, keepdim=True),
    "logsumexp_all": lambda L, x: L.logsumexp(x, (0, 1)),
}


@pytest.mark.parametrize("op", _ids(STABLE))
@dtypes
def test_stability_large_logits(op, dtype):
    def run():
        out_m, out_t = check(STABLE[op], LARGE.astype(dtype))
        assert np.isfinite(out_m.detach().numpy()).all()

    _raising(run)


CE_STABLE = {
    "mean": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "smoothing": dict(label_smoothing=0.1),
    "weight": dict(weight=True),
}


@pytest.mark.parametrize("case", _ids(CE_STABLE))
@dtypes
def test_stability_cross_entropy(case, dtype):
    opts = dict(CE_STABLE[case])
    target = Const(np.array([1, 0, 3], dtype=np.int64))

    def run():
        if opts.pop("weight", False):
            w = Const(np.array([1.0, 2.0, 0.5, 1.5], dtype=dtype))
            out_m, _ = check(lambda L, x, t, w: L.cross_entropy(x, t, weight=w, **opts), LARGE.astype(dtype), target, w)
        else:
            out_m, _ = check(lambda L, x, t: L.cross_entropy(x, t, **opts), LARGE.astype(dtype), target)
        assert np.isfinite(out_m.detach().numpy()).all()

    _raising(run)


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "softmax", "gelu", "gelu_tanh"])
@dtypes
def test_stability_saturating(op, dtype):
    x = np.array([-100.0, -50.0, -20.0, 0.5, 20.0, 50.0, 100.0], dtype=dtype)
    fns = {
        "sigmoid": lambda L, x: L.sigmoid(x),
        "tanh": lambda L, x: L.tanh(x),
        "softmax": lambda L, x: L.softmax(x * 10, 0),
        "gelu": lambda L, x: L.gelu(x),
        "gelu_tanh": lambda L, x: L.gelu(x, approximate="tanh"),
    }

    def run():
        out_m, _ = check(fns[op], x)
        assert np.isfinite(out_m.detach().numpy()).all()

    _raising(run)


# =============================================================== dtype of every op follows its input

DTYPE_OPS = {
    **{f"unary_{k}": (lambda fn: lambda L, x: fn(L, x))(v[0]) for k, v in UNARY.items() if v[1] != "positive"},
    **{f"scalar_{k}": (lambda fn: lambda L, x: fn(L, x))(v[0]) for k, v in SCALAR.items() if v[1] == "normal"},
    **{f"reduce_{k}": (lambda k: lambda L, x: _torch_reduce(k)(L, x, 1, False))(k) for k in REDUCE},
    "softmax": lambda L, x: L.softmax(x, 1),
    "log_softmax": lambda L, x: L.log_softmax(x, 1),
    "matmul": lambda L, x: x @ x.T,
    "linear": lambda L, x: L.linear(x, x),
    "cross_entropy": lambda L, x: L.cross_entropy(x, L.tensor(np.array([0, 2, 1]))),
    "getitem": lambda L, x: x[[0, 0]],
    "cat": lambda L, x: L.cat([x, x]),
    "stack": lambda L, x: L.stack([x, x]),
    "where": lambda L, x: L.where(x > 0, x, 0.0),
    "maximum": lambda L, x: L.maximum(x, x * 2),
    "clamp": lambda L, x: x.clamp(-0.1, 0.1),
    "max_dim": lambda L, x: x.max(1),
}


@pytest.mark.parametrize("op", _ids(DTYPE_OPS))
@dtypes
def test_output_dtype(op, dtype):
    x = data((3, 3), dtype, 12)
    out_m, out_t = check(DTYPE_OPS[op], x)
    for om in out_m if isinstance(out_m, tuple) else (out_m,):
        if om.dtype.kind == "f":
            assert om.dtype == np.dtype(dtype)
