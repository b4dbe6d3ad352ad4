"""Every primitive's gradient against float64 central finite differences (``mg.gradcheck``).

Hypothesis draws shapes (broadcasting pairs for binary ops) and a seed; the values come
from :func:`conftest.floats`, kept away from kinks and singularities. Each case also
checks that the graph it builds really contains the primitives it claims to cover, and
:data:`COVERAGE` (primitive name -> tests) feeds the meta test at the bottom: a new
differentiable primitive without a gradient rule or a gradcheck here fails the suite.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import microgradnn as mg
from microgradnn.autograd import Function, Variable
from microgradnn.ops import all_primitives
from microgradnn.ops import elementwise as E
from microgradnn.ops import recurrent as RNN

from conftest import broadcast_shapes, floats, seeds, shapes, to_torch

# ----------------------------------------------------------------------------- helpers

#: primitive class name -> the tests that gradcheck it
COVERAGE: dict[str, list[str]] = defaultdict(list)


def covers(*ops: str):
    """Record that the decorated test gradchecks ``ops``."""

    def mark(test):
        for op in ops:
            COVERAGE[op].append(test.__name__)
        return test

    return mark


def graph_ops(result) -> set[str]:
    """Class names of every node in the graph behind ``result`` (a tensor or a tuple of them)."""
    outs = [result] if isinstance(result, Variable) else [r for r in result if isinstance(r, Variable)]
    stack = [o._ctx for o in outs if o._ctx is not None]
    seen, names = set(), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        stack.extend(i._ctx for i in node.inputs if isinstance(i, Variable) and i._ctx is not None)
    return names


def leaf(array, requires_grad: bool = True) -> mg.Tensor:
    return mg.tensor(np.asarray(array, dtype=np.float64), dtype=mg.float64, requires_grad=requires_grad)


def check(fn, *inputs, ops=(), **tolerances) -> None:
    """gradcheck ``fn`` after making sure its graph contains the primitives ``ops``."""
    found = graph_ops(fn(*inputs))
    assert set(ops) <= found, f"expected the graph to contain {sorted(ops)}, it has {sorted(found)}"
    assert mg.gradcheck(fn, *inputs, **tolerances)


def distinct(seed: int, shape: tuple) -> np.ndarray:
    """float64 values at least 0.2 apart (max/min/argmax without ties), shuffled."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    values = (rng.permutation(n) - n / 2) * 0.25 + rng.uniform(0.0, 0.05, n)
    return values.reshape(shape)


def draw_dim(data, ndim: int, allow_tuple: bool = True):
    """None, an int (possibly negative) or a tuple of distinct dims of an ``ndim``-d array."""
    if ndim == 0:
        return None
    kind = data.draw(st.sampled_from(["none", "int", "tuple"] if allow_tuple else ["none", "int"]))
    if kind == "none":
        return None
    if kind == "int":
        return data.draw(st.integers(-ndim, ndim - 1))
    dims = data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if data.draw(st.booleans()) else d for d in dims)


def reduced_count(shape: tuple, dim) -> int:
    if dim is None:
        return int(np.prod(shape, dtype=np.int64))
    dims = (dim,) if isinstance(dim, int) else dim
    return int(np.prod([shape[d] for d in dims], dtype=np.int64))


# ============================================================================= elementwise

# name -> (fn, primitives, floats() options)
UNARY = {
    "neg": (lambda x: -x, ["Neg"], {}),
    "abs": (lambda x: x.abs(), ["Abs"], {}),
    "abs_builtin": (lambda x: abs(x), ["Abs"], {}),
    "exp": (lambda x: x.exp(), ["Exp"], {}),
    "log": (lambda x: x.log(), ["Log"], dict(positive=True)),
    "sqrt": (lambda x: x.sqrt(), ["Sqrt"], dict(positive=True)),
    "tanh": (lambda x: x.tanh(), ["Tanh"], {}),
    "sigmoid": (lambda x: x.sigmoid(), ["Sigmoid"], {}),
    "relu": (lambda x: x.relu(), ["Relu"], {}),
    "gelu": (lambda x: x.gelu(), ["Gelu"], {}),
    "gelu_tanh": (lambda x: x.gelu(approximate="tanh"), ["Gelu"], {}),
    "clamp_min": (lambda x: x.clamp(min=-0.5), ["Clamp"], dict(avoid=[-0.5])),
    "clamp_max": (lambda x: x.clamp(max=0.7), ["Clamp"], dict(avoid=[0.7])),
    "clamp_both": (lambda x: x.clamp(-0.5, 0.7), ["Clamp"], dict(avoid=[-0.5, 0.7])),
    "clip_fn": (lambda x: mg.clip(x, min=-1.0, max=1.5), ["Clamp"], dict(avoid=[-1.0, 1.5])),
    "pow_float": (lambda x: x**2.5, ["Pow"], dict(positive=True)),
    "pow_negative": (lambda x: x**-1.5, ["Pow"], dict(positive=True)),
    "pow_int": (lambda x: x**3, ["Pow"], {}),  # integral exponent: any sign of base
    "pow_zero": (lambda x: x**0, ["Pow"], {}),
    "rpow": (lambda x: 2.0**x, ["Pow"], {}),
    "rpow_fraction": (lambda x: 0.5**x, ["Pow"], {}),
    "add_scalar": (lambda x: x + 2.0, ["Add"], {}),
    "radd_scalar": (lambda x: 2 + x, ["Add"], {}),
    "sub_scalar": (lambda x: x - 1.5, ["Sub"], {}),
    "rsub_scalar": (lambda x: 1.5 - x, ["Sub"], {}),
    "mul_scalar": (lambda x: x * 3.0, ["Mul"], {}),
    "rmul_scalar": (lambda x: -2 * x, ["Mul"], {}),
    "div_scalar": (lambda x: x / 4.0, ["Div"], {}),
    "rdiv_scalar": (lambda x: 3.0 / x, ["Reciprocal", "Mul"], {}),  # as PyTorch: x.reciprocal() * 3
    "maximum_scalar": (lambda x: mg.maximum(x, 0.3), ["Maximum"], dict(avoid=[0.3])),
    "minimum_scalar": (lambda x: x.minimum(0.3), ["Minimum"], dict(avoid=[0.3])),
    "cast": (lambda x: E.Cast.apply(x, dtype=np.dtype(np.float64)), ["Cast"], {}),
    "clone": (lambda x: x.clone() * 1.0, ["Clone"], {}),
    "masked_fill": (lambda x: x.masked_fill(x.detach() > 0, 0.25), ["Where"], {}),
}
for _name, (_fn, _ops, _kw) in UNARY.items():
    for _op in _ops:
        COVERAGE[_op].append(f"test_unary[{_name}]")


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes(), seed=seeds)
def test_unary(name, shape, seed):
    fn, ops, options = UNARY[name]
    check(fn, leaf(floats(seed, shape, **options)), ops=ops)


