"""Value: a scalar autograd engine you can read in one sitting.

Every arithmetic step on a ``Value`` records a node of a graph: its result, the (at most
two) Values it was computed from, its *children*, and for each child the *local
derivative* d(result)/d(child), written right beside the forward formula. ``backward()``
then walks the graph from the output back to the inputs applying the chain rule:

    d(loss)/d(child) += d(node)/d(child) * d(loss)/d(node)
                        ^ local grad       ^ node.grad, already complete

The ``+=`` matters: a Value used twice (``b = a + a``) collects a contribution along
every path to the output. Visiting nodes in reverse topological order (every node before
the nodes it was computed from) guarantees ``node.grad`` is complete before it is passed on.

    >>> a, b = Value(2.0), Value(-3.0)
    >>> y = (a * b + b ** 2).relu()        # relu(-6 + 9) = 3
    >>> y.backward()
    >>> a.grad, b.grad                     # dy/da = b, dy/db = a + 2b
    (-3.0, -4.0)

The API is micrograd's (Karpathy, 2020); three of its weak spots are fixed, each marked
"Unlike micrograd" below: no reference cycles, no recursion, and no double counting when
``backward()`` runs twice. Domain errors (log of 0, sigmoid overflow) are handled too.
"""

from __future__ import annotations

import itertools
import math
from operator import attrgetter
from typing import Optional, Union

Number = Union[int, float]
_next_birth = itertools.count().__next__  # 0, 1, 2, ...: the order Values are created in
_birth = attrgetter("_birth")


