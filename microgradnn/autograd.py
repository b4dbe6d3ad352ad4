"""Floor 2: the dynamic graph and reverse-mode differentiation.

Autograd knows no particular op. It knows three things:

* :class:`Variable` — an array (``data``) plus what the graph needs: ``requires_grad``,
  the accumulated ``_grad`` of a leaf, and ``_ctx``, the :class:`Function` node that made
  it (``None`` for a leaf).
* :class:`Function` — a primitive. A subclass writes ``forward(ctx, *arrays)`` and
  ``backward(ctx, grad) -> one gradient per input`` against raw arrays of the backend's
  ``xp``. :meth:`Function.apply` does the bookkeeping: it unwraps tensors, runs
  ``forward``, and records the node only when some input needs a gradient.
* :func:`backward` — walks the graph from the output in reverse topological order (found
  iteratively, so graphs 10,000s of nodes deep, as BPTT makes them, are fine), calls each
  node's ``backward``, sums a broadcast gradient back to its input's shape, and
  accumulates into leaves.
* version counters — every in-place write to an array bumps a count, each node notes when
  it was made, and backward refuses to run a node whose saved arrays were written since
  (PyTorch's "modified by an inplace operation" error), instead of silently differentiating
  at the new values.

A node refers to its inputs, never to its outputs, so the graph holds no reference
cycles and Python's cyclic garbage collector has nothing to do (micrograd's closures
spend most of its time there).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Any, Callable, Iterator

__all__ = [
    "Variable",
    "Function",
    "backward",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "unbroadcast",
    "mark_modified",
    "version",
]

# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager (and decorator) that turns graph recording on or off."""

    def __init__(self, mode: bool) -> None:
        global _grad_enabled
        self.prev = _grad_enabled
        self.mode = bool(mode)
        # like torch.set_grad_enabled, it takes effect at once, so it can be called as a function
        _grad_enabled = self.mode

    def __enter__(self) -> None:
        global _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


class no_grad(contextlib.ContextDecorator):
    """``with mg.no_grad():`` — ops inside record no graph (evaluation, optimizer updates)."""

    def __enter__(self) -> None:
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = False

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


class enable_grad(contextlib.ContextDecorator):
    def __enter__(self) -> None:
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = True

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


# --------------------------------------------------------------------------- versions
#
# A node's backward reads arrays its forward saved on ``ctx`` (``ctx.x = x`` for a product,
# ``ctx.out = out`` for exp). If one of them is written in place before that backward runs
# (an optimizer step between two backward passes of a retained graph, ``x.add_(1)`` on an
# input that needs no gradient), the chain rule would be applied at the new values and the
# gradient would be wrong without a sign. PyTorch counts the writes to each storage and
# checks the counts at backward; so do we. The count belongs to the memory, not to a
# Tensor: every view of an array (``x[0]``, ``x.T``, ``x.detach()``) shares it.
#
# Checking costs nothing in the usual step (forward, backward, then the optimizer writes):
# every write also advances one global clock, each node notes the clock when it is made,
# and backward looks at a node's saved arrays only if some write happened since.

_writes: dict[int, list] = {}  # id(memory owner) -> [in-place writes so far, clock at the last one]
_clock = 0  # in-place writes anywhere, ever


def _memory_owner(array: Any) -> Any:
    """The array that owns ``array``'s memory. numpy and CuPy point a view's ``.base`` at the
    owning array directly (a view of a view too), so one step is enough; an array over
    foreign memory (``np.frombuffer``, a memory map) is its own owner here."""
    base = array.base
    if base is not None and (hasattr(base, "__array_interface__") or hasattr(base, "__cuda_array_interface__")):
        return base
    return array


def version(array: Any) -> int:
    """How many in-place writes the memory under ``array`` has had (``Tensor._version``)."""
    entry = _writes.get(id(_memory_owner(array)))
    return 0 if entry is None else entry[0]


def mark_modified(array: Any) -> None:
    """Record an in-place write to ``array`` (or any view of its memory).

    Every path that writes into an existing tensor's array calls this: the Tensor's in-place
    methods, the optimizers' updates, ``load_state_dict``, the ``nn.init`` functions."""
    global _clock
    _clock += 1
    owner = _memory_owner(array)
    key = id(owner)
    entry = _writes.get(key)
    if entry is None:
        try:  # forget the count with the memory, so a later array at this address starts afresh
            weakref.finalize(owner, _writes.pop, key, None)
        except TypeError:  # an owner without weak references (rare): its entry simply stays
            pass
        _writes[key] = [1, _clock]
    else:
        entry[0] += 1
        entry[1] = _clock