# name -> (fn, primitives, options for a, options for b)
BINARY = {
    "add": (lambda a, b: a + b, ["Add"], {}, {}),
    "sub": (lambda a, b: a - b, ["Sub"], {}, {}),
    "mul": (lambda a, b: a * b, ["Mul"], {}, {}),
    "div": (lambda a, b: a / b, ["Div"], {}, dict(low=0.5)),
    "pow": (lambda a, b: a**b, ["Pow"], dict(positive=True, low=0.5), {}),
    # magnitudes in disjoint ranges: never a tie, never within eps of one
    "maximum": (lambda a, b: mg.maximum(a, b), ["Maximum"], dict(high=0.9), dict(low=1.1)),
    "minimum": (lambda a, b: mg.minimum(a, b), ["Minimum"], dict(low=1.1), dict(high=0.9)),
    "max_tensor": (lambda a, b: a.max(b), ["Maximum"], dict(high=0.9), dict(low=1.1)),
    "min_tensor": (lambda a, b: a.min(b), ["Minimum"], dict(high=0.9), dict(low=1.1)),
}
for _name, (_fn, _ops, _ka, _kb) in BINARY.items():
    for _op in _ops:
        COVERAGE[_op].append(f"test_binary_broadcast[{_name}]")


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=broadcast_shapes(), seed=seeds, needs=st.sampled_from([(True, True), (True, False), (False, True)]))
def test_binary_broadcast(name, shapes, seed, needs):
    fn, ops, options_a, options_b = BINARY[name]
    a = leaf(floats(seed, shapes[0], **options_a), requires_grad=needs[0])
    b = leaf(floats(seed + 1, shapes[1], **options_b), requires_grad=needs[1])
    check(fn, a, b, ops=ops)


@covers("Add", "Mul", "Sub")
@given(shape=shapes(), seed=seeds)
def test_same_tensor_on_both_sides(shape, seed):
    x = leaf(floats(seed, shape))
    check(lambda x: x * x + x - x * 2.0, x, ops=["Add", "Mul", "Sub"])


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_the_gradient_like_torch(op):
    torch = pytest.importorskip("torch")
    a = leaf([1.0, 2.0, 3.0, -1.0])
    b = leaf([1.0, 0.0, 3.0, 5.0])
    getattr(mg, op)(a, b).backward(mg.tensor([1.0, 2.0, 3.0, 4.0], dtype=mg.float64))
    ta, tb = to_torch(a), to_torch(b)
    getattr(torch, op)(ta, tb).backward(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=ta.dtype))
    np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_array_equal(b.grad.numpy(), tb.grad.numpy())
    assert a.grad.numpy()[0] == 0.5  # a tie shares the gradient


@covers("Where")
@given(shapes=broadcast_shapes(num_shapes=3), seed=seeds, needs=st.sampled_from([(True, True), (True, False), (False, True)]))
def test_where_broadcast(shapes, seed, needs):
    rng = np.random.default_rng(seed)
    condition = mg.tensor(rng.random(shapes[0]) > 0.5)
    a = leaf(floats(seed, shapes[1]), requires_grad=needs[0])
    b = leaf(floats(seed + 1, shapes[2]), requires_grad=needs[1])
    check(lambda a, b: mg.where(condition, a, b), a, b, ops=["Where"])
    check(lambda a, b: a.where(condition, b), a, b, ops=["Where"])


@covers("Cast")
def test_cast_gradient_comes_back_in_the_input_dtype():
    x = leaf([1.0, -2.0, 3.0])
    y = x.float()
    assert y.dtype == mg.float32 and "Cast" in graph_ops(y)
    (y * 2).sum().backward()
    assert x.grad.dtype == mg.float64
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


# ----------------------------------------------------------------------------- comparisons

