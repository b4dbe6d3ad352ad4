"""The scalar engine ``Value`` against PyTorch float64, plus the weak spots of micrograd it fixes."""

from __future__ import annotations

import gc
from typing import Callable

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from microgradnn.scalar import Value

# A decorator, not a loaded profile: other test modules keep their own hypothesis settings.
examples = settings(deadline=None, max_examples=60, derandomize=True)


def both(fn: Callable, *xs: float) -> tuple[float, list[float], float, list[float]]:
    """Run ``fn`` on Values and on float64 torch tensors; return (out, grads) of each."""
    vs = [Value(x) for x in xs]
    out = fn(*vs)
    out.backward()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    tout = fn(*ts)
    tout.backward()
    tgrads = [0.0 if t.grad is None else t.grad.item() for t in ts]
    return out.data, [v.grad for v in vs], tout.item(), tgrads


def assert_close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-9) -> None:
    assert a == pytest.approx(b, rel=rel, abs=abs_), (a, b)


def check(fn: Callable, *xs: float, rel: float = 1e-9) -> None:
    out, grads, tout, tgrads = both(fn, *xs)
    assert_close(out, tout, rel)
    for g, tg in zip(grads, tgrads):
        assert_close(g, tg, rel)


# ---------------------------------------------------- (a) micrograd's own test_engine.py