def _check_saved(node: "Function") -> None:
    """Refuse to differentiate ``node`` if an array its forward saved was written since."""
    ndarray = node.xp.ndarray
    for value in node.__dict__.values():
        arrays = value if type(value) is tuple or type(value) is list else (value,)
        for array in arrays:
            if not isinstance(array, ndarray):
                continue
            entry = _writes.get(id(_memory_owner(array)))
            if entry is not None and entry[1] > node.clock:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{array.dtype} {list(array.shape)}], saved by {type(node).__name__}, is at version "
                    f"{entry[0]}, written after the forward pass that saved it. Hint: make the in-place change "
                    f"after backward, or on a .clone() of the tensor"
                )


# --------------------------------------------------------------------------- graph nodes


class Variable:
    """The part of a tensor the graph needs. :class:`microgradnn.Tensor` adds the operators."""

    __slots__ = ("array", "requires_grad", "_grad", "_ctx", "_out_index", "_backend", "_hooks", "_post_hooks",
                 "_counts_writes", "__weakref__")

    # The class an op's output is made of: a Tensor, even when an input is a Parameter.
    _output_type: type = None  # set by microgradnn.tensor

    def __init__(self, data: Any, backend: Any, requires_grad: bool = False, ctx: "Function | None" = None, out_index: int = 0):
        self.array = data
        self._backend = backend
        self.requires_grad = requires_grad
        self._grad = None
        self._ctx = ctx
        self._out_index = out_index
        self._hooks: list | None = None  # hooks of a leaf; a non-leaf's live on its node
        self._post_hooks: list | None = None  # a leaf's hooks run after its .grad is accumulated
        self._counts_writes = True  # False for PyTorch's ``.data`` alias: its writes bump no version

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> "Function | None":
        return self._ctx