COMPARISONS = {
    "Lt": lambda a, b: a < b,
    "Le": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b,
    "Ge": lambda a, b: a >= b,
    "Eq": lambda a, b: a == b,
    "Ne": lambda a, b: a != b,
}


@pytest.mark.parametrize("name", sorted(COMPARISONS))
@given(shapes=broadcast_shapes(), seed=seeds)
def test_comparison_outputs_never_require_grad(name, shapes, seed):
    a, b = leaf(floats(seed, shapes[0])), leaf(floats(seed + 1, shapes[1]))
    expected = getattr(np, {"Lt": "less", "Le": "less_equal", "Gt": "greater", "Ge": "greater_equal", "Eq": "equal", "Ne": "not_equal"}[name])
    for out in (COMPARISONS[name](a, b), COMPARISONS[name](a, 0.5), getattr(E, name).apply(a, b)):
        assert out.dtype == mg.bool_
        assert not out.requires_grad and out.grad_fn is None and out.is_leaf
    np.testing.assert_array_equal(COMPARISONS[name](a, b).numpy(), expected(a.detach().numpy(), b.detach().numpy()))


def test_non_differentiable_primitives_are_exactly_the_tested_comparisons():
    nondiff = {p.__name__ for p in all_primitives() if not p.differentiable}
    assert nondiff <= set(COMPARISONS), f"non-differentiable primitives without a test: {nondiff - set(COMPARISONS)}"


# ============================================================================= reductions


@covers("Sum", "Mean")
@given(shape=shapes(), seed=seeds, data=st.data())
def test_sum_mean(shape, seed, data):
    dim = draw_dim(data, len(shape))
    keepdim = data.draw(st.booleans())
    x = leaf(floats(seed, shape))
    check(lambda x: x.sum(dim, keepdim=keepdim), x, ops=["Sum"])
    check(lambda x: x.mean(dim, keepdim=keepdim), x, ops=["Mean"])
    check(lambda x: mg.sum(x) * mg.mean(x), x, ops=["Sum", "Mean"])


@covers("Var", "Std")
@given(shape=shapes(), seed=seeds, data=st.data())
def test_var_std(shape, seed, data):
    dim = draw_dim(data, len(shape))
    keepdim = data.draw(st.booleans())
    correction = data.draw(st.sampled_from([0, 1]))
    assume(reduced_count(shape, dim) >= 2)  # a variance of one element is 0 (or 0/0) and its sqrt has no derivative
    x = leaf(floats(seed, shape))
    check(lambda x: x.var(dim, keepdim=keepdim, correction=correction), x, ops=["Var"])
    check(lambda x: x.std(dim, keepdim=keepdim, correction=correction), x, ops=["Std"])
    check(lambda x: x.var(dim, unbiased=False) + mg.std(x), x, ops=["Var"])


@covers("VectorNorm")
@given(shape=shapes(), seed=seeds, data=st.data())
def test_vector_norm(shape, seed, data):
    dim = draw_dim(data, len(shape))
    keepdim = data.draw(st.booleans())
    x = leaf(distinct(seed, shape) + 0.01)  # no zero element, no tied magnitude: the norms are smooth here
    for p in (2, 1, 3, 1.5, 0.5):
        check(lambda x: x.norm(p, dim, keepdim), x, ops=["VectorNorm"])
    check(lambda x: x.norm(float("inf"), dim, keepdim) + mg.norm(x, float("-inf"), dim, keepdim), x, ops=["VectorNorm"])
    check(lambda x: x.norm() * x.norm("fro", dim if not isinstance(dim, tuple) or len(dim) <= 2 else None), x,
          ops=["VectorNorm"])


@covers("Amax", "Amin")
@given(shape=shapes(), seed=seeds, data=st.data())
def test_amax_amin_and_full_max_min(shape, seed, data):
    dim = draw_dim(data, len(shape))
    keepdim = data.draw(st.booleans())
    x = leaf(distinct(seed, shape))
    check(lambda x: x.amax(dim, keepdim=keepdim), x, ops=["Amax"])
    check(lambda x: x.amin(dim, keepdim=keepdim), x, ops=["Amin"])
    check(lambda x: x.max(), x, ops=["Amax"])
    check(lambda x: mg.min(x), x, ops=["Amin"])


@covers("SelectAlongDim")
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_max_min_along_dim(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    x = leaf(distinct(seed, shape))
    check(lambda x: x.max(dim, keepdim=keepdim).values, x, ops=["SelectAlongDim"])
    check(lambda x: x.min(dim=dim, keepdim=keepdim)[0], x, ops=["SelectAlongDim"])


def test_extreme_ties_match_torch():
    torch = pytest.importorskip("torch")
    data = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    cases = {
        "max": (lambda m: m.max(), lambda t: t.max()),
        "min": (lambda m: m.min(), lambda t: t.min()),
        "amax_dim": (lambda m: m.amax(1), lambda t: t.amax(1)),
        "amin_dims": (lambda m: m.amin((0, 1), keepdim=True), lambda t: t.amin((0, 1), keepdim=True)),
    }
    for name, (f_mg, f_torch) in cases.items():
        x, tx = leaf(data), torch.tensor(data, requires_grad=True)
        (f_mg(x) * 3.0).sum().backward()
        (f_torch(tx) * 3.0).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), err_msg=name)


