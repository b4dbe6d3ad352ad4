"""Fused whole-sequence recurrent primitives (microgradnn.ops.recurrent).

* gradcheck of every primitive w.r.t. every input (float64), with and without lengths,
  both directions, with and without biases;
* oracle: torch.nn.LSTM / GRU / RNN (tanh, relu) with the same weights, float64 and
  float32; variable lengths against pack_padded_sequence (forward) and the reverse half of
  a bidirectional torch layer (reverse);
* each fused kernel against its plain-numpy reference twin;
* grad_norms against per-step hidden-state gradients of an unrolled torch cell loop.
"""

from __future__ import annotations

import hypothesis
import numpy as np
import pytest
import torch
from hypothesis import strategies as st

import microgradnn as mg
from microgradnn.backend import get_backend, reference
from microgradnn.ops import all_primitives
from microgradnn.ops.recurrent import (
    GRUSequence,
    LSTMSequence,
    RNNSequence,
    _WORKSPACE,
    gru_sequence,
    lstm_sequence,
    rnn_sequence,
)

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
KINDS = list(GATES)
PARAM_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def run(kind, x, h0, c0, weights, lengths=None, reverse=False, grad_norms=None):
    """Call the primitive for ``kind``; always returns a tuple of outputs."""
    w_ih, w_hh, b_ih, b_hh = weights
    if kind == "lstm":
        return lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, grad_norms=grad_norms)
    if kind == "gru":
        return gru_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, grad_norms=grad_norms)
    return rnn_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity=kind[4:], lengths=lengths, reverse=reverse,
                        grad_norms=grad_norms)


def random_problem(kind, T, B, I, H, dtype, seed, bias=True):
    """Random non-zero inputs as numpy arrays: x, h0, c0, [w_ih, w_hh, b_ih, b_hh]."""
    rng = np.random.default_rng(seed)
    G = GATES[kind]

    def arr(*shape, scale=1.0):
        return (rng.uniform(0.2, 1.0, shape) * rng.choice([-1, 1], shape) * scale).astype(dtype)

    weights = [arr(G * H, I, scale=0.6), arr(G * H, H, scale=0.6)]
    weights += [arr(G * H, scale=0.5), arr(G * H, scale=0.5)] if bias else [None, None]
    return arr(T, B, I), arr(B, H, scale=0.5), arr(B, H, scale=0.5), weights


def as_tensors(x, h0, c0, weights, requires_grad=True):
    t = lambda a: None if a is None else mg.tensor(a.copy(), requires_grad=requires_grad)  # noqa: E731
    return t(x), t(h0), t(c0), [t(w) for w in weights]


# ----------------------------------------------------------------------------- registry


def test_primitives_are_registered():
    names = {p.__name__ for p in all_primitives()}
    assert {"LSTMSequence", "GRUSequence", "RNNSequence"} <= names
    for cls in (LSTMSequence, GRUSequence, RNNSequence):
        assert "backward" in vars(cls)


# ----------------------------------------------------------------------------- gradcheck


