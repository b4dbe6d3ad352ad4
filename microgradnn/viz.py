"""Draw a computation graph: the graph behind an ``mg.Value`` or an ``mg.Tensor``.

Two views of the same graph:

* :func:`graph_tree` — a ``rich`` tree for the terminal, read from the output down to
  the inputs it depends on (the direction backward walks). A node reached a second time
  (a value used twice) is printed once more, marked "seen above", without repeating what
  is below it::

      >>> from microgradnn import viz
      >>> a, b = mg.Value(2.0), mg.Value(-3.0)
      >>> y = a * b + a
      >>> y.backward()
      >>> viz.print_graph(y, names={"a": a, "b": b})
      + data=-4 grad=1
      ├── * data=-6 grad=1
      │   ├── a  data=2 grad=-2
      │   └── b  data=-3 grad=2
      └── a  data=2 grad=-2  (seen above)

* :func:`to_dot` — Graphviz DOT text (render it with ``dot -Tpng graph.dot -o graph.png``
  or paste it into any online Graphviz viewer; microgradnn itself needs no graphviz).
  Data flows left to right, as in micrograd's ``draw_dot``: a box per value (its data and
  gradient), an ellipse per operation, one arrow per use, so ``a + a`` shows two arrows
  from ``a``: that is why its gradient is 2.

How the graph is found: a ``Value`` keeps its (at most two) inputs in ``_child1`` and
``_child2``; a ``Tensor`` keeps the node that made it in ``_ctx`` (an autograd
``Function``), whose ``inputs`` are the tensors it was computed from. Leaves have neither.
Both walks use an explicit stack, never recursion, so graphs 10,000s of nodes deep (what
backpropagation through time builds) are drawn without a RecursionError.

Tensor graphs are freed by ``backward()`` (as in PyTorch): draw before it, or call
``backward(retain_graph=True)``. A freed node is drawn, and says so.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

from .autograd import Function, Variable
from .scalar import Value

__all__ = ["graph_tree", "print_graph", "to_dot"]

_SMALL = 4  # tensors with at most this many elements show their values, larger ones their shape


# ------------------------------------------------------------------ reading the graph


def _check_root(root: Any) -> None:
    if not isinstance(root, (Value, Variable)):
        raise TypeError(f"expected an mg.Value or an mg.Tensor to draw, got {type(root).__name__}")


def _op_name(node: Any) -> Optional[str]:
    """The name of the operation that produced ``node``; None for a leaf."""
    if isinstance(node, Value):
        return node._op or None
    ctx = node._ctx
    return None if ctx is None else type(ctx).__name__


def _inputs(node: Any) -> list:
    """What ``node`` was computed from, once per use (``a * a`` lists ``a`` twice)."""
    if isinstance(node, Value):
        return [c for c in (node._child1, node._child2) if c is not None]
    ctx = node._ctx
    if ctx is None:
        return []
    return [x for x in ctx.inputs if isinstance(x, Variable)]


def _freed(node: Any) -> bool:
    ctx = getattr(node, "_ctx", None)
    return isinstance(ctx, Function) and getattr(ctx, "freed", False)


def _number(x: float) -> str:
    return f"{x:.4g}"


def _array_text(array: Any) -> str:
    """A small array's values (moved to the host first if it lives on a GPU)."""
    import numpy as np

    from .backend import to_host

    return np.array2string(to_host(array), precision=4, separator=", ")


def _describe(node: Any) -> tuple[str, str]:
    """(what the node holds, its gradient), as short text."""
    if isinstance(node, Value):
        return f"data={_number(node.data)}", f"grad={_number(node.grad)}"
    kind = type(node).__name__
    data = node.array
    text = f"{tuple(data.shape)} {data.dtype.name}"
    if kind != "Tensor":  # Parameter
        text = f"{kind} {text}"
    if data.size <= _SMALL:
        text += f" {_array_text(data)}"
    device = getattr(getattr(node, "_backend", None), "name", "cpu")
    if device != "cpu":
        text += f" on {device}"
    grad = node._grad
    if grad is not None:
        grad_text = f"grad={_array_text(grad)}" if grad.size <= _SMALL else f"grad {tuple(grad.shape)}"
    elif node._ctx is None and node.requires_grad:
        grad_text = "grad=None"  # a leaf whose backward has not run yet
    else:
        grad_text = ""  # an intermediate tensor keeps no grad (unless retain_grad())
    return text, grad_text


def _name_lookup(names: Optional[Mapping[str, Any]]) -> dict[int, str]:
    return {id(obj): name for name, obj in (names or {}).items()}


# ------------------------------------------------------------------ rich tree