def test_max_along_dim_with_ties_sends_the_gradient_to_the_returned_index_only():
    x = leaf([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    values, indices = x.max(1)
    values.sum().backward()
    expected = np.zeros((2, 3))
    expected[np.arange(2), indices.numpy()] = 1.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)


@covers("LogSumExp", "Softmax", "LogSoftmax")
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_logsumexp_softmax_log_softmax(shape, seed, data):
    ndim = len(shape)
    dims = draw_dim(data, ndim)
    dims = tuple(range(ndim)) if dims is None else dims
    dim = data.draw(st.integers(-ndim, ndim - 1))
    keepdim = data.draw(st.booleans())
    x = leaf(floats(seed, shape, high=3.0))
    check(lambda x: x.logsumexp(dims, keepdim=keepdim), x, ops=["LogSumExp"])
    check(lambda x: x.softmax(dim), x, ops=["Softmax"])
    check(lambda x: x.log_softmax(dim), x, ops=["LogSoftmax"])
    check(lambda x: mg.softmax(x, dim) * mg.log_softmax(x, dim), x, ops=["Softmax", "LogSoftmax"])


# ============================================================================= shape


@covers("Reshape")
@given(shape=shapes(), seed=seeds, data=st.data())
def test_reshape_view_flatten_squeeze_unsqueeze(shape, seed, data):
    ndim = len(shape)
    x = leaf(floats(seed, shape))
    n = int(np.prod(shape, dtype=np.int64))
    check(lambda x: x.reshape(-1), x, ops=["Reshape"])
    check(lambda x: x.view(tuple(reversed(shape))), x, ops=["Reshape"])
    check(lambda x: x.reshape(1, n, 1), x, ops=["Reshape"])
    check(lambda x: x.flatten(), x, ops=["Reshape"])
    if ndim >= 2:
        check(lambda x: x.flatten(1), x, ops=["Reshape"])
        check(lambda x: x.view_as(x.detach().transpose(0, 1)), x, ops=["Reshape"])
    d = data.draw(st.integers(-ndim - 1, ndim))
    check(lambda x: x.unsqueeze(d), x, ops=["Reshape"])
    check(lambda x: x.unsqueeze(d).squeeze(d), x, ops=["Reshape"])
    check(lambda x: x.squeeze(), x, ops=["Reshape"])


@covers("Permute")
@given(shape=shapes(), seed=seeds, data=st.data())
def test_permute_transpose_T(shape, seed, data):
    ndim = len(shape)
    x = leaf(floats(seed, shape))
    dims = data.draw(st.permutations(range(ndim)))
    check(lambda x: x.permute(*dims), x, ops=["Permute"])
    check(lambda x: x.T, x, ops=["Permute"])
    if ndim >= 1:
        d0, d1 = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
        check(lambda x: x.transpose(d0, d1), x, ops=["Permute"])
    if ndim <= 2:
        check(lambda x: x.t(), x, ops=["Permute"])
    if ndim >= 2:
        check(lambda x: x.mT, x, ops=["Permute"])


@covers("Expand")
@given(shapes=broadcast_shapes(), seed=seeds, data=st.data())
def test_expand(shapes, seed, data):
    target = np.broadcast_shapes(*shapes)
    x = leaf(floats(seed, shapes[0]))
    check(lambda x: x.expand(*target), x, ops=["Expand"])
    # -1 keeps a size
    lead = len(target) - len(shapes[0])
    sizes = tuple(-1 if i >= lead and data.draw(st.booleans()) else n for i, n in enumerate(target))
    check(lambda x: x.expand(sizes) * 1.0, x, ops=["Expand"])
    check(lambda x: x.expand_as(mg.zeros(target)), x, ops=["Expand"])


GETITEM_SHAPE = (3, 4, 5)
# name -> a function of a seeded generator returning the index
GETITEM = {
    "int": lambda rng: 1,
    "negative_int": lambda rng: -1,
    "int_int": lambda rng: (2, -3),
    "slice": lambda rng: slice(1, 3),
    "slice_step": lambda rng: (slice(None, None, 2), slice(1, None)),
    "negative_slice": lambda rng: (slice(-2, None), slice(None), slice(None, None, -1)),
    "ellipsis": lambda rng: (Ellipsis, 1),
    "newaxis": lambda rng: (None, 0, Ellipsis, None),
    "int_array_repeated": lambda rng: np.array([0, 2, 0, 0]),
    "negative_int_array": lambda rng: np.array([-1, -1, 0]),
    "list_repeated": lambda rng: [2, 2, 1],
    "random_int_array": lambda rng: rng.integers(0, 3, size=rng.integers(1, 7)),
    "int_array_2d": lambda rng: (slice(None), np.array([[1, 1], [3, 0]])),
    "two_int_arrays": lambda rng: (np.array([0, 0, 1]), np.array([2, 2, 3])),
    "int_array_and_slice_and_int": lambda rng: (slice(1, None), np.array([0, 0, 3]), -1),
    "int_tensor": lambda rng: mg.tensor([1, 1, 0]),
    "bool_mask": lambda rng: np.insert(rng.random(59) > 0.5, 0, True).reshape(GETITEM_SHAPE),
    "bool_tensor_mask": lambda rng: mg.tensor(np.insert(rng.random(59) > 0.5, 0, True).reshape(GETITEM_SHAPE)),
    "bool_row_mask": lambda rng: np.array([True, False, True]),
    "bool_mask_and_slice": lambda rng: (slice(None), np.array([False, True, True, False]), slice(0, 2)),
}
for _name in GETITEM:
    COVERAGE["GetItem"].append(f"test_getitem[{_name}]")


@pytest.mark.parametrize("name", sorted(GETITEM))
@given(seed=seeds)
def test_getitem(name, seed):
    index = GETITEM[name](np.random.default_rng(seed))
    x = leaf(floats(seed, GETITEM_SHAPE))
    check(lambda x: x[index], x, ops=["GetItem"])


def test_getitem_repeated_indices_accumulate():
    x = leaf(np.arange(12.0).reshape(3, 4))
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.array([[3.0] * 4, [0.0] * 4, [1.0] * 4]))


