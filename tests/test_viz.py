"""microgradnn.viz: the computation graph as a rich tree and as Graphviz DOT text.

Edge counts are derived from the graph's shape: a result made by an op with k inputs
contributes k input->op arrows plus one op->result arrow (one per use: ``a + a`` draws two
arrows from ``a``). Deep graphs (10,000 nodes, what BPTT builds) must not recurse.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console

import microgradnn as mg
from microgradnn import viz

EDGE = re.compile(r"^\s*(\w+) -> (\w+);$", re.M)
NODE = re.compile(r"^\s*(\w+) \[shape=(box|ellipse), label=\"((?:[^\"\\]|\\.)*)\"", re.M)


def parse_dot(text: str) -> tuple[dict, list]:
    """(node id -> (shape, label), edges) of our DOT output, checking its skeleton."""
    assert text.startswith("digraph microgradnn {\n") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}") == 1  # labels never contain braces unescaped
    nodes = {m.group(1): (m.group(2), m.group(3)) for m in NODE.finditer(text)}
    edges = EDGE.findall(text)
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undeclared node"
    return nodes, edges


def labels(nodes: dict, shape: str) -> list:
    return [label for s, label in nodes.values() if s == shape]


def render(tree) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(tree)
    return console.file.getvalue()


# ----------------------------------------------------------------- scalar engine


def test_value_dot_has_every_op_and_the_right_edges():
    a, b = mg.Value(2.0), mg.Value(-3.0)
    c = a * b
    d = c + a
    e = d.tanh()
    e.backward()
    nodes, edges = parse_dot(viz.to_dot(e, names={"a": a, "b": b}))
    assert sorted(labels(nodes, "ellipse")) == sorted(["*", "+", "tanh"])
    assert len(labels(nodes, "box")) == 5  # a, b, c, d, e: each once
    # * has 2 inputs, + has 2, tanh 1: (2 + 1) + (2 + 1) + (1 + 1)
    assert len(edges) == 8
    a_box = next(k for k, (s, lab) in nodes.items() if lab.startswith("a\\n"))
    assert sum(1 for src, _ in edges if src == a_box) == 2  # a feeds * and +
    assert f"grad={a.grad:.4g}" in nodes[a_box][1]


def test_reused_node_is_drawn_once_with_one_arrow_per_use():
    a = mg.Value(3.0)
    b = a + a
    c = b + b
    nodes, edges = parse_dot(viz.to_dot(c))
    assert len(labels(nodes, "box")) == 3 and len(labels(nodes, "ellipse")) == 2
    assert len(edges) == 6  # a->op twice, op->b, b->op twice, op->c
    assert len(set(edges)) == 4


def test_value_tree_marks_the_second_visit():
    a, b = mg.Value(2.0), mg.Value(-3.0)
    y = a * b + a
    y.backward()
    tree = viz.graph_tree(y, names={"a": a, "b": b})
    text = render(tree)
    lines = text.strip().splitlines()
    assert lines[0].startswith("+ data=-4 grad=1")
    a_lines = [line for line in lines if "a  data=2" in line]
    assert len(a_lines) == 2
    assert "seen above" not in a_lines[0] and "seen above" in a_lines[1]
    assert "* data=-6" in text and "b  data=-3 grad=2" in text


def test_deep_value_chain_does_not_recurse():
    x = v = mg.Value(0.5)
    for _ in range(10_000):
        v = v * 1.0001 + 0.0  # two nodes per step; constants are not children
    nodes, edges = parse_dot(viz.to_dot(v))
    assert len(labels(nodes, "box")) == 20_001
    assert len(edges) == 2 * 20_000
    tree = viz.graph_tree(v, max_depth=None)  # builds all 20,000 levels iteratively
    depth, node = 0, tree
    while node.children:
        node = node.children[0]
        depth += 1
    assert depth == 20_000
    assert "data=0.5" in str(node.label) and x is not v
    shown = render(viz.graph_tree(v, max_depth=30))  # the default view cuts the branch
    assert "deeper inputs not shown (max_depth=30)" in shown
    assert len(shown.strip().splitlines()) == 32


# ----------------------------------------------------------------- tensors


def test_tensor_dot_has_every_op_and_edge():
    mg.manual_seed(0)
    x = mg.randn(2, 3, requires_grad=True)
    w = mg.randn(3, 4, requires_grad=True)
    y = (x @ w).tanh().sum()
    nodes, edges = parse_dot(viz.to_dot(y, names={"x": x, "w": w}))
    assert sorted(labels(nodes, "ellipse")) == ["MatMul", "Sum", "Tanh"]
    assert len(labels(nodes, "box")) == 5
    assert len(edges) == (2 + 1) + (1 + 1) + (1 + 1)
    box = dict((lab.split("\\n")[0], lab) for lab in labels(nodes, "box"))
    assert "(2, 3) float32" in box["x"] and "grad=None" in box["x"]


def test_multi_output_op_is_one_node():
    h = mg.randn(2, 3, requires_grad=True).exp()
    p, q = h.split(1, 0)
    z = (p * q).sum()
    nodes, edges = parse_dot(viz.to_dot(z))
    assert labels(nodes, "ellipse").count("Split") == 1
    # leaf->Exp, Exp->h, h->Split, Split->p, Split->q, p->Mul, q->Mul, Mul->m, m->Sum, Sum->z
    assert len(edges) == 10
    text = render(viz.graph_tree(z))
    assert text.count("Split") == 2 and text.count("Exp") == 2 and text.count("seen above") == 1


def test_shared_tensor_is_seen_once_and_constants_are_skipped():
    a = mg.randn(3, requires_grad=True)
    b = a * 2.0 + a  # 2.0 is a constant: no node
    c = (b * b).sum()
    nodes, edges = parse_dot(viz.to_dot(c))
    assert sorted(labels(nodes, "ellipse")) == ["Add", "Mul", "Mul", "Sum"]
    assert len(labels(nodes, "box")) == 5  # a, a*2, b, b*b, c
    assert len(edges) == (1 + 1) + (2 + 1) + (2 + 1) + (1 + 1)
    text = render(viz.graph_tree(c))
    assert text.count("seen above") == 2  # b's second use, a's second use


def test_deep_tensor_chain_does_not_recurse():
    t = x = mg.ones(2, requires_grad=True)
    for _ in range(10_000):
        t = t * 1.0
    nodes, edges = parse_dot(viz.to_dot(t))
    assert len(labels(nodes, "box")) == 10_001 and len(edges) == 20_000
    text = render(viz.graph_tree(t, max_depth=5))
    assert text.count("Mul") == 6 and "max_depth=5" in text
    t.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones(2))


def test_freed_graph_says_so():
    x = mg.randn(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert "graph freed by backward" in viz.to_dot(y)
    assert "retain_graph=True" in render(viz.graph_tree(y))
    y2 = (x.exp()).sum()
    y2.backward(retain_graph=True)
    text = render(viz.graph_tree(y2))
    assert "Exp" in text and "freed" not in text and "grad=" in text


def test_dot_escapes_labels_and_checks_arguments():
    a = mg.Value(1.0)
    b = a * 2
    nodes, _ = parse_dot(viz.to_dot(b, names={'say "hi" \\ there': a}))
    assert any(lab.startswith('say \\"hi\\" \\\\ there') for lab in labels(nodes, "box"))
    assert "rankdir=TB;" in viz.to_dot(b, rankdir="TB")
    with pytest.raises(ValueError, match="rankdir"):
        viz.to_dot(b, rankdir="up")
    with pytest.raises(TypeError, match="mg.Value or an mg.Tensor"):
        viz.to_dot(3.0)
    with pytest.raises(TypeError, match="mg.Value or an mg.Tensor"):
        viz.graph_tree([a])


def test_print_graph_writes_to_a_console():
    a = mg.Value(1.5)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    viz.print_graph(a.relu() + 1, console=console)
    out = console.file.getvalue()
    assert out.startswith("+ data=2.5") and "ReLU data=1.5" in out