class Value:
    """One scalar in a computation graph: ``data`` (the number) and ``grad`` (d out/d self)."""

    # Unlike micrograd, a node keeps no ``_backward`` closure. A closure that updates
    # ``out.grad`` refers back to ``out``, which holds the closure: a reference cycle per
    # node, which only Python's cyclic garbage collector can free (~92% of micrograd's
    # time goes there). We store plain data instead, the children and their local
    # derivatives: references only point from a result to its inputs, so there are no
    # cycles and a graph is freed the moment it is dropped. Two named slots (rather than
    # a tuple of children) and __slots__ keep a node to one small object: less work for
    # the allocator and for the collector, which still scans every live node.
    __slots__ = ("data", "grad", "_op", "_child1", "_local1", "_child2", "_local2", "_birth")

    def __init__(self, data: Number, _op: str = "",
                 _child1: Optional[Value] = None, _local1: float = 0.0,
                 _child2: Optional[Value] = None, _local2: float = 0.0):
        self.data = data
        self.grad = 0.0  # a plain float: `v.grad = 0` is all zero_grad needs
        self._op = _op  # the op that produced this node, for printing and debugging
        self._child1, self._local1 = _child1, _local1  # an input and d(self)/d(input)
        self._child2, self._local2 = _child2, _local2  # the second input of a binary op
        self._birth = _next_birth()  # inputs always exist before results: see backward()

    @property
    def _prev(self) -> set[Value]:
        """The children as a set, under micrograd's name (graph-drawing code reads it)."""
        return {c for c in (self._child1, self._child2) if c is not None}

    # ---- binary ops: a constant operand (int/float) is not a child, its grad is never needed
    def __add__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):  # d(a+b)/da = 1, d(a+b)/db = 1
            return Value(self.data + other.data, "+", self, 1.0, other, 1.0)
        return Value(self.data + other, "+", self, 1.0)

    def __sub__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):  # d(a-b)/da = 1, d(a-b)/db = -1
            return Value(self.data - other.data, "-", self, 1.0, other, -1.0)
        return Value(self.data - other, "-", self, 1.0)

    def __mul__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):  # d(a*b)/da = b, d(a*b)/db = a
            return Value(self.data * other.data, "*", self, other.data, other, self.data)
        return Value(self.data * other, "*", self, other)

    def __truediv__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b**2
            b = other.data
            return Value(self.data / b, "/", self, 1.0 / b, other, -self.data / (b * b))
        return Value(self.data / other, "/", self, 1.0 / other)

    def __pow__(self, n: Number) -> Value:
        if not isinstance(n, (int, float)):
            raise TypeError(f"Value ** {type(n).__name__}: only int/float exponents are supported")
        x = self.data
        if x < 0 and not float(n).is_integer():
            raise ValueError(f"{self!r} ** {n}: a negative base to a fractional power is not real")
        out = x**n
        try:  # d(x**n)/dx = n * x**(n-1); x**0 is flat
            local = n * x ** (n - 1) if n != 0 else 0.0
        except (ZeroDivisionError, OverflowError):  # x at 0, 0 < n < 1 (sqrt): vertical
            local = math.inf
        return Value(out, f"**{n}", self, local)

    # ---- the same ops with the constant on the left: 2 + v, 2 - v, 2 * v, 2 / v, 2 ** v
    def __radd__(self, other: Number) -> Value:
        return self + other

    def __rsub__(self, other: Number) -> Value:  # d(c-x)/dx = -1
        return Value(other - self.data, "-", self, -1.0)

    def __rmul__(self, other: Number) -> Value:
        return self * other

    def __rtruediv__(self, other: Number) -> Value:  # d(c/x)/dx = -c/x**2
        x = self.data
        return Value(other / x, "/", self, -other / (x * x))

    def __rpow__(self, base: Number) -> Value:  # d(c**x)/dx = c**x * ln(c)
        if base <= 0:
            raise ValueError(f"{base} ** {self!r}: the base must be positive to differentiate")
        out = base**self.data
        return Value(out, f"{base}**", self, out * math.log(base))

    def __neg__(self) -> Value:  # d(-x)/dx = -1
        return Value(-self.data, "neg", self, -1.0)

    # ---- unary functions
    def relu(self) -> Value:
        # d relu(x)/dx = 1 if x > 0 else 0. At exactly 0 the kink has no slope; we take
        # 0, as PyTorch does.
        x = self.data
        return Value(x if x > 0 else 0.0, "ReLU", self, 1.0 if x > 0 else 0.0)

    def tanh(self) -> Value:  # d tanh(x)/dx = 1 - tanh(x)**2
        t = math.tanh(self.data)
        return Value(t, "tanh", self, 1.0 - t * t)

    def sigmoid(self) -> Value:  # d s(x)/dx = s(x) * (1 - s(x))
        x = self.data
        # 1/(1+e^-x) overflows for x << 0 (e^-x too big); e^x/(1+e^x) overflows for
        # x >> 0. Choose the form whose exponent is never positive.
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            s = e / (1.0 + e)
        return Value(s, "sigmoid", self, s * (1.0 - s))

    def exp(self) -> Value:  # d e^x/dx = e^x
        e = math.exp(self.data)
        return Value(e, "exp", self, e)

    def log(self) -> Value:  # d ln(x)/dx = 1/x
        x = self.data
        if x <= 0:
            raise ValueError(f"log of a non-positive number: {self!r}")
        return Value(math.log(x), "log", self, 1.0 / x)

    # ---- the backward pass
    def backward(self) -> None:
        """Fill ``.grad`` of every Value this one depends on with d(self)/d(that Value).

        Leaves (Values you created, with no children) *accumulate*: two calls give exactly
        twice the gradient, as in PyTorch (with ``retain_graph=True``), so reset them
        between steps (``p.grad = 0``). Intermediate nodes hold this call's gradient only.
        Unlike micrograd, which lets intermediate nodes keep the last call's gradient and
        pass it on again (leaves get 3x, not 2x, on a second call), every call starts
        from 0 everywhere and adds the leaves' earlier grads back at the end."""
        # 1. Find every node self depends on. Unlike micrograd this is a loop over an
        #    explicit stack, not recursion, so a graph 100,000 nodes deep does not hit
        #    Python's recursion limit (1000).
        seen, stack, leaves = {self}, [self], []
        while stack:
            node = stack.pop()
            a, b = node._child1, node._child2
            if a is None:  # a leaf: keep its grad aside, to add back at the end
                leaves.append((node, node.grad))
            else:  # visit the children (each node once, however often it is used)
                if a not in seen:
                    seen.add(a)
                    stack.append(a)
                if b is not None and b not in seen:
                    seen.add(b)
                    stack.append(b)
            node.grad = 0.0  # this call's gradients are summed from 0
        # 2. Put them in topological order. A Value's inputs always exist before it does,
        #    so the order of creation is one: sorting by birth does it, no recursive
        #    depth-first search needed.
        order = sorted(seen, key=_birth)
        # 3. The chain rule, from the output back to the inputs.
        self.grad = 1.0  # d(self)/d(self) = 1
        for node in reversed(order):  # every node after all the nodes that use it
            a = node._child1
            if a is not None:
                g = node.grad
                a.grad += node._local1 * g
                b = node._child2
                if b is not None:
                    b.grad += node._local2 * g
        for leaf, earlier in leaves:  # leaves accumulate across calls, as in PyTorch
            leaf.grad += earlier

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"