@covers("Cat", "Stack")
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_cat_stack(shape, seed, data):
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    pieces = []
    for i, size in enumerate(sizes):
        s = list(shape)
        s[dim] = size
        pieces.append(leaf(floats(seed + i, s), requires_grad=i != 1))  # one constant input among them
    check(lambda *ts: mg.cat(ts, dim=dim), *pieces, ops=["Cat"])
    same = [leaf(floats(seed + 7 + i, shape)) for i in range(len(sizes))]
    sdim = data.draw(st.integers(-ndim - 1, ndim))
    check(lambda *ts: mg.stack(list(ts), dim=sdim), *same, ops=["Stack"])


@covers("Split", "Unbind")
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_split_chunk_unbind(shape, seed, data):
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    length = shape[dim]
    x = leaf(floats(seed, shape))
    step = data.draw(st.integers(1, length))
    check(lambda x: x.split(step, dim), x, ops=["Split"])
    sections = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).filter(lambda s: sum(s) <= length))
    sections = sections + ([length - sum(sections)] if sum(sections) < length else [])
    check(lambda x: mg.split(x, sections, dim=dim), x, ops=["Split"])
    check(lambda x: x.split(sections, dim)[0] * 2.0, x, ops=["Split"])  # unused pieces get zero gradient
    chunks = data.draw(st.integers(1, 4))
    check(lambda x: mg.chunk(x, chunks, dim), x, ops=["Split"])
    check(lambda x: x.unbind(dim), x, ops=["Unbind"])
    check(lambda x: mg.unbind(x, dim)[-1], x, ops=["Unbind"])
    check(lambda x: tuple(x), x, ops=["Unbind"])  # iteration unbinds dim 0


# ============================================================================= linalg

MATMUL_SHAPES = {
    "1d@1d": ((3,), (3,)),
    "1d@2d": ((3,), (3, 4)),
    "2d@1d": ((2, 3), (3,)),
    "2d@2d": ((2, 3), (3, 4)),
    "1d@3d": ((3,), (2, 3, 4)),
    "3d@1d": ((2, 4, 3), (3,)),
    "2d@3d": ((2, 3), (4, 3, 2)),
    "batched": ((2, 2, 3), (2, 3, 4)),
    "broadcast_batched": ((3, 1, 4, 5), (2, 5, 3)),
    "broadcast_batched_both": ((2, 1, 2, 3), (1, 3, 3, 2)),
}
for _name in MATMUL_SHAPES:
    COVERAGE["MatMul"].append(f"test_matmul[{_name}]")


@pytest.mark.parametrize("name", sorted(MATMUL_SHAPES))
@given(seed=seeds, needs=st.sampled_from([(True, True), (True, False), (False, True)]))
def test_matmul(name, seed, needs):
    sa, sb = MATMUL_SHAPES[name]
    a = leaf(floats(seed, sa), requires_grad=needs[0])
    b = leaf(floats(seed + 1, sb), requires_grad=needs[1])
    check(lambda a, b: a @ b, a, b, ops=["MatMul"])
    check(lambda a, b: mg.matmul(a, b), a, b, ops=["MatMul"])


@covers("Linear")
@given(seed=seeds, lead=st.sampled_from([(), (3,), (2, 3)]), bias=st.booleans(), data=st.data())
def test_linear(seed, lead, bias, data):
    x = leaf(floats(seed, lead + (4,)), requires_grad=data.draw(st.booleans()))
    w = leaf(floats(seed + 1, (5, 4)))
    b = leaf(floats(seed + 2, (5,)), requires_grad=data.draw(st.booleans())) if bias else None
    inputs = (x, w) + ((b,) if bias else ())
    check(lambda *a: mg.linear(*a), *inputs, ops=["Linear"])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64])
@pytest.mark.parametrize("rows, cols", [(0, 3), (1, 5), (2048, 65), (300, 1024)])
def test_column_sums_as_bias_gradients(dtype, rows, cols):
    # the bias gradients of Linear and of the recurrent layers: a BLAS product in float32/64
    # (ops/linalg.column_sums), numpy's sum otherwise; against an exact float64 sum
    from microgradnn.ops.linalg import column_sums

    a = (np.random.default_rng(rows + cols).standard_normal((rows, cols)) * 4).astype(dtype)
    got = column_sums(np, a)
    exact = a.astype(np.float64).sum(axis=0)
    assert got.shape == (cols,) and got.dtype == a.dtype
    tolerance = {np.float16: 2e-2, np.float32: 1e-6, np.float64: 1e-14, np.int64: 0}[dtype]
    scale = np.abs(a).astype(np.float64).sum(axis=0) + 1
    assert np.all(np.abs(got.astype(np.float64) - exact) <= tolerance * scale)


