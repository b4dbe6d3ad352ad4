"""Check a tutorial exercise:  python tutorials/check.py N  [--solution]

Imports your answer from tutorials/exercises/chNN.py (or the reference answer from
tutorials/solutions/chNN.py with --solution) and tests it against the engine and against
independent references. Exit status 0 when it passes.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
CHECKS: dict[int, Callable] = {}


def check(chapter: int) -> Callable:
    def register(fn: Callable) -> Callable:
        CHECKS[chapter] = fn
        return fn
    return register


@check(1)
def _chain_rule(answer) -> None:
    import microgradnn as mg

    for x0 in np.linspace(-2.0, 2.0, 17):
        x = mg.Value(float(x0))
        ((x ** 2 + 1).tanh() * x).backward()
        f = lambda v: math.tanh(v ** 2 + 1) * v  # noqa: E731
        numeric = (f(x0 + 1e-6) - f(x0 - 1e-6)) / 2e-6
        got = answer.dfdx(float(x0))
        assert abs(got - x.grad) < 1e-9, f"dfdx({x0:.2f}) = {got}, but mg.Value says {x.grad}"
        assert abs(got - numeric) < 1e-6, f"dfdx({x0:.2f}) = {got}, finite differences say {numeric}"


@check(2)
def _topo_order(answer) -> None:
    import microgradnn as mg

    a, b = mg.Value(1.5), mg.Value(-2.0)
    c = a * b + a
    d = (c.tanh() + b * c) ** 2
    deep = a
    for _ in range(5000):
        deep = deep + 1.0
    for root in (d, deep, a):
        order = answer.topo_order(root)
        position = {id(n): k for k, n in enumerate(order)}
        assert len(position) == len(order), "each node must appear once"
        assert order[-1] is root, "the root comes last"
        for node in order:
            for child in node._prev:
                assert id(child) in position, "every node the root depends on must be listed"
                assert position[id(child)] < position[id(node)], "a node must come after its inputs"
    assert len(answer.topo_order(d)) == 8


@check(3)
def _unbroadcast(answer) -> None:
    import microgradnn as mg

    rng = np.random.default_rng(0)
    cases = [((4, 3), (3,)), ((4, 3), (1, 3)), ((2, 4, 3), (4, 1)), ((2, 4, 3), (1,)), ((5, 1), (5, 1)),
             ((2, 3, 4), (2, 1, 4))]
    for out_shape, in_shape in cases:
        x = mg.tensor(rng.standard_normal(in_shape), requires_grad=True)
        grad = rng.standard_normal(out_shape)
        (x + mg.zeros(*out_shape, dtype=x.dtype)).backward(mg.tensor(grad))
        got = np.asarray(answer.unbroadcast(grad, in_shape))
        assert got.shape == tuple(in_shape), f"unbroadcast to {in_shape} gave shape {got.shape}"
        assert np.allclose(got, x.grad.numpy()), f"wrong values for {out_shape} -> {in_shape}"


@check(4)
def _momentum(answer) -> None:
    import microgradnn as mg

    rng = np.random.default_rng(0)
    start = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    params = [mg.nn.Parameter(mg.tensor(p.copy())) for p in start]
    opt = mg.optim.SGD(params, lr=0.1, momentum=0.9)
    mine, velocities = [p.copy() for p in start], [np.zeros_like(p) for p in start]
    for _ in range(5):
        grads = [rng.standard_normal(p.shape) for p in start]
        for p, g in zip(params, grads):
            p.grad = mg.tensor(g)
        opt.step()
        answer.sgd_momentum_step(mine, grads, velocities, 0.1, 0.9)
    for p, q in zip(params, mine):
        assert np.allclose(p.detach().numpy(), q), "your parameters differ from mg.optim.SGD(momentum=0.9)"


@check(5)
def _bptt(answer) -> None:
    import microgradnn as mg

    rng = np.random.default_rng(1)
    T, B, I, H = 7, 3, 4, 5
    xs = rng.standard_normal((T, B, I))
    W_ih, W_hh, b = rng.standard_normal((H, I)) * 0.5, rng.standard_normal((H, H)) * 0.5, rng.standard_normal(H) * 0.1
    w_hh = mg.tensor(W_hh, requires_grad=True)
    h = mg.zeros(B, H, dtype=mg.float64)
    for t in range(T):
        h = (mg.tensor(xs[t]) @ mg.tensor(W_ih).T + h @ w_hh.T + mg.tensor(b)).tanh()
    h.sum().backward()
    got = np.asarray(answer.bptt(xs, W_ih, W_hh, b))
    assert got.shape == W_hh.shape, f"dW_hh should have shape {W_hh.shape}, got {got.shape}"
    assert np.allclose(got, w_hh.grad.numpy()), "your dW_hh differs from autograd's"


@check(6)
def _clip(answer) -> None:
    import microgradnn as mg

    rng = np.random.default_rng(2)
    for scale, max_norm in [(10.0, 1.0), (0.01, 1.0), (3.0, 0.5)]:
        grads = [rng.standard_normal((3, 4)) * scale, rng.standard_normal(5) * scale]
        params = [mg.nn.Parameter(mg.zeros(*g.shape, dtype=mg.float64)) for g in grads]
        for p, g in zip(params, grads):
            p.grad = mg.tensor(g.copy())
        expected_total = float(mg.nn.utils.clip_grad_norm_(params, max_norm))
        total = answer.clip_by_total_norm(grads, max_norm)
        assert abs(total - expected_total) < 1e-9 * max(1.0, expected_total), "wrong total norm"
        for p, g in zip(params, grads):
            assert np.allclose(p.grad.numpy(), g), "your clipped gradients differ from clip_grad_norm_"


@check(7)
def _gru(answer) -> None:
    import microgradnn as mg

    mg.manual_seed(3)
    cell = mg.nn.GRUCell(3, 4).double()
    rng = np.random.default_rng(3)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    expected = cell(mg.tensor(x), mg.tensor(h)).detach().numpy()
    weights = [getattr(cell, n).detach().numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    got = np.asarray(answer.gru_step(x, h, *weights))
    assert np.allclose(got, expected), "your GRU step differs from mg.nn.GRUCell"


@check(8)
def _leaky_cell(answer) -> None:
    import microgradnn as mg

    mg.manual_seed(8)
    cell = answer.LeakyCell(3, 4, dtype=mg.float64)
    names = {name for name, _ in cell.named_parameters()}
    assert {"weight_ih", "weight_hh", "leak"} <= names, f"expected weight_ih, weight_hh, leak; got {sorted(names)}"
    x = mg.randn(2, 3, dtype=mg.float64, requires_grad=True)
    h = mg.randn(2, 4, dtype=mg.float64, requires_grad=True)
    out, state = cell.step(x, h)
    a = 1 / (1 + np.exp(-cell.leak.detach().numpy()))
    pre = x.detach().numpy() @ cell.weight_ih.detach().numpy().T + h.detach().numpy() @ cell.weight_hh.detach().numpy().T
    if cell.bias_ih is not None:
        pre = pre + cell.bias_ih.detach().numpy()
    expected = a * h.detach().numpy() + (1 - a) * np.tanh(pre)
    assert np.allclose(out.detach().numpy(), expected), "h' differs from a*h + (1-a)*tanh(Wx + Uh + b)"
    assert mg.gradcheck(lambda x, h: cell.step(x, h)[0], x, h), "gradients differ from finite differences"
    layer = mg.nn.Recurrent(answer.LeakyCell, input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    out, h_n = layer(mg.randn(6, 2, 3))
    assert out.shape == (6, 2, 10) and h_n.shape == (4, 2, 5), "wrong shapes through mg.nn.Recurrent"


@check(9)
def _lora_count(answer) -> None:
    import microgradnn as mg
    from microgradnn.finetune import LoRA

    for hidden, layers, r in [(8, 1, 2), (16, 2, 4)]:
        lstm = mg.nn.LSTM(5, hidden, num_layers=layers)
        shapes = [tuple(p.shape) for name, p in lstm.named_parameters() if name.startswith("weight_")]
        before = sum(p.numel() for p in lstm.parameters())
        LoRA(targets=["weight_*"], r=r).apply(lstm)
        added = sum(p.numel() for p in lstm.parameters()) - before
        got = answer.lora_parameters(shapes, r)
        assert got == added, f"lora_parameters(..., r={r}) = {got}, but LoRA added {added} parameters"


@check(10)
def _best_eval(answer) -> None:
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(10)
        values = rng.random(6)
        lines = []
        for k, value in enumerate(values):
            lines.append(json.dumps({"event": "train", "step": 10 * k + 5, "loss": float(value) / 10}))
            lines.append(json.dumps({"event": "eval", "step": 10 * k + 10, "val_loss": float(value)}))
        (Path(folder) / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        k = int(np.argmin(values))
        got = answer.best_eval(folder, "val_loss")
        assert tuple(got) == (10 * k + 10, float(values[k])), f"best_eval gave {got}, expected {(10 * k + 10, values[k])}"


def load(chapter: int, solution: bool):
    folder = "solutions" if solution else "exercises"
    path = HERE / folder / f"ch{chapter:02d}.py"
    spec = importlib.util.spec_from_file_location(f"tutorial_{folder}_ch{chapter:02d}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@check(11)
def _attention(answer) -> None:
    import microgradnn as mg
    from microgradnn.nn.attention import DotAttention

    rng = np.random.default_rng(11)
    B, S, K = 4, 6, 5
    query, keys = rng.normal(size=(B, K)), rng.normal(size=(B, S, K))
    lengths = np.array([6, 1, 3, 5])
    mask = np.arange(S)[None, :] < lengths[:, None]
    context, weights = answer.attend(query, keys, mask)
    ref_c, ref_w = DotAttention(K, K)(mg.tensor(query), mg.tensor(keys), mask=mask)
    assert np.shape(weights) == (B, S) and np.shape(context) == (B, K), "weights are (B, S), context (B, K)"
    assert np.allclose(weights, ref_w.array, atol=1e-9), "the weights differ from nn.attention.DotAttention's"
    assert np.allclose(context, ref_c.array, atol=1e-9), "the context differs from nn.attention.DotAttention's"
    assert (np.asarray(weights)[~mask] == 0.0).all(), "padded positions must get weight exactly 0"
    big_c, big_w = answer.attend(query * 1e3, keys, mask)  # scores in the thousands: exp(1000) overflows
    assert np.isfinite(big_w).all() and np.isfinite(big_c).all(), "subtract the largest score before exp"


def run(chapter: int, solution: bool = False) -> tuple[bool, str]:
    """(passed, message) for one chapter's exercise."""
    if chapter not in CHECKS:
        return False, f"chapter {chapter} has no exercise check; chapters with checks: {sorted(CHECKS)}"
    try:
        CHECKS[chapter](load(chapter, solution))
    except NotImplementedError as error:
        return False, f"not done yet: {error}"
    except AssertionError as error:
        return False, f"not yet right: {error}"
    return True, f"chapter {chapter}: correct!"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", type=int)
    parser.add_argument("--solution", action="store_true", help="check the reference solution instead")
    args = parser.parse_args(argv)
    passed, message = run(args.chapter, args.solution)
    print(message)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