GRADCHECK_CASES = [
    # (lengths, reverse, bias)
    (None, False, True),
    (None, True, True),
    ([4, 2, 1], False, True),
    ([3, 4, 1], True, True),
    (None, False, False),
    ([2, 4, 3], True, False),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lengths,reverse,bias", GRADCHECK_CASES)
def test_gradcheck(kind, lengths, reverse, bias):
    x, h0, c0, weights = random_problem(kind, 4, 3, 2, 3, np.float64, seed=1, bias=bias)
    x, h0, c0, weights = as_tensors(x, h0, c0, weights)
    lengths = None if lengths is None else np.array(lengths)
    inputs = [x, h0] + ([c0] if kind == "lstm" else []) + [w for w in weights if w is not None]

    def fn(*args):
        args = list(args)
        xx, hh = args.pop(0), args.pop(0)
        cc = args.pop(0) if kind == "lstm" else None
        ws = args if bias else args + [None, None]
        return run(kind, xx, hh, cc, ws, lengths=lengths, reverse=reverse)

    assert mg.gradcheck(fn, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------- torch oracle


def torch_layer(kind, I, H, dtype, bidirectional=False):
    torch.manual_seed(0)
    if kind == "lstm":
        layer = torch.nn.LSTM(I, H, bidirectional=bidirectional)
    elif kind == "gru":
        layer = torch.nn.GRU(I, H, bidirectional=bidirectional)
    else:
        layer = torch.nn.RNN(I, H, nonlinearity=kind[4:], bidirectional=bidirectional)
    return layer.to(getattr(torch, np.dtype(dtype).name))


def assert_close(actual, expected, dtype, what):
    actual = np.asarray(actual.array if isinstance(actual, mg.Tensor) else actual)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, what
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6, err_msg=what)
    else:
        scale = max(float(np.abs(expected).max()), 1e-3)
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


def compare_with_torch(kind, dtype, T, B, I, H, lengths=None, reverse=False, seed=0):
    """Run the primitive and the torch layer (packed when ``lengths``; the reverse half of a
    bidirectional layer when ``reverse``) on the same data; compare outputs and grads."""
    layer = torch_layer(kind, I, H, dtype, bidirectional=reverse)
    suffix = "_reverse" if reverse else ""
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((T, B, I)).astype(dtype)
    h0_np = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    c0_np = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    g_out = rng.standard_normal((T, B, H)).astype(dtype)
    g_h = rng.standard_normal((B, H)).astype(dtype)
    g_c = rng.standard_normal((B, H)).astype(dtype)
    ndir = 2 if reverse else 1

    # torch
    tx = torch.tensor(x_np, requires_grad=True)
    th0 = torch.tensor(np.stack([h0_np] * ndir), requires_grad=True)
    tc0 = torch.tensor(np.stack([c0_np] * ndir), requires_grad=True)
    state = (th0, tc0) if kind == "lstm" else th0
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), enforce_sorted=False)
        tout, tstate = layer(packed, state)
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, total_length=T)
    else:
        tout, tstate = layer(tx, state)
    th_n, tc_n = tstate if kind == "lstm" else (tstate, None)
    d = ndir - 1  # the direction compared: 0 forward, 1 reverse
    tout = tout[..., d * H : (d + 1) * H]
    loss = (tout * torch.tensor(g_out)).sum() + (th_n[d] * torch.tensor(g_h)).sum()
    if kind == "lstm":
        loss = loss + (tc_n[d] * torch.tensor(g_c)).sum()
    loss.backward()

    # microgradnn
    weights = [getattr(layer, n + suffix).detach().numpy() for n in PARAM_NAMES]
    x, h0, c0, ws = as_tensors(x_np, h0_np, c0_np, weights)
    outs = run(kind, x, h0, c0, ws, lengths=None if lengths is None else np.array(lengths), reverse=reverse)
    total = (outs[0] * mg.tensor(g_out)).sum() + (outs[1] * mg.tensor(g_h)).sum()
    if kind == "lstm":
        total = total + (outs[2] * mg.tensor(g_c)).sum()
    total.backward()

    assert outs[0].dtype == dtype
    assert_close(outs[0], tout, dtype, "output")
    assert_close(outs[1], th_n[d], dtype, "h_n")
    if kind == "lstm":
        assert_close(outs[2], tc_n[d], dtype, "c_n")
        assert_close(c0.grad, tc0.grad[d], dtype, "grad c0")
    assert_close(x.grad, tx.grad, dtype, "grad x")
    assert_close(h0.grad, th0.grad[d], dtype, "grad h0")
    for name, w in zip(PARAM_NAMES, ws):
        assert_close(w.grad, getattr(layer, name + suffix).grad, dtype, f"grad {name}{suffix}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_torch(kind, dtype, reverse):
    compare_with_torch(kind, dtype, T=7, B=4, I=5, H=8, reverse=reverse)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
def test_variable_lengths_match_packed_torch(kind, dtype, reverse):
    compare_with_torch(kind, dtype, T=6, B=5, I=3, H=4, lengths=[6, 2, 4, 1, 6], reverse=reverse, seed=3)


def test_float32_workload_shape_matches_torch():
    """Large enough for the float32 kernels' vector loops and remainders (H = 37)."""
    compare_with_torch("lstm", np.float32, T=9, B=6, I=11, H=37, lengths=[9, 3, 9, 5, 1, 8], seed=5)
    compare_with_torch("gru", np.float32, T=9, B=6, I=11, H=37, seed=6, reverse=True)


# ----------------------------------------------------------------------------- kernels


def kernel_cases(dtype, rng, B=5, H=19):
    f = lambda *s: (2 * rng.standard_normal(s)).astype(dtype)  # noqa: E731
    p = lambda *s: rng.uniform(0.02, 0.98, s).astype(dtype)  # noqa: E731 - activations in (0, 1)
    active = np.array([1, 0, 1, 1, 0], dtype=np.uint8)[:B]
    yield "lstm_cell_forward", [f(B, 4 * H), f(B, 4 * H), f(4 * H), f(B, H), f(B, H), active, f(B, H), f(B, H)]
    acts = p(B, 4 * H)
    acts[:, 2 * H : 3 * H] = 2 * acts[:, 2 * H : 3 * H] - 1  # g = tanh in (-1, 1)
    yield "lstm_cell_backward", [acts, f(B, H), f(B, H), f(B, H), f(B, H), f(B, H), f(B, H), active, f(B, 4 * H), f(B, H)]
    yield "gru_cell_forward", [f(B, 3 * H), f(B, 3 * H), f(3 * H), f(H), f(B, H), active, f(B, H)]
    yield "gru_cell_backward", [p(B, 3 * H), f(B, 3 * H), f(B, H), f(B, H), f(B, H), f(B, H), active, f(B, 3 * H), f(B, 3 * H), f(B, H)]
    for relu in (False, True):
        yield "rnn_cell_forward", [f(B, H), f(B, H), f(H), f(B, H), active, f(B, H), relu]
        yield "rnn_cell_backward", [np.tanh(f(B, H)), f(B, H), f(B, H), f(B, H), active, f(B, H), f(B, H), relu]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(dtype):
    backend = get_backend("cpu")
    rng = np.random.default_rng(0)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for name, args in kernel_cases(dtype, rng):
        fused = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        plain = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        backend.kernel(name)(*fused)
        getattr(reference, name)(np, *plain)
        for i, (a, b) in enumerate(zip(fused, plain)):
            if isinstance(a, np.ndarray):
                assert a.dtype == dtype or a.dtype == np.uint8
                np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{name} argument {i}")


def test_float32_activations_accurate():
    """The float32 kernels use a rational tanh; it must be float32-accurate everywhere."""
    backend = get_backend("cpu")
    z = np.linspace(-30, 30, 20001).astype(np.float32)
    n = z.size
    gates = np.zeros((1, n), np.float32)
    hh = np.zeros((1, n), np.float32)
    h = np.empty((1, n), np.float32)
    backend.kernel("rnn_cell_forward")(gates, hh, z, np.zeros((1, n), np.float32), np.ones(1, np.uint8), h, False)
    np.testing.assert_allclose(h[0], np.tanh(z.astype(np.float64)), rtol=0, atol=5e-7)
    assert np.all(np.abs(h) <= 1)
    # sigmoid through the LSTM input gate: i * g with g = tanh(large) = 1, c_prev = 0
    H = n
    gates = np.zeros((1, 4 * H), np.float32)
    bias = np.concatenate([z, np.zeros(H), np.full(H, 30), np.zeros(H)]).astype(np.float32)
    c = np.empty((1, H), np.float32)
    backend.kernel("lstm_cell_forward")(gates, np.zeros_like(gates), bias, np.zeros((1, H), np.float32),
                                        np.zeros((1, H), np.float32), np.ones(1, np.uint8), np.empty((1, H), np.float32), c)
    np.testing.assert_allclose(c[0], 1 / (1 + np.exp(-z.astype(np.float64))), rtol=0, atol=5e-7)


# ----------------------------------------------------------------------------- grad_norms


def unrolled_torch_norms(kind, x_np, h0_np, c0_np, weights, g_out, g_h, lengths, reverse):
    """Per-step ||dL/dh_t|| from a torch cell loop with retained per-step state grads."""
    T, B, _ = x_np.shape
    w_ih, w_hh, b_ih, b_hh = (torch.tensor(w, requires_grad=True) for w in weights)
    x = torch.tensor(x_np)
    h = torch.tensor(h0_np)
    c = torch.tensor(c0_np)
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    states = [None] * T
    outs = [None] * T
    H = h.shape[1]
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        active = torch.tensor(t < lengths)[:, None]
        if kind == "lstm":
            gates = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, g, o = gates.split(H, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            c = torch.where(active, c_new, c)
        elif kind == "gru":
            gi = x[t] @ w_ih.T + b_ih
            gh = h @ w_hh.T + b_hh
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
            n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
            h_new = (1 - z) * n + z * h
        else:
            pre = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            h_new = torch.relu(pre) if kind == "rnn_relu" else torch.tanh(pre)
        h = torch.where(active, h_new, h)
        h.retain_grad()
        states[t] = h
        outs[t] = h * active
    loss = (torch.stack(outs) * torch.tensor(g_out)).sum() + (h * torch.tensor(g_h)).sum()
    loss.backward()
    return np.array([float(s.grad.norm()) for s in states])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lengths,reverse", [(None, False), (None, True), ([5, 2, 4, 1], False), ([3, 5, 1, 5], True)])
def test_grad_norms_match_unrolled_torch(kind, lengths, reverse):
    T, B, I, H = 5, 4, 3, 6
    x_np, h0_np, c0_np, weights = random_problem(kind, T, B, I, H, np.float64, seed=7)
    rng = np.random.default_rng(8)
    g_out = rng.standard_normal((T, B, H))
    g_h = rng.standard_normal((B, H))
    expected = unrolled_torch_norms(kind, x_np, h0_np, c0_np, weights, g_out, g_h, lengths, reverse)

    x, h0, c0, ws = as_tensors(x_np, h0_np, c0_np, weights)
    norms = []
    outs = run(kind, x, h0, c0, ws, lengths=None if lengths is None else np.array(lengths), reverse=reverse, grad_norms=norms)
    ((outs[0] * mg.tensor(g_out)).sum() + (outs[1] * mg.tensor(g_h)).sum()).backward()
    assert len(norms) == 1
    assert isinstance(norms[0], np.ndarray) and norms[0].shape == (T,)
    np.testing.assert_allclose(norms[0], expected, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- behaviour


def test_partial_requires_grad_and_no_grad():
    x_np, h0_np, c0_np, weights = random_problem("lstm", 4, 2, 3, 5, np.float64, seed=2)
    x = mg.tensor(x_np)  # a constant input
    h0 = mg.tensor(h0_np)
    c0 = mg.tensor(c0_np)
    ws = [mg.tensor(w, requires_grad=(i == 1)) for i, w in enumerate(weights)]  # only W_hh learns
    out, h_n, c_n = lstm_sequence(x, h0, c0, *ws)
    (out.sum() + h_n.sum() + c_n.sum()).backward()
    assert ws[1].grad is not None and ws[0].grad is None and x.grad is None
    with mg.no_grad():
        out2, _, _ = lstm_sequence(x, h0, c0, *ws)
    assert not out2.requires_grad
    np.testing.assert_array_equal(out.array, out2.array)


@pytest.mark.parametrize("kind", KINDS)
def test_retain_graph_backward_twice_and_workspace_reuse(kind):
    x_np, h0_np, c0_np, weights = random_problem(kind, 5, 3, 4, 6, np.float32, seed=4)
    x, h0, c0, ws = as_tensors(x_np, h0_np, c0_np, weights)
    outs = run(kind, x, h0, c0, ws)
    loss = sum(o.sum() for o in outs)
    loss.backward(retain_graph=True)
    first = [w.grad.numpy().copy() for w in ws]
    for _ in range(3):  # other calls reuse the workspace meanwhile
        run(kind, *as_tensors(x_np * 2, h0_np, c0_np, weights)[:3], as_tensors(x_np, h0_np, c0_np, weights)[3])
    loss.backward()
    for w, g in zip(ws, first):
        np.testing.assert_allclose(w.grad.numpy(), 2 * g, rtol=1e-5, atol=1e-6)
    assert _WORKSPACE.nbytes <= _WORKSPACE.limit_bytes


def test_outputs_are_zero_at_padding_and_h_n_is_state_at_own_end():
    x_np, h0_np, c0_np, weights = random_problem("gru", 5, 3, 2, 4, np.float64, seed=9)
    x, h0, _, ws = as_tensors(x_np, h0_np, c0_np, weights)
    lengths = np.array([5, 2, 3])
    out, h_n = gru_sequence(x, h0, *ws, lengths=lengths)
    for b, n in enumerate(lengths):
        assert np.all(out.array[n:, b] == 0)
        np.testing.assert_array_equal(h_n.array[b], out.array[n - 1, b])
    out_r, h_n_r = gru_sequence(x, h0, *ws, lengths=lengths, reverse=True)
    for b, n in enumerate(lengths):
        assert np.all(out_r.array[n:, b] == 0)
        np.testing.assert_array_equal(h_n_r.array[b], out_r.array[0, b])
        # each reversed sequence equals the forward run over its own reversed steps
        xb = mg.tensor(x_np[:n, b : b + 1][::-1].copy())
        ref, _ = gru_sequence(xb, mg.tensor(h0_np[b : b + 1]), *[mg.tensor(w) for w in weights])
        np.testing.assert_allclose(out_r.array[:n, b], ref.array[::-1, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state_broadcast_over_batch(kind):
    """h0 / c0 of shape (1, H) or (H,) (a learned initial state) act as (B, H)."""
    x_np, h0_np, c0_np, weights = random_problem(kind, 3, 4, 2, 3, np.float64, seed=13)
    x, _, _, ws = as_tensors(x_np, h0_np, c0_np, weights, requires_grad=False)
    h0 = mg.tensor(h0_np[:1].copy(), requires_grad=True)  # (1, H)
    c0 = mg.tensor(c0_np[0].copy(), requires_grad=True)  # (H,)
    inputs = [h0, c0] if kind == "lstm" else [h0]
    assert mg.gradcheck(lambda *s: run(kind, x, s[0], s[-1], ws), *inputs, atol=1e-6, rtol=1e-4)
    full = run(kind, x, mg.tensor(np.repeat(h0_np[:1], 4, 0)), mg.tensor(np.repeat(c0_np[:1], 4, 0)), ws)
    np.testing.assert_allclose(run(kind, x, h0, c0, ws)[0].array, full[0].array, rtol=1e-12)


def test_workspace_recycles_aligned_arrays_within_its_budget():
    from microgradnn.ops.recurrent import _Workspace

    ws = _Workspace(limit_bytes=1000, per_key=2)
    a, b = ws.take((10,), np.float32), ws.take((10,), np.float32)
    assert not np.shares_memory(a, b)
    assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous
    ws.give(a)
    assert ws.take((10,), np.float32) is a  # reused, and no longer in the pool
    assert ws.take((10,), np.float32) is not a
    ws.give(np.empty(200, np.float32))  # 800 bytes
    ws.give(np.empty(100, np.float32))  # 400 more: the least recently used goes
    assert ws.nbytes <= 1000 and ws.take((200,), np.float32).nbytes == 800
    ws.give(np.empty(1000, np.float32))  # larger than the whole budget: dropped
    assert ws.nbytes <= 1000


def test_errors_are_clear():
    x_np, h0_np, c0_np, weights = random_problem("lstm", 4, 2, 3, 5, np.float64, seed=2)
    x, h0, c0, ws = as_tensors(x_np, h0_np, c0_np, weights)
    with pytest.raises(ValueError, match="length"):
        lstm_sequence(x, h0, c0, *ws, lengths=np.array([5, 1]))
    with pytest.raises(ValueError, match="length"):
        lstm_sequence(x, h0, c0, *ws, lengths=np.array([0, 1]))
    with pytest.raises(ValueError, match="h0"):
        lstm_sequence(x, mg.tensor(h0_np[:, :4]), c0, *ws)
    with pytest.raises(ValueError, match="weight_"):
        gru_sequence(x, h0, *ws)  # LSTM-sized weights for a GRU
    with pytest.raises(TypeError, match="dtype"):
        lstm_sequence(x.float(), h0, c0, *ws)
    with pytest.raises(ValueError, match="nonlinearity"):
        rnn_sequence(x, h0, mg.tensor(weights[0][:5]), mg.tensor(weights[1][:5]), nonlinearity="sigmoid")


# ----------------------------------------------------------------------------- device-agnostic


class _ArrayModule:
    """numpy under another name: ops that special-case ``xp is numpy`` take their generic
    (CuPy) path, and the kernels are the plain-xp reference twins, as on a GPU backend."""

    def __getattr__(self, name):
        return getattr(np, name)


def reference_backend():
    from microgradnn.backend import Backend

    xp = _ArrayModule()
    return Backend("reference", xp, lambda name: (lambda *args: getattr(reference, name)(xp, *args)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lengths,reverse", [(None, False), ([5, 2, 4], True), ([1, 5, 3], False)])
def test_generic_path_with_reference_kernels_matches_fused(kind, lengths, reverse):
    x_np, h0_np, c0_np, weights = random_problem(kind, 5, 3, 4, 6, np.float64, seed=11)
    rng = np.random.default_rng(12)
    g_out = rng.standard_normal((5, 3, 6))
    lengths = None if lengths is None else np.array(lengths)
    results = []
    for backend in (get_backend("cpu"), reference_backend()):
        make = lambda a: mg.Tensor(a.copy(), backend, requires_grad=True)  # noqa: E731
        x, h0, c0, ws = make(x_np), make(h0_np), make(c0_np), [make(w) for w in weights]
        norms = []
        outs = run(kind, x, h0, c0, ws, lengths=lengths, reverse=reverse, grad_norms=norms)
        total = (outs[0] * mg.Tensor(g_out, backend)).sum()
        for o in outs[1:]:
            total = total + (o * o).sum()
        total.backward()
        results.append([o.array for o in outs] + [t.grad.array for t in [x, h0] + ws] + norms
                       + ([c0.grad.array] if kind == "lstm" else []))
    for fused, plain in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-12, atol=1e-12)


def _projected_problem(T, B, I, H, P, seed):
    rng = np.random.default_rng(seed)
    shapes = [(T, B, I), (B, P), (B, H), (4 * H, I), (4 * H, P), (4 * H,), (4 * H,), (P, H)]
    return [rng.uniform(0.2, 0.9, s) * rng.choice([-1, 1], s) for s in shapes]


@pytest.mark.parametrize("lengths,reverse", [(None, False), ([5, 2, 4], True), ([1, 5, 3], False)])
def test_projected_lstm_with_reference_kernels_matches_fused(lengths, reverse):
    # the per-step loop as a GPU backend runs it (xp not numpy, the plain-xp kernels, no
    # drivers, xp.copyto for the padded rows) against the compiled drivers
    arrays = _projected_problem(5, 3, 4, 6, 2, seed=13)
    g_out = np.random.default_rng(14).standard_normal((5, 3, 2))
    lengths = None if lengths is None else np.array(lengths)
    results = []
    for backend in (get_backend("cpu"), reference_backend()):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = tensors = [mg.Tensor(a.copy(), backend, requires_grad=True)
                                                             for a in arrays]
        norms = []
        out, h, c = lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse,
                                  grad_norms=norms, w_hr=w_hr)
        ((out * mg.Tensor(g_out, backend)).sum() + (h * h).sum() + (c * c).sum()).backward()
        results.append([out.array, h.array, c.array] + [t.grad.array for t in tensors] + norms)
    assert len(results[0]) == len(results[1]) == 12
    for fused, plain in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-12, atol=1e-12)


def test_projected_lstm_errors_are_clear():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = [mg.tensor(a) for a in _projected_problem(4, 2, 3, 5, 2, seed=3)]
    with pytest.raises(ValueError, match="weight_hr"):
        lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=mg.tensor(np.ones((2, 4))))
    with pytest.raises(ValueError, match="h0"):  # the state is P wide with a projection
        lstm_sequence(x, c0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=w_hr)
    with pytest.raises(ValueError, match="weight_hr"):  # W_hh (4H, H) where (4H, P) was due
        lstm_sequence(x, h0, c0, w_ih, mg.tensor(np.ones((20, 5))), b_ih, b_hh, w_hr=w_hr)
    with pytest.raises(TypeError, match="weight_hr"):
        lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=w_hr.float())


def _property_test(fn):
    return hypothesis.settings(max_examples=25, deadline=None)(hypothesis.given(
        kind=st.sampled_from(KINDS),
        T=st.integers(1, 6),
        B=st.integers(1, 4),
        I=st.integers(1, 5),
        H=st.integers(1, 18),
        reverse=st.booleans(),
        bias=st.booleans(),
        data=st.data(),
    )(fn))


@_property_test
def test_property_fused_equals_reference_path(kind, T, B, I, H, reverse, bias, data):
    use_lengths = data.draw(st.booleans())
    lengths = np.array(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B))) if use_lengths else None
    x_np, h0_np, c0_np, weights = random_problem(kind, T, B, I, H, np.float32, seed=T * 100 + B * 10 + H, bias=bias)
    results = []
    for backend in (get_backend("cpu"), reference_backend()):
        make = lambda a: None if a is None else mg.Tensor(a.copy(), backend, requires_grad=True)  # noqa: E731
        x, h0, c0, ws = make(x_np), make(h0_np), make(c0_np), [make(w) for w in weights]
        outs = run(kind, x, h0, c0, ws, lengths=lengths, reverse=reverse)
        sum((o * o).sum() for o in outs).backward()
        results.append([o.array for o in outs] + [t.grad.array for t in [x, h0] + [w for w in ws if w is not None]])
    for fused, plain in zip(*results):
        assert fused.dtype == np.float32
        np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=2e-5)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(T=st.integers(1, 6), B=st.integers(1, 4), I=st.integers(1, 5), H=st.integers(2, 12),
                  reverse=st.booleans(), bias=st.booleans(), data=st.data())