# ============================================================================= cross entropy


@covers("CrossEntropy")
@given(
    seed=seeds,
    layout=st.sampled_from(["C", "NC", "NCd", "NCdd"]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    weighted=st.booleans(),
    ignore=st.booleans(),
    label_smoothing=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_cross_entropy(seed, layout, reduction, weighted, ignore, label_smoothing):
    rng = np.random.default_rng(seed)
    C = 4
    shape = {"C": (C,), "NC": (3, C), "NCd": (2, C, 3), "NCdd": (2, C, 2, 2)}[layout]
    target_shape = () if layout == "C" else (shape[0],) + shape[2:]
    target = rng.integers(0, C, size=target_shape)
    ignore_index = -100
    if ignore and layout != "C":
        ignore_index = int(target.flat[-1])
        target.flat[-1] = ignore_index  # at least one ignored ...
        target.flat[0] = (ignore_index + 1) % C  # ... and at least one counted
    weight = mg.tensor(rng.uniform(0.5, 2.0, C), dtype=mg.float64) if weighted else None
    x = leaf(floats(seed, shape, high=3.0))
    t = mg.tensor(target)

    def fn(x):
        return mg.cross_entropy(x, t, weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)

    check(fn, x, ops=["CrossEntropy"])


# ============================================================================= embedding


@covers("Embedding")
@given(seed=seeds, index_shape=st.sampled_from([(), (5,), (2, 3), (2, 2, 3)]))
def test_embedding(seed, index_shape):
    rng = np.random.default_rng(seed)
    V, D = 4, 3
    indices = mg.tensor(rng.integers(0, V, size=index_shape))
    weight = leaf(floats(seed, (V, D)))
    F = mg.nn.functional

    check(lambda w: F.embedding(indices, w), weight, ops=["Embedding"])
    check(lambda w: F.embedding(indices, w)[..., 1:] * 2.0, weight, ops=["Embedding"])
    # padding_idx and scale_grad_by_freq deliberately depart from the true derivative
    # (PyTorch's semantics): the padding row's gradient is zero, and each position's
    # gradient is divided by its token's count; compared here with the exact gradient
    grad_out = mg.tensor(floats(seed + 1, index_shape + (D,)), dtype=mg.float64)
    weight._grad = None
    F.embedding(indices, weight).backward(grad_out)
    exact = weight.grad.numpy().copy()
    padding_idx = int(indices.numpy().flat[0])  # a row that is actually looked up
    weight._grad = None
    F.embedding(indices, weight, padding_idx=padding_idx).backward(grad_out)
    expected = exact.copy()
    expected[padding_idx] = 0.0
    np.testing.assert_allclose(weight.grad.numpy(), expected, rtol=1e-12, atol=0)
    weight._grad = None
    F.embedding(indices, weight, scale_grad_by_freq=True).backward(grad_out)
    counts = np.maximum(np.bincount(indices.numpy().reshape(-1), minlength=V), 1)
    np.testing.assert_allclose(weight.grad.numpy(), exact / counts[:, None], rtol=1e-12, atol=0)


# ============================================================================= recurrent (fused sequences)

RECURRENT = {"lstm": (4, "LSTMSequence"), "gru": (3, "GRUSequence"), "rnn_tanh": (1, "RNNSequence"), "rnn_relu": (1, "RNNSequence")}
for _name, (_, _op) in RECURRENT.items():
    COVERAGE[_op].append(f"test_recurrent_sequence[{_name}]")


@pytest.mark.parametrize("kind", sorted(RECURRENT))
@given(seed=seeds, reverse=st.booleans(), bias=st.booleans(), ragged=st.booleans())
def test_recurrent_sequence(kind, seed, reverse, bias, ragged):
    gates, op = RECURRENT[kind]
    T, B, I, H = 3, 2, 2, 2
    x = leaf(floats(seed, (T, B, I), low=0.2, high=1.0))
    h0 = leaf(floats(seed + 1, (B, H), low=0.1, high=0.5))
    c0 = leaf(floats(seed + 2, (B, H), low=0.1, high=0.5))
    weights = [leaf(floats(seed + 3, (gates * H, I), high=0.6)), leaf(floats(seed + 4, (gates * H, H), high=0.6))]
    if bias:
        weights += [leaf(floats(seed + 5, (gates * H,), high=0.5)), leaf(floats(seed + 6, (gates * H,), high=0.5))]
    lengths = np.array([T, 1]) if ragged else None
    inputs = [x, h0] + ([c0] if kind == "lstm" else []) + weights

    def fn(*args):
        args = list(args)
        xx, hh = args.pop(0), args.pop(0)
        if kind == "lstm":
            cc = args.pop(0)
            return RNN.lstm_sequence(xx, hh, cc, *args, lengths=lengths, reverse=reverse)
        if kind == "gru":
            return RNN.gru_sequence(xx, hh, *args, lengths=lengths, reverse=reverse)
        w = args + [None] * (4 - len(args))
        return RNN.rnn_sequence(xx, hh, *w, nonlinearity=kind[4:], lengths=lengths, reverse=reverse)

    check(fn, *inputs, ops=[op], atol=1e-6, rtol=1e-4)


@covers("LSTMSequence")
@given(seed=seeds, reverse=st.booleans(), bias=st.booleans(), ragged=st.booleans())
def test_recurrent_sequence_lstm_projected(seed, reverse, bias, ragged):
    # PyTorch's proj_size: the state is r = h W_hr^T (P = 2 wide), W_hh is (4H, P), c is H = 3 wide
    T, B, I, H, P = 3, 2, 2, 3, 2
    x = leaf(floats(seed, (T, B, I), low=0.2, high=1.0))
    h0 = leaf(floats(seed + 1, (B, P), low=0.1, high=0.5))
    c0 = leaf(floats(seed + 2, (B, H), low=0.1, high=0.5))
    w_ih, w_hh = leaf(floats(seed + 3, (4 * H, I), high=0.6)), leaf(floats(seed + 4, (4 * H, P), high=0.6))
    w_hr = leaf(floats(seed + 7, (P, H), high=0.8))
    biases = [leaf(floats(seed + 5, (4 * H,), high=0.5)), leaf(floats(seed + 6, (4 * H,), high=0.5))] if bias else []
    lengths = np.array([T, 1]) if ragged else None

    def fn(xx, hh, cc, wi, wh, wr, *b):
        bi, bh = b if b else (None, None)
        return RNN.lstm_sequence(xx, hh, cc, wi, wh, bi, bh, lengths=lengths, reverse=reverse, w_hr=wr)

    check(fn, x, h0, c0, w_ih, w_hh, w_hr, *biases, ops=["LSTMSequence"], atol=1e-6, rtol=1e-4)


# ============================================================================= meta


def _backward_owner(cls: type) -> type:
    return next(k for k in cls.__mro__ if "backward" in vars(k))


def test_every_differentiable_primitive_has_a_gradient_rule():
    lacking = [p.__name__ for p in all_primitives() if p.differentiable and _backward_owner(p) is Function]
    assert not lacking, f"differentiable primitives without their own backward: {lacking}"


def test_every_differentiable_primitive_is_gradchecked():
    differentiable = {p.__name__ for p in all_primitives() if p.differentiable}
    missing = differentiable - set(COVERAGE)
    assert not missing, f"differentiable primitives no gradcheck test covers: {sorted(missing)}"
    unknown = set(COVERAGE) - {p.__name__ for p in all_primitives()}
    assert not unknown, f"COVERAGE names that are not primitives: {sorted(unknown)}"


def test_the_meta_checks_catch_a_primitive_without_backward_or_test():
    class Forgotten(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

    assert _backward_owner(Forgotten) is Function
    assert "Forgotten" not in COVERAGE


# ============================================================================= issue 13: the wider Tensor surface

_INTEGERS = [-2.0, -1.0, 0.0, 1.0, 2.0]
_HALVES = [-1.5, -0.5, 0.5, 1.5]

# name -> (fn, primitives, floats() options)
FLOAT_MATH = {
    "sin": (lambda x: x.sin(), ["Sin"], {}),
    "cos": (lambda x: mg.cos(x), ["Cos"], {}),
    "tan": (lambda x: x.tan(), ["Tan"], dict(high=1.2)),
    "asin": (lambda x: x.asin(), ["Asin"], dict(high=0.9)),
    "acos": (lambda x: mg.acos(x), ["Acos"], dict(high=0.9)),
    "atan": (lambda x: x.arctan(), ["Atan"], {}),
    "sinh": (lambda x: x.sinh(), ["Sinh"], {}),
    "cosh": (lambda x: x.cosh(), ["Cosh"], {}),
    "asinh": (lambda x: x.asinh(), ["Asinh"], {}),
    "acosh": (lambda x: x.acosh(), ["Acosh"], dict(positive=True, low=1.2, high=3.0)),
    "atanh": (lambda x: x.atanh(), ["Atanh"], dict(high=0.9)),
    "log2": (lambda x: x.log2(), ["Log2"], dict(positive=True)),
    "log10": (lambda x: mg.log10(x), ["Log10"], dict(positive=True)),
    "log1p": (lambda x: x.log1p(), ["Log1p"], dict(high=0.9)),
    "expm1": (lambda x: x.expm1(), ["Expm1"], {}),
    "exp2": (lambda x: x.exp2(), ["Exp2"], {}),
    "erf": (lambda x: mg.erf(x), ["Erf"], {}),
    "rsqrt": (lambda x: x.rsqrt(), ["Rsqrt"], dict(positive=True, low=0.3)),
    "reciprocal": (lambda x: x.reciprocal(), ["Reciprocal"], dict(low=0.4)),
    # steps: zero gradient away from their jumps, exactly what finite differences see
    "floor": (lambda x: x.floor() + x, ["Floor"], dict(avoid=_INTEGERS)),
    "ceil": (lambda x: mg.ceil(x) * x, ["Ceil"], dict(avoid=_INTEGERS)),
    "trunc": (lambda x: x.trunc() * x, ["Trunc"], dict(avoid=_INTEGERS)),
    "round": (lambda x: x.round() * x, ["Round"], dict(avoid=_HALVES)),
    "round_decimals": (lambda x: x.round(decimals=1) * x, ["Round"], dict(avoid=[v / 10 + 0.05 for v in range(-20, 20)], margin=0.01)),
    "sign": (lambda x: x.sign() * x, ["Sign"], {}),
    "frac": (lambda x: x.frac(), ["Frac"], dict(avoid=_INTEGERS)),
    "floor_divide": (lambda x: (x // 0.7) * x, ["Floor", "Div"], dict(avoid=[k * 0.7 for k in range(-3, 4)])),
    "div_trunc": (lambda x: x.div(0.7, rounding_mode="trunc") * x, ["Trunc", "Div"], dict(avoid=[k * 0.7 for k in range(-3, 4)])),
}
for _name, (_fn, _ops, _kw) in FLOAT_MATH.items():
    for _op in _ops:
        COVERAGE[_op].append(f"test_float_math[{_name}]")


@pytest.mark.parametrize("name", sorted(FLOAT_MATH))
@given(shape=shapes(), seed=seeds)
def test_float_math(name, shape, seed):
    fn, ops, options = FLOAT_MATH[name]
    check(fn, leaf(floats(seed, shape, **options)), ops=ops)


@covers("Atan2", "Remainder")
@given(shapes=broadcast_shapes(), seed=seeds, needs=st.sampled_from([(True, True), (True, False), (False, True)]))
def test_atan2_remainder_broadcast(shapes, seed, needs):
    a = leaf(floats(seed, shapes[0]), requires_grad=needs[0])
    b = leaf(floats(seed + 1, shapes[1], low=0.3), requires_grad=needs[1])
    check(lambda a, b: mg.atan2(a, b), a, b, ops=["Atan2"])
    # |a / b| in (0.03, 0.95): floor(a / b) is constant nearby, 0 or -1 by the signs
    c = leaf(floats(seed + 2, shapes[1], low=2.1, high=3.0), requires_grad=needs[1])
    check(lambda a, c: a % c, a, c, ops=["Remainder"])
    check(lambda a: 2.5 % (a * 3.0 + 10.0), a, ops=["Remainder"]) if needs[0] else None


@covers("Prod")
@given(shape=shapes(), seed=seeds, data=st.data(), zeros=st.integers(0, 2))
def test_prod(shape, seed, data, zeros):
    x = floats(seed, shape)
    x.reshape(-1)[:zeros] = 0.0  # exact zeros: prod / x would divide by them
    ndim = len(shape)
    dim = data.draw(st.none() | st.integers(-ndim, ndim - 1)) if ndim else None
    keepdim = data.draw(st.booleans())
    t = leaf(x)
    check(lambda t: t.prod(), t, ops=["Prod"])
    if dim is not None:
        check(lambda t: t.prod(dim, keepdim=keepdim), t, ops=["Prod"])


@covers("Cumsum", "Cumprod")
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data(), zeros=st.integers(0, 2))
def test_cumsum_cumprod(shape, seed, data, zeros):
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    x = floats(seed, shape)
    x.reshape(-1)[:zeros] = 0.0
    t = leaf(x)
    check(lambda t: t.cumsum(dim), t, ops=["Cumsum"])
    check(lambda t: mg.cumprod(t, dim), t, ops=["Cumprod"])


@covers("Gather", "Scatter", "ScatterAdd")
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_gather_scatter(shape, seed, data):
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    index_shape = tuple(data.draw(st.integers(1, n)) for n in shape)  # no larger than the input elsewhere
    index = mg.tensor(rng.integers(0, shape[dim], index_shape))
    x = leaf(floats(seed, shape))
    src = leaf(floats(seed + 1, shape))
    check(lambda x: x.gather(dim, index), x, ops=["Gather"])  # repeated indices: gradients add up
    check(lambda x, s: x.scatter_add(dim, index, s), x, src, ops=["ScatterAdd"])
    # scatter with repeated targets keeps an unspecified one of the writes: draw distinct ones
    unique = mg.tensor(np.argsort(rng.random(shape), axis=dim)[tuple(slice(0, n) for n in index_shape)])
    check(lambda x, s: x.scatter(dim, unique, s), x, src, ops=["Scatter"])
    check(lambda x: x.scatter(dim, unique, value=0.5), x, ops=["Scatter"])


EINSUM = {
    "matmul": ("ij,jk->ik", [(2, 3), (3, 4)]),
    "implicit": ("ij,jk", [(2, 3), (3, 4)]),
    "batched": ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    "outer": ("i,j->ij", [(3,), (4,)]),
    "dot": ("i,i->", [(4,), (4,)]),
    "diagonal": ("ii->i", [(3, 3)]),
    "trace": ("ii", [(3, 3)]),
    "sum_alone": ("ijk->i", [(2, 3, 2)]),
    "broadcast_alone": ("ij,k->ik", [(2, 3), (4,)]),
    "ellipsis": ("...ij,jk->...ik", [(2, 2, 3), (3, 2)]),
    "transpose": ("ij->ji", [(2, 3)]),
    "three": ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
    "diagonal_and_other": ("iij,jk->ik", [(2, 2, 3), (3, 2)]),
}
for _name in EINSUM:
    COVERAGE["Einsum"].append(f"test_einsum[{_name}]")


@pytest.mark.parametrize("name", sorted(EINSUM))
@given(seed=seeds)
def test_einsum(name, seed):
    equation, operand_shapes = EINSUM[name]
    operands = [leaf(floats(seed + i, s)) for i, s in enumerate(operand_shapes)]
    check(lambda *ops: mg.einsum(equation, *ops), *operands, ops=["Einsum"])