def graph_tree(root: Any, names: Optional[Mapping[str, Any]] = None, max_depth: Optional[int] = 64) -> Any:
    """The graph behind ``root`` as a ``rich.tree.Tree``, output at the top.

    Each line: the operation that made the node (nothing for a leaf), an optional name
    from ``names`` (``{"w": w}``), the data (a Value's number; a tensor's values when it is
    tiny, else its shape) and the gradient. A node already drawn is marked "seen above"
    and not expanded again. Below ``max_depth`` levels (None: no limit) a branch is cut
    with a note: a 10,000-step chain is no picture."""
    from rich.text import Text
    from rich.tree import Tree

    _check_root(root)
    named = _name_lookup(names)

    def label(node: Any, seen: bool) -> Text:
        op = _op_name(node)
        data, grad = _describe(node)
        text = Text()
        if op is not None:
            text.append(op, style="bold magenta")
            text.append(" ")
        name = named.get(id(node))
        if name:
            text.append(name, style="bold cyan")
            text.append("  ")
        text.append(data)
        if grad:
            text.append(" ")
            text.append(grad, style="green")
        if _freed(node):
            text.append("  (graph freed by backward(): draw before it or use retain_graph=True)", style="red")
        if seen:
            text.append("  (seen above)", style="dim")
        return text

    tree = Tree(label(root, False), guide_style="dim")
    seen = {id(root)}
    # An explicit stack instead of recursion. Entries are (node, the branch to draw it
    # under, its depth); a node's line is added when it is popped, so "seen above" marks
    # every occurrence after the first in printed (depth-first) order.
    stack: list[tuple[Any, Any, int]] = [(child, tree, 1) for child in reversed(_inputs(root))]
    if max_depth is not None and max_depth < 1 and stack:
        tree.add(Text(f"… inputs not shown (max_depth={max_depth})", style="dim italic"))
        stack = []
    while stack:
        node, parent, depth = stack.pop()
        again = id(node) in seen
        branch = parent.add(label(node, again))
        if again:
            continue
        seen.add(id(node))
        children = _inputs(node)
        if not children:
            continue
        if max_depth is not None and depth >= max_depth:
            branch.add(Text(f"… deeper inputs not shown (max_depth={max_depth})", style="dim italic"))
            continue
        stack.extend((child, branch, depth + 1) for child in reversed(children))
    return tree


def print_graph(root: Any, names: Optional[Mapping[str, Any]] = None, max_depth: Optional[int] = 64,
                console: Any = None) -> None:
    """Print :func:`graph_tree` to the terminal (or to a given ``rich`` console)."""
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(graph_tree(root, names=names, max_depth=max_depth))


# ------------------------------------------------------------------ Graphviz DOT


def _quote(text: str) -> str:
    """A DOT string literal: backslashes and quotes escaped, lines joined with \\n."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _walk(root: Any) -> Iterator[Any]:
    """Every node reachable from ``root`` once, in depth-first order, without recursion."""
    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        for child in reversed(_inputs(node)):
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)


def to_dot(root: Any, names: Optional[Mapping[str, Any]] = None, rankdir: str = "LR") -> str:
    """Graphviz DOT text for the graph behind ``root``.

    A box per value (name, data, gradient; the output drawn bold), an ellipse per
    operation, an arrow from each input to the operation for every use, and one from the
    operation to its result. For tensors, one ellipse per autograd node, so the outputs
    of a multi-output op (``split``, ``chunk``) share it. Each node appears once however
    often it is used."""
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"rankdir={rankdir!r}: expected one of 'LR', 'RL', 'TB', 'BT'")
    _check_root(root)
    named = _name_lookup(names)
    ids: dict[tuple[str, int], str] = {}

    def node_id(obj: Any, prefix: str) -> str:
        key = (prefix, id(obj))  # a Value is both a value box and (as its own op) an ellipse
        if key not in ids:
            ids[key] = f"{prefix}{len(ids)}"
        return ids[key]

    lines = [
        "digraph microgradnn {",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=10];',
    ]
    edges: list[str] = []
    ops_drawn: set[int] = set()
    for node in _walk(root):
        data, grad = _describe(node)
        title = named.get(id(node), "")
        text = "\n".join(part for part in (title, data, grad) if part)
        if _freed(node):
            text += "\n(graph freed by backward)"
        style = ', style=bold' if node is root else ""
        me = node_id(node, "v")
        lines.append(f"  {me} [shape=box, label={_quote(text)}{style}];")
        op = _op_name(node)
        if op is None:
            continue
        # a Value owns its operation; tensors from one autograd node share it
        op_key = node if isinstance(node, Value) else node._ctx
        op_id = node_id(op_key, "op")
        edges.append(f"  {op_id} -> {me};")
        if id(op_key) in ops_drawn:
            continue
        ops_drawn.add(id(op_key))
        lines.append(f"  {op_id} [shape=ellipse, label={_quote(op)}];")
        for child in _inputs(node):
            edges.append(f"  {node_id(child, 'v')} -> {op_id};")
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"