def test_property_projected_lstm_fused_equals_reference_path(T, B, I, H, reverse, bias, data):
    P = data.draw(st.integers(1, H - 1))
    use_lengths = data.draw(st.booleans())
    lengths = np.array(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B))) if use_lengths else None
    arrays = _projected_problem(T, B, I, H, P, seed=T * 1000 + B * 100 + H * 10 + P)
    if not bias:
        arrays[5] = arrays[6] = None
    results = []
    for backend in (get_backend("cpu"), reference_backend()):
        tensors = [None if a is None else mg.Tensor(a.copy(), backend, requires_grad=True) for a in arrays]
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = tensors
        outs = lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, w_hr=w_hr)
        sum((o * o).sum() for o in outs).backward()
        results.append([o.array for o in outs] + [t.grad.array for t in tensors if t is not None])
    assert results[0][0].shape == (T, B, P)
    for fused, plain in zip(*results):
        np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- GPU (when present)

needs_cuda = pytest.mark.skipif(not mg.cuda_is_available(), reason="no CUDA device (CuPy + GPU)")


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_kernels_match_reference(dtype):
    import cupy

    from microgradnn.backend import kernels_cuda_recurrent as cuda_kernels

    rng = np.random.default_rng(0)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for name, args in kernel_cases(dtype, rng):
        on_gpu = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        plain = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        getattr(cuda_kernels, name)(*on_gpu)
        getattr(reference, name)(np, *plain)
        for i, (a, b) in enumerate(zip(on_gpu, plain)):
            if isinstance(b, np.ndarray):
                np.testing.assert_allclose(a.get(), b, rtol=tol, atol=tol, err_msg=f"{name} argument {i}")