def sanity_expr(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    return h + q + q * x


def more_ops_expr(a, b):
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return g


def test_micrograd_sanity_check():
    out, grads, tout, tgrads = both(sanity_expr, -4.0)
    assert abs(out - tout) < 1e-6
    assert abs(grads[0] - tgrads[0]) < 1e-6


def test_micrograd_more_ops():
    out, grads, tout, tgrads = both(more_ops_expr, -4.0, 2.0)
    assert abs(out - tout) < 1e-6
    for g, tg in zip(grads, tgrads):
        assert abs(g - tg) < 1e-6


def test_micrograd_int_inputs_and_repr():
    x = Value(-4)
    y = sanity_expr(x)
    y.backward()
    assert y.data == -20 and x.grad == pytest.approx(46.0)
    assert repr(Value(2.5)) == "Value(data=2.5, grad=0.0)"


# -------------------------------------------------- (b) every op, random inputs, vs torch

finite = st.floats(-5, 5, allow_nan=False)
nonzero = finite.filter(lambda v: abs(v) > 1e-3)
positive = st.floats(1e-3, 10, allow_nan=False)


@examples
@given(finite, finite)
def test_add_sub_mul(x, y):
    assume(x != 0 or y != 0)
    check(lambda a, b: a + b, x, y)
    check(lambda a, b: a - b, x, y)
    check(lambda a, b: a * b, x, y)
    check(lambda a, b: a * a, x, y)  # the same input twice


@examples
@given(finite, nonzero)
def test_div(x, y):
    check(lambda a, b: a / b, x, y)


@examples
@given(nonzero, st.floats(-3, 3).filter(lambda c: abs(c) > 1e-3))
def test_constant_on_either_side(x, c):
    for fn in (lambda a: a + c, lambda a: c + a, lambda a: a - c, lambda a: c - a,
               lambda a: a * c, lambda a: c * a, lambda a: a / c, lambda a: c / a, lambda a: -a):
        check(fn, x)


@examples
@given(finite, st.integers(-3, 4))
def test_pow_integer_exponent(x, n):
    assume(abs(x) > 1e-2 or n >= 0)
    check(lambda a: a**n, x)


@pytest.mark.parametrize("n", [0, 0.5, 1, 2, 2.5])
def test_pow_at_zero_matches_torch(n):
    out, grads, tout, tgrads = both(lambda a: a**n, 0.0)
    assert out == tout and grads == tgrads  # 0 for n = 0 (flat) and n > 1, inf for sqrt


def test_zero_to_a_negative_power_raises():
    with pytest.raises(ZeroDivisionError):
        Value(0.0) ** -1


@examples
@given(positive, st.floats(-2.5, 2.5))
def test_pow_float_exponent(x, n):
    check(lambda a: a**n, x, rel=1e-8)


@examples
@given(st.floats(0.1, 5), finite)
def test_rpow(base, x):
    check(lambda a: base**a, x, rel=1e-8)


@examples
@given(nonzero)
def test_unary(x):
    for fn in (lambda a: a.relu(), lambda a: a.tanh(), lambda a: a.sigmoid(), lambda a: a.exp()):
        check(fn, x)


@examples
@given(positive)
def test_log(x):
    check(lambda a: a.log(), x)


@examples
@given(st.floats(-800, 800))
def test_sigmoid_is_stable_for_large_inputs(x):
    check(lambda a: a.sigmoid(), x, rel=1e-12)


def composite(x, y, z):
    u = x.tanh() * y.sigmoid() + (z * z + 1).log() - y / (x * x + 1)
    v = (0.5 * z).exp() + 2**x - (y * z + 3).relu()
    return (u**2 + v) / (1 + y**2) + (u * v).sigmoid() ** 0.5


@examples
@given(finite, finite, finite)
def test_composite_expression(x, y, z):
    assume(x != 0 or y != 0 or z != 0)
    check(composite, x, y, z, rel=1e-8)


# ------------------------------------------------------------ (c) depth, (d) reused nodes


def test_deep_chain_has_no_recursion_limit():
    a = Value(0.5)
    x = a
    for _ in range(10_000):
        x = x * 1.0 + a  # x = (k+1) a after k steps
    x.backward()
    assert x.data == pytest.approx(10_001 * 0.5)
    assert a.grad == 10_001


def test_reused_node_collects_every_path():
    a = Value(3.0)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad == 4.0


# --------------------------------------------------------------------- (e) backward twice


def test_backward_twice_doubles_leaf_grads_exactly():
    a, b = Value(-4.0), Value(2.0)
    g = more_ops_expr(a, b)
    g.backward()
    once = (a.grad, b.grad)
    g.backward()
    assert (a.grad, b.grad) == (2 * once[0], 2 * once[1])  # micrograd gives 3x here
    g.backward()
    assert (a.grad, b.grad) == (3 * once[0], 3 * once[1])
    assert g.grad == 1.0  # the output's own grad does not accumulate


def test_intermediate_grads_do_not_double_count():
    x = Value(1.5)
    y = x * x
    z = y * 3.0
    z.backward()
    first = y.grad
    z.backward()
    assert y.grad == first == 3.0
    assert x.grad == 2 * (3.0 * 2 * 1.5)


def test_grad_is_a_settable_float():
    p = Value(2.0)
    (p * p).backward()
    assert isinstance(p.grad, float) and p.grad == 4.0
    p.grad = 0
    (p * p).backward()
    assert p.grad == 4.0


def test_backward_on_a_leaf():
    a = Value(1.0)
    a.backward()
    a.backward()
    assert a.grad == 2.0  # as torch: a leaf's own grad accumulates too


# ----------------------------------------------------------------------- (f) relu at zero


def test_relu_grad_at_zero_matches_torch():
    out, grads, tout, tgrads = both(lambda a: a.relu(), 0.0)
    assert out == tout == 0.0
    assert grads == tgrads == [0.0]


# ------------------------------------------------------------------ (g) reference cycles


def _garbage_from(build: Callable[[], None]) -> int:
    """Build and drop a graph with the collector off; how many objects could only it free?"""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        build()
        return gc.collect()
    finally:
        if was_enabled:
            gc.enable()


def _scalar_mlp_loss(V) -> None:
    ws = [[V(0.1 * (i - j)) for j in range(4)] for i in range(4)]
    loss = 0
    for sample in range(3):
        h = [sum((w * (sample + 1.0) for w in row), V(0.0)).relu() for row in ws]
        loss = loss + (sum(h, V(0.0)) - 1.0) ** 2
    loss.backward()


def test_graphs_make_no_reference_cycles():
    assert _garbage_from(lambda: _scalar_mlp_loss(Value)) == 0
    assert _garbage_from(lambda: more_ops_expr(Value(-4.0), Value(2.0)).backward()) == 0


def test_cycle_check_detects_micrograd_cycles():
    """The check above is able to fail: micrograd's closures do leave cycles behind."""
    engine = pytest.importorskip("micrograd.engine")
    assert _garbage_from(lambda: _scalar_mlp_loss(engine.Value)) > 0


# ------------------------------------------------------------------ (h) clear domain errors


@pytest.mark.parametrize("x", [-2.5, 0.0])
def test_log_of_non_positive_raises(x):
    with pytest.raises(ValueError, match=f"log of a non-positive number: Value\\(data={x}"):
        Value(x).log()


def test_other_domain_errors():
    with pytest.raises(ValueError, match="fractional power"):
        Value(-2.0) ** 0.5
    with pytest.raises(ValueError, match="positive"):
        (-2.0) ** Value(1.0)
    with pytest.raises(TypeError, match="int/float exponents"):
        Value(2.0) ** Value(2.0)


def test_prev_and_op_for_graph_drawing():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    assert c._prev == {a, b} and c._op == "*"
    assert (-a)._prev == {a} and a._prev == set()