class Function:
    """A differentiable primitive; the instance is both the graph node and the ``ctx``.

    Subclasses define ``forward(ctx, *args, **kwargs)`` returning an array (or a tuple of
    arrays for several outputs) and ``backward(ctx, *grads)`` returning one gradient (or
    ``None``) per positional input. ``ctx.needs_input_grad`` (one flag per positional input,
    all False when no graph is recorded) is set before ``forward``, so it can skip saving
    what no gradient will read. ``ctx.xp`` is the backend's array module and
    ``ctx.backend`` the backend. Anything an op stores on ``ctx`` is released after
    backward unless ``retain_graph=True``; the arrays among it (and in its tuples and lists)
    are version-checked before backward runs (see :func:`mark_modified`).
    """

    __slots__ = ("inputs", "needs_input_grad", "backend", "xp", "n_outputs", "out_meta", "out_hooks", "freed",
                 "clock", "__dict__")

    differentiable: bool = True  # False for ops like comparisons: outputs never require grad

    @staticmethod
    def forward(ctx: "Function", *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx: "Function", *grads: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` on the arrays inside ``args`` and record the node if needed.

        Non-tensor positional arguments (Python numbers, arrays) are passed through as
        constants; keyword arguments are options (``dim``, ``keepdim``...)."""
        ctx = cls.__new__(cls)
        backend = None
        first = None
        requires_grad = False
        arrays = []
        for index, arg in enumerate(args):
            if isinstance(arg, Variable):
                if backend is None:
                    backend, first = arg._backend, index
                elif arg._backend is not backend:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, but input {first} "
                        f"is on {backend.name} and input {index} is on {arg._backend.name}; "
                        f"move one with .to({backend.name!r})"
                    )
                requires_grad = requires_grad or arg.requires_grad
                arrays.append(arg.array)
            else:
                arrays.append(arg)
        ctx.backend = backend
        ctx.xp = backend.xp
        record = requires_grad and _grad_enabled and cls.differentiable
        # Known before forward, so an op saves only what the gradients it will be asked for
        # read (a product needs W only for x's gradient): less memory, and no version check
        # on arrays its backward will never touch (as PyTorch).
        ctx.needs_input_grad = (tuple(isinstance(a, Variable) and a.requires_grad for a in args) if record
                                else (False,) * len(args))
        try:
            out = cls.forward(ctx, *arrays, **kwargs)
        except ValueError as exc:  # numpy's broadcasting error names neither the op nor PyTorch's error type
            if "broadcast" not in str(exc):
                raise
            raise RuntimeError(_broadcast_message(cls.__name__, arrays)) from exc
        # numpy gives 0-d results as scalars (np.float32), which can't be written in place
        ndarray = ctx.xp.ndarray
        if type(out) is tuple:
            if not all(isinstance(o, ndarray) for o in out):
                out = tuple(ctx.xp.asarray(o) for o in out)
        elif not isinstance(out, ndarray):
            out = ctx.xp.asarray(out)
        make = args[first]._output_type
        if record:
            ctx.inputs = args
            ctx.out_hooks = None
            ctx.freed = False
            ctx.clock = _clock
        else:
            ctx = None
        if type(out) is tuple:
            if ctx is not None:
                ctx.n_outputs = len(out)
                ctx.out_meta = [(o.shape, o.dtype) for o in out]
            return tuple(make(o, backend, record, ctx, i) for i, o in enumerate(out))
        if ctx is not None:
            ctx.n_outputs = 1
        return make(out, backend, record, ctx, 0)

    def release(self) -> None:
        """Free what forward saved; a later backward through this node is an error."""
        self.__dict__.clear()
        self.inputs = ()
        self.freed = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__}Backward>"


def _broadcast_message(op: str, arrays: list) -> str:
    """PyTorch's wording for shapes that don't broadcast, plus the op and every shape."""
    shapes = [tuple(a.shape) for a in arrays if hasattr(a, "shape") and hasattr(a, "ndim")]
    listed = " and ".join(str(s) for s in shapes)
    ndim = max((len(s) for s in shapes), default=0)
    for back in range(1, ndim + 1):
        sizes = [s[-back] for s in shapes if len(s) >= back and s[-back] != 1]
        if len(set(sizes)) > 1:
            first = sizes[0]
            other = next(n for n in sizes if n != first)
            return (
                f"{op}: the size of tensor a ({first}) must match the size of tensor b ({other}) at "
                f"non-singleton dimension {ndim - back}: shapes {listed} cannot be broadcast together"
            )
    return f"{op}: shapes {listed} cannot be broadcast together"


# --------------------------------------------------------------------------- backward


def unbroadcast(grad: Any, shape: tuple) -> Any:
    """Sum ``grad`` down to ``shape``: the backward of broadcasting.

    A value broadcast along an axis was *used* once per position on that axis, so by the
    multivariate chain rule its gradient is the sum over that axis."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or after its saved values were "
    "freed). Call .backward(retain_graph=True) the first time if you need to backward twice."
)


def _topological_order(root: Function) -> list[Function]:
    """Nodes reachable from ``root``, each after every node that uses its output.

    Iterative depth-first search with an explicit stack: a recursive one overflows
    Python's stack on the deep graphs that backpropagation through time builds."""
    order: list[Function] = []
    visited = {id(root)}
    stack: list[tuple[Function, Iterator]] = [(root, iter(root.inputs))]
    while stack:
        node, inputs = stack[-1]
        for inp in inputs:
            parent = inp._ctx if isinstance(inp, Variable) else None
            if parent is not None and id(parent) not in visited:
                if parent.freed:
                    raise RuntimeError(_FREED_MESSAGE)
                visited.add(id(parent))
                stack.append((parent, iter(parent.inputs)))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()
    return order


def _as_array(grad: Any, owner: Variable) -> Any:
    """numpy computes 0-d results as scalars (np.float64); a stored gradient must be an array."""
    xp = owner._backend.xp
    return grad if isinstance(grad, xp.ndarray) else xp.asarray(grad)


def _overlaps_itself(array: Any) -> bool:
    """True for a broadcast view: several elements share one memory location."""
    return array.size > 1 and any(s == 0 and n > 1 for s, n in zip(array.strides, array.shape))


def _accumulate_leaf(leaf: Variable, grad: Any, handed_out: set) -> None:
    grad = _as_array(grad, leaf)
    if leaf._hooks:
        for hook in leaf._hooks:
            result = hook(grad)
            if result is not None:
                grad = _as_array(result, leaf)
    # A leaf's .grad is the user's to mutate in place (optimizers do), so it must not
    # share memory with another leaf's gradient: copy an array already handed out.
    # A broadcast view (read-only, zero strides: Sum/Mean/Expand backward) can't be stored either.
    owner = grad if grad.base is None else grad.base
    if id(owner) in handed_out or not getattr(grad.flags, "writeable", True) or _overlaps_itself(grad):
        grad = grad.copy()
        owner = grad
    handed_out.add(id(owner))
    if leaf._grad is None:
        leaf._grad = grad
    else:
        leaf._grad = _as_array(leaf._grad + grad, leaf)
    if leaf._post_hooks:
        for hook in tuple(leaf._post_hooks):
            hook(leaf)


def _run_hooks(hooks: list, grad: Any) -> Any:
    for hook in hooks:
        result = hook(grad)
        if result is not None:
            grad = result
    return grad


def backward(root: Variable, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into every leaf that requires grad."""
    if not root.requires_grad:
        raise RuntimeError(
            "element 0 of tensors does not require grad and does not have a grad_fn: "
            "nothing to differentiate (create inputs with requires_grad=True)"
        )
    xp = root._backend.xp
    if grad is None:
        if root.array.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs, but this tensor has shape "
                f"{tuple(root.array.shape)}: call .backward(grad) with a gradient of that shape, or reduce it "
                f"first (e.g. .sum())"
            )
        grad = xp.ones_like(root.array)
    else:
        grad = grad.array if isinstance(grad, Variable) else xp.asarray(grad, dtype=root.array.dtype)
        if grad.shape != root.array.shape:
            raise RuntimeError(
                f"backward: gradient has shape {tuple(grad.shape)} but the tensor has shape {tuple(root.array.shape)}"
            )
    handed_out: set = {id(grad if grad.base is None else grad.base)} if grad is not None else set()
    root_ctx = root._ctx
    if root_ctx is None:
        _accumulate_leaf(root, grad.copy(), handed_out)
        return
    if root_ctx.freed:
        raise RuntimeError(_FREED_MESSAGE)
    pending: dict[int, list] = {id(root_ctx): [None] * root_ctx.n_outputs}
    # A leaf's gradient is summed over all its uses first, so its hooks see the total once (as PyTorch).
    leaves: dict[int, list] = {}
    pending[id(root_ctx)][root._out_index] = grad
    for node in _topological_order(root_ctx):
        grads = pending.pop(id(node), None)
        if grads is None:
            continue
        if node.out_hooks:
            for index, hooks in node.out_hooks.items():
                if grads[index] is not None:
                    grads[index] = _run_hooks(hooks, node.xp.asarray(grads[index]))
        if node.clock != _clock:  # something was written in place since this node was made
            _check_saved(node)
        if node.n_outputs == 1:
            input_grads = node.backward(node, grads[0])
        else:
            for index, g in enumerate(grads):
                if g is None:
                    shape, dtype = node.out_meta[index]
                    grads[index] = node.xp.zeros(shape, dtype=dtype)
            input_grads = node.backward(node, *grads)
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        for inp, g, needed in zip(node.inputs, input_grads, node.needs_input_grad):
            if not needed or g is None:
                continue
            data = inp.array
            if g.shape != data.shape:
                g = unbroadcast(g, data.shape)
            if g.dtype != data.dtype:
                g = g.astype(data.dtype)
            parent = inp._ctx
            if parent is None:
                entry = leaves.get(id(inp))
                if entry is None:
                    leaves[id(inp)] = [inp, g]
                else:
                    entry[1] = entry[1] + g
                continue
            slots = pending.get(id(parent))
            if slots is None:
                slots = pending[id(parent)] = [None] * parent.n_outputs
            previous = slots[inp._out_index]
            slots[inp._out_index] = g if previous is None else previous + g
        if not retain_graph:
            node.release()
    for leaf, g in leaves.values():
        _accumulate_leaf(leaf, g, handed_out)


def register_hook(tensor: Variable, hook: Callable[[Any], Any]) -> Callable[[], None]:
    """Call ``hook(grad_array)`` when the gradient of ``tensor`` is computed.

    Returns a function that removes the hook. A hook may return a replacement gradient."""
    if not tensor.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that does not require grad")
    if tensor._ctx is None:
        if tensor._hooks is None:
            tensor._hooks = []
        hooks = tensor._hooks
    else:
        node = tensor._ctx
        if node.out_hooks is None:
            node.out_hooks = {}
        hooks = node.out_hooks.setdefault(tensor._out_index, [])
    hooks.append(hook)
    return functools.partial(_remove_hook, hooks, hook)


def register_post_accumulate_grad_hook(tensor: Variable, hook: Callable[[Variable], None]) -> Callable[[], None]:
    """Call ``hook(tensor)`` each time a backward pass has accumulated into a leaf's ``.grad``
    (as ``torch.Tensor.register_post_accumulate_grad_hook``): where data-parallel training
    starts reducing a gradient. Returns a function that removes the hook."""
    if not tensor.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that does not require grad")
    if tensor._ctx is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    if tensor._post_hooks is None:
        tensor._post_hooks = []
    tensor._post_hooks.append(hook)
    return functools.partial(_remove_hook, tensor._post_hooks, hook)


def _remove_hook(hooks: list, hook: Callable) -> None:
    if hook in hooks:
        hooks.remove(hook)


def retain_grad(tensor: Variable) -> None:
    """Keep the gradient of a non-leaf in ``tensor.grad`` after backward (as PyTorch)."""
    if tensor._ctx is None:
        return
    ref = weakref.ref(tensor)  # a strong reference would make a cycle tensor -> node -> hook -> tensor

    def store(grad: Any) -> None:
        t = ref()
        if t is not None:
            # a copy, as PyTorch's clone: the array flowing on may be a read-only view or reach a leaf
            t._grad = grad.copy() if t._grad is None else _as_array(t._grad + grad, t)

    register_hook(tensor, store)