@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_sequence_matches_cpu(kind):
    cuda = get_backend("cuda")
    try:
        cuda.kernel(f"{kind.split('_')[0]}_cell_forward")
    except KeyError:
        pytest.skip("kernels_cuda.py does not export the recurrent kernels yet")
    x_np, h0_np, c0_np, weights = random_problem(kind, 5, 3, 4, 6, np.float64, seed=21)
    lengths = np.array([5, 2, 4])
    results = []
    for backend in (get_backend("cpu"), cuda):
        make = lambda a: mg.Tensor(backend.xp.asarray(a), backend, requires_grad=True)  # noqa: E731
        x, h0, c0, ws = make(x_np), make(h0_np), make(c0_np), [make(w) for w in weights]
        norms = []
        outs = run(kind, x, h0, c0, ws, lengths=lengths, reverse=True, grad_norms=norms)
        sum((o * o).sum() for o in outs).backward()
        host = lambda a: a if isinstance(a, np.ndarray) else a.get()  # noqa: E731
        results.append([host(o.array) for o in outs] + [host(t.grad.array) for t in [x, h0] + ws] + norms)
    for on_cpu, on_gpu in zip(*results):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-10, atol=1e-10)


@needs_cuda
def test_cuda_projected_lstm_matches_cpu():
    # the projected LSTM on the GPU runs the per-step loop of ops/recurrent.py (plain xp + the cell kernels)
    rng = np.random.default_rng(22)
    T, B, I, H, P = 5, 3, 4, 6, 3
    arrays = [rng.uniform(-0.8, 0.8, s) for s in [(T, B, I), (B, P), (B, H), (4 * H, I), (4 * H, P), (4 * H,), (4 * H,),
                                                   (P, H)]]
    results = []
    for backend in (get_backend("cpu"), get_backend("cuda")):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = tensors = [
            mg.Tensor(backend.xp.asarray(a), backend, requires_grad=True) for a in arrays]
        norms = []
        outs = lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=np.array([5, 2, 4]), reverse=True,
                             grad_norms=norms, w_hr=w_hr)
        sum((o * o).sum() for o in outs).backward()
        host = lambda a: a if isinstance(a, np.ndarray) else a.get()  # noqa: E731
        results.append([host(o.array) for o in outs] + [host(t.grad.array) for t in tensors] + norms)
    for on_cpu, on_gpu in zip(*results):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-10, atol=1e-10)
