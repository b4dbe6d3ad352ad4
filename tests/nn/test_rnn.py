"""Recurrent cells and sequence layers against PyTorch, fused vs generic, plugin cells.

Weights go from a torch module into ours through ``load_state_dict(torch.state_dict())``,
which also proves that parameter names, shapes, gate layouts and registration order match.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import microgradnn as mg
from microgradnn import nn

F64 = dict(rtol=1e-5, atol=1e-5)
F32 = dict(rtol=1e-4, atol=1e-5)

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _classes(kind):
    if kind == "rnn_tanh":
        return torch.nn.RNN, nn.RNN, {"nonlinearity": "tanh"}
    if kind == "rnn_relu":
        return torch.nn.RNN, nn.RNN, {"nonlinearity": "relu"}
    if kind == "lstm":
        return torch.nn.LSTM, nn.LSTM, {}
    return torch.nn.GRU, nn.GRU, {}


def make_pair(kind, input_size, hidden_size, dtype=np.float64, seed=0, **kwargs):
    tcls, mcls, extra = _classes(kind)
    torch.manual_seed(seed)
    t = tcls(input_size, hidden_size, **extra, **kwargs)
    t = t.double() if dtype == np.float64 else t.float()
    m = mcls(input_size, hidden_size, **extra, **kwargs)
    m.to(dtype=dtype)
    assert list(m.state_dict()) == list(t.state_dict())
    m.load_state_dict(t.state_dict())
    return t, m


def _t(a, grad=True):
    return torch.tensor(a, requires_grad=grad)


def _m(a, grad=True):
    return mg.tensor(a, requires_grad=grad)


def _states(h_n):
    return list(h_n) if isinstance(h_n, tuple) else [h_n]


def run_both(t, m, x, hx=None, lengths=None, batch_first=False, fused=True, seed=1):
    """Forward + backward of the same weighted-sum loss on both; returns dicts of arrays."""
    rng = np.random.default_rng(seed)
    tx, mx = _t(x), _m(x)
    thx = mhx = None
    if hx is not None:
        thx = tuple(_t(h) for h in hx) if isinstance(hx, tuple) else _t(hx)
        mhx = tuple(_m(h) for h in hx) if isinstance(hx, tuple) else _m(hx)
    if lengths is None:
        tout, th = t(tx, thx)
    else:
        packed = pack_padded_sequence(tx, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        tout, th = t(packed, thx)
        total = x.shape[1] if batch_first else x.shape[0]
        tout, _ = pad_packed_sequence(tout, batch_first=batch_first, total_length=total)
    m.fused = fused
    mout, mh = m(mx, mhx, lengths=lengths)
    tstates, mstates = _states(th), _states(mh)
    assert tuple(mout.shape) == tuple(tout.shape)
    w_out = rng.standard_normal(tout.shape)
    w_states = [rng.standard_normal(s.shape) for s in tstates]
    tl = (tout * torch.tensor(w_out, dtype=tout.dtype)).sum() + sum(
        (s * torch.tensor(w, dtype=s.dtype)).sum() for s, w in zip(tstates, w_states))
    ml = (mout * mg.tensor(w_out.astype(mout.dtype))).sum()
    for s, w in zip(mstates, w_states):
        ml = ml + (s * mg.tensor(w.astype(s.dtype))).sum()
    tl.backward()
    ml.backward()
    res_t = {"out": tout.detach().numpy(), "x.grad": tx.grad.numpy()}
    res_m = {"out": mout.detach().numpy(), "x.grad": mx.grad.numpy()}
    for i, (a, b) in enumerate(zip(tstates, mstates)):
        res_t[f"state{i}"], res_m[f"state{i}"] = a.detach().numpy(), b.detach().numpy()
    if hx is not None:
        for i, (a, b) in enumerate(zip(_states(thx), _states(mhx))):
            res_t[f"hx{i}.grad"], res_m[f"hx{i}.grad"] = a.grad.numpy(), b.grad.numpy()
    mparams = dict(m.named_parameters())
    for name, p in t.named_parameters():
        res_t[name + ".grad"] = p.grad.numpy()
        res_m[name + ".grad"] = mparams[name].grad.numpy()
    return res_t, res_m


def assert_same(res_t, res_m, tol=F64):
    assert set(res_t) == set(res_m)
    for key in res_t:
        np.testing.assert_allclose(res_m[key], res_t[key], err_msg=key, **tol)


def _hx(kind, num_layers, dirs, batch, hidden, rng, proj=0):
    h = rng.standard_normal((num_layers * dirs, batch, proj or hidden))
    if kind == "lstm":
        return (h, rng.standard_normal((num_layers * dirs, batch, hidden)))
    return h


# --------------------------------------------------------------------------- layers vs torch


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_matches_torch(kind, num_layers, bidirectional, fused):
    t, m = make_pair(kind, 4, 6, num_layers=num_layers, bidirectional=bidirectional)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    assert_same(*run_both(t, m, x, fused=fused))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_layer_options_match_torch(kind, bias, with_hx, batch_first, fused):
    rng = np.random.default_rng(2)
    t, m = make_pair(kind, 3, 5, num_layers=2, bidirectional=True, bias=bias, batch_first=batch_first)
    x = rng.standard_normal((4, 6, 3))  # (B, T, I) if batch_first else (T, B, I)
    batch = x.shape[0] if batch_first else x.shape[1]
    hx = _hx(kind, 2, 2, batch, 5, rng) if with_hx else None
    assert_same(*run_both(t, m, x, hx=hx, batch_first=batch_first, fused=fused))


@pytest.mark.parametrize("kind", KINDS)
def test_float32_matches_torch(kind):
    rng = np.random.default_rng(3)
    t, m = make_pair(kind, 4, 8, dtype=np.float32, num_layers=2, bidirectional=True)
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    res_t, res_m = run_both(t, m, x)
    assert res_m["out"].dtype == np.float32
    assert_same(res_t, res_m, tol=F32)
    m.fused = False
    assert_same(*run_both(t, m, x, fused=False), tol=F32)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")  # torch: oneDNN lacks it
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_proj_size_matches_torch(num_layers, bidirectional, with_hx, fused):
    rng = np.random.default_rng(4)
    t, m = make_pair("lstm", 3, 6, num_layers=num_layers, bidirectional=bidirectional, proj_size=2)
    assert m.uses_fused_path(fused) == fused  # the projection runs fused too
    dirs = 2 if bidirectional else 1
    hx = _hx("lstm", num_layers, dirs, 2, 6, rng, proj=2) if with_hx else None
    x = rng.standard_normal((5, 2, 3))
    res_t, res_m = run_both(t, m, x, hx=hx, fused=fused)
    assert res_m["out"].shape == (5, 2, 2 * dirs)
    assert res_m["state0"].shape == (num_layers * dirs, 2, 2)
    assert res_m["state1"].shape == (num_layers * dirs, 2, 6)
    assert {"weight_hr_l0.grad", f"weight_hr_l{num_layers - 1}.grad"} <= set(res_m)
    assert_same(res_t, res_m)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")  # torch: oneDNN lacks it
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
def test_lstm_proj_size_float32_fused_matches_torch(with_hx):
    rng = np.random.default_rng(14)
    t, m = make_pair("lstm", 4, 9, dtype=np.float32, num_layers=2, bidirectional=True, proj_size=5)
    hx = _hx("lstm", 2, 2, 3, 9, rng, proj=5) if with_hx else None
    hx = tuple(h.astype(np.float32) for h in hx) if with_hx else None
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    res_t, res_m = run_both(t, m, x, hx=hx, fused=True)
    assert res_m["out"].dtype == np.float32 and res_m["out"].shape == (7, 3, 10)
    assert_same(res_t, res_m, tol=F32)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input_matches_torch(kind, with_hx, fused):
    rng = np.random.default_rng(5)
    t, m = make_pair(kind, 3, 4, num_layers=2, bidirectional=True, batch_first=True)  # ignored when unbatched
    x = rng.standard_normal((6, 3))
    hx = None
    if with_hx:
        hx = _hx(kind, 2, 2, 1, 4, rng)
        hx = tuple(h[:, 0] for h in hx) if isinstance(hx, tuple) else hx[:, 0]
    res_t, res_m = run_both(t, m, x, hx=hx, fused=fused)
    assert res_m["out"].shape == (6, 8)
    assert res_m["state0"].shape == (4, 4)
    assert_same(res_t, res_m)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("kind", KINDS)
def test_variable_lengths_match_packed_sequences(kind, batch_first, fused):
    rng = np.random.default_rng(6)
    t, m = make_pair(kind, 3, 5, num_layers=2, bidirectional=True, batch_first=batch_first)
    T, B = 7, 4
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    lengths = [4, 7, 1, 5]  # unsorted, max == T
    hx = _hx(kind, 2, 2, B, 5, rng)
    res_t, res_m = run_both(t, m, x, hx=hx, lengths=lengths, batch_first=batch_first, fused=fused)
    assert_same(res_t, res_m)
    out = res_m["out"] if batch_first else res_m["out"].transpose(1, 0, 2)
    assert np.all(out[2, 1:] == 0) and np.all(out[0, 4:] == 0)  # padded steps output 0


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")  # torch: oneDNN lacks it
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
def test_variable_lengths_lstm_proj_matches_packed(with_hx, fused):
    rng = np.random.default_rng(7)
    t, m = make_pair("lstm", 3, 5, num_layers=2, bidirectional=True, proj_size=3)
    x = rng.standard_normal((6, 3, 3))
    hx = _hx("lstm", 2, 2, 3, 5, rng, proj=3) if with_hx else None
    res_t, res_m = run_both(t, m, x, hx=hx, lengths=np.array([6, 2, 4]), fused=fused)
    assert_same(res_t, res_m)
    assert np.all(res_m["out"][2:, 1] == 0) and np.all(res_m["out"][4:, 2] == 0)  # padded steps output 0


def test_lstm_proj_runs_as_one_fused_node():
    # the projection does not send the layer back to the unrolled graph
    m = nn.LSTM(3, 6, proj_size=2)
    out, (h, c) = m(mg.randn(5, 2, 3, requires_grad=True))
    assert type(out.grad_fn).__name__ == "LSTMSequence" and h.shape == (1, 2, 2) and c.shape == (1, 2, 6)
    m.fused = False
    out, _ = m(mg.randn(5, 2, 3, requires_grad=True))
    assert type(out.grad_fn).__name__ != "LSTMSequence"


def test_lengths_as_tensor_and_validation():
    m = nn.GRU(2, 3)
    x = mg.randn(4, 2, 2)
    a, ha = m(x, lengths=mg.tensor([3, 4]))
    b, hb = m(x, lengths=[3, 4])
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=[5, 1])
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=[1, 2, 3])


def test_state_dict_keys_match_torch_everywhere():
    cases = [
        ("rnn_tanh", dict(num_layers=3, bidirectional=True, bias=False)),
        ("lstm", dict(num_layers=2, bidirectional=True, proj_size=2)),
        ("lstm", dict(num_layers=2, proj_size=2, bias=False)),
        ("gru", dict(num_layers=2, bidirectional=True)),
    ]
    for kind, kw in cases:
        tcls, mcls, extra = _classes(kind)
        t, m = tcls(3, 4, **extra, **kw), mcls(3, 4, **extra, **kw)
        assert list(m.state_dict()) == list(t.state_dict())
        for (tn, tp), (mn, mp) in zip(t.named_parameters(), m.named_parameters()):
            assert tn == mn and tuple(tp.shape) == mp.shape
        assert len(m.all_weights) == len(t.all_weights)


def test_init_is_pytorch_uniform():
    mg.manual_seed(0)
    m = nn.LSTM(10, 25, num_layers=2, proj_size=5)
    bound = 1 / np.sqrt(25)
    values = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert np.all(np.abs(values) <= bound)
    assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)  # std of U(-b, b)
    cell = nn.GRUCell(7, 16)
    assert np.all(np.abs(cell.weight_ih.detach().numpy()) <= 0.25)


def test_repr_and_validation():
    assert repr(nn.LSTM(3, 5, num_layers=2, batch_first=True)) == repr(torch.nn.LSTM(3, 5, num_layers=2, batch_first=True))
    assert repr(nn.GRU(3, 5, bias=False, bidirectional=True)) == repr(torch.nn.GRU(3, 5, bias=False, bidirectional=True))
    assert repr(nn.RNNCell(3, 5, nonlinearity="relu")) == repr(torch.nn.RNNCell(3, 5, nonlinearity="relu"))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 5, nonlinearity="gelu")
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(3, 5, proj_size=5)
    with pytest.raises(ValueError, match="proj_size"):
        nn.GRU(3, 5, proj_size=2)
    with pytest.raises(ValueError, match="input_size"):
        nn.LSTM(3, 5)(mg.randn(4, 2, 7))
    with pytest.raises(ValueError, match="hx"):
        nn.GRU(3, 5)(mg.randn(4, 2, 3), mg.zeros(1, 3, 5))
    with pytest.raises(TypeError, match="type"):
        nn.GRU(3, 5)(mg.randn(4, 2, 3).double())
    with pytest.warns(UserWarning, match="dropout"):
        nn.GRU(3, 5, dropout=0.5)


# --------------------------------------------------------------------------- cells vs torch


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cells_match_torch(kind, bias):
    rng = np.random.default_rng(8)
    if kind.startswith("rnn"):
        nl = kind.split("_")[1]
        tc, mc = torch.nn.RNNCell(3, 4, bias=bias, nonlinearity=nl), nn.RNNCell(3, 4, bias=bias, nonlinearity=nl)
    elif kind == "lstm":
        tc, mc = torch.nn.LSTMCell(3, 4, bias=bias), nn.LSTMCell(3, 4, bias=bias)
    else:
        tc, mc = torch.nn.GRUCell(3, 4, bias=bias), nn.GRUCell(3, 4, bias=bias)
    tc.double()
    mc.double()
    assert list(mc.state_dict()) == list(tc.state_dict())
    mc.load_state_dict(tc.state_dict())
    for batched in (True, False):
        shape = (5, 3) if batched else (3,)
        hshape = (5, 4) if batched else (4,)
        x = rng.standard_normal(shape)
        for with_h in (False, True):
            hx = None
            if with_h:
                hx = (rng.standard_normal(hshape), rng.standard_normal(hshape)) if kind == "lstm" else rng.standard_normal(hshape)
            tx, mx = _t(x), _m(x)
            thx = None if hx is None else (tuple(_t(h) for h in hx) if kind == "lstm" else _t(hx))
            mhx = None if hx is None else (tuple(_m(h) for h in hx) if kind == "lstm" else _m(hx))
            tc.zero_grad()
            mc.zero_grad()
            tout, mout = _states(tc(tx, thx)), _states(mc(mx, mhx))
            ws = [rng.standard_normal(o.shape) for o in tout]
            sum((o * torch.tensor(w)).sum() for o, w in zip(tout, ws)).backward()
            loss = None
            for o, w in zip(mout, ws):
                term = (o * mg.tensor(w)).sum()
                loss = term if loss is None else loss + term
            loss.backward()
            for a, b in zip(tout, mout):
                np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), **F64)
            np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), **F64)
            for (name, tp), (_, mp) in zip(tc.named_parameters(), mc.named_parameters()):
                np.testing.assert_allclose(mp.grad.numpy(), tp.grad.numpy(), err_msg=name, **F64)


def test_cell_step_convention_and_init_state():
    cell = nn.LSTMCell(3, 4)
    state = cell.init_state(2)
    assert [s.shape for s in state] == [(2, 4), (2, 4)]
    x = mg.randn(2, 3)
    h, (h2, c) = cell.step(x, state)
    assert h is h2
    fh, fc = cell(x)
    np.testing.assert_array_equal(fh.detach().numpy(), h.detach().numpy())
    np.testing.assert_array_equal(fc.detach().numpy(), c.detach().numpy())
    assert nn.GRUCell(3, 4).state_size == 4 and cell.state_size == (4, 4)


# --------------------------------------------------------------------------- fused vs generic


@pytest.mark.parametrize("kind,proj", [(k, 0) for k in KINDS] + [("lstm", 3)], ids=KINDS + ["lstm_proj"])
def test_fused_equals_generic_with_lengths_and_grad_norms(kind, proj):
    rng = np.random.default_rng(9)
    extra = {"proj_size": proj} if proj else {}
    _, m = make_pair(kind, 3, 5, num_layers=2, bidirectional=True, batch_first=True, **extra)
    m.track_grad_norms = True
    x = rng.standard_normal((4, 8, 3))
    w = rng.standard_normal((4, 8, 2 * (proj or 5)))
    results = {}
    for fused in (True, False):
        assert m.uses_fused_path(fused) == fused
        m.zero_grad()
        m.fused = fused
        xt = _m(x)
        out, h = m(xt, lengths=[8, 3, 5, 1])
        loss = (out * mg.tensor(w)).sum()
        for s in _states(h):
            loss = loss + s.sum()
        loss.backward()
        results[fused] = (out.detach().numpy(), [s.detach().numpy() for s in _states(h)], xt.grad.numpy(),
                          {n: p.grad.numpy() for n, p in m.named_parameters()}, m.last_grad_norms)
    a, b = results[True], results[False]
    np.testing.assert_allclose(a[0], b[0], **F64)
    for s1, s2 in zip(a[1], b[1]):
        np.testing.assert_allclose(s1, s2, **F64)
    np.testing.assert_allclose(a[2], b[2], **F64)
    for name in a[3]:
        np.testing.assert_allclose(a[3][name], b[3][name], err_msg=name, **F64)
    assert a[4].shape == b[4].shape == (4, 8)
    np.testing.assert_allclose(a[4], b[4], **F64)
    assert np.all(a[4] > 0)


def test_recurrent_with_builtin_cell_equals_lstm():
    """The generic Recurrent over LSTMCell computes exactly the LSTM layer."""
    rng = np.random.default_rng(10)
    _, lstm = make_pair("lstm", 3, 4, num_layers=2, bidirectional=True)
    rec = nn.Recurrent(nn.LSTMCell, 3, 4, num_layers=2, bidirectional=True)
    rec.double()
    sd = lstm.state_dict()
    mapping = {}
    for name in rec.state_dict():
        cell, kind = name.split(".")
        layer = cell[len("cell_"):]  # l0 or l0_reverse
        mapping[name] = sd[f"{kind}_{layer}"]
    rec.load_state_dict(mapping)
    x = rng.standard_normal((6, 2, 3))
    o1, (h1, c1) = lstm(_m(x, False), lengths=[6, 3])
    o2, (h2, c2) = rec(_m(x, False), lengths=[6, 3])
    for a, b in ((o1, o2), (h1, h2), (c1, c2)):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), **F64)


# --------------------------------------------------------------------------- plugin cells


class MinimalGatedUnit(nn.Module):
    """A user's cell (Zhou et al. 2016's minimal gated unit), written in the test:
    f = sigmoid(W_f [x, h] + b_f); n = tanh(W_n [x, f * h] + b_n); h' = (1 - f) h + f n."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        k = 1 / np.sqrt(hidden_size)
        rng = np.random.default_rng(input_size * 100 + hidden_size)
        self.w_f = nn.Parameter(mg.tensor(rng.uniform(-k, k, (hidden_size, input_size + hidden_size))))
        self.b_f = nn.Parameter(mg.tensor(rng.uniform(-k, k, (hidden_size,))))
        self.w_n = nn.Parameter(mg.tensor(rng.uniform(-k, k, (hidden_size, input_size + hidden_size))))
        self.b_n = nn.Parameter(mg.tensor(rng.uniform(-k, k, (hidden_size,))))

    def forward(self, x, h):  # the runner convention: (h_t, new_state)
        f = mg.linear(mg.cat([x, h], 1), self.w_f, self.b_f).sigmoid()
        n = mg.linear(mg.cat([x, f * h], 1), self.w_n, self.b_n).tanh()
        h = h + f * (n - h)
        return h, h


class TwoStateCell(nn.Module):
    """A cell with a tuple state and an explicit step/init_state (like an LSTM)."""

    def __init__(self, input_size, hidden_size, bias=True, scale=0.5):
        super().__init__()
        self.hidden_size, self.scale = hidden_size, scale
        self.inner = nn.GRUCell(input_size, hidden_size, bias=bias)

    def init_state(self, batch, device=None, dtype=None):
        z = mg.zeros(batch, self.hidden_size, dtype=dtype or self.inner.weight_ih.dtype)
        return (z, z)

    def step(self, x, state):
        h, m = state
        h = self.inner(x, h)
        m = self.scale * m + h
        return h + m, (h, m)


def test_custom_cell_multilayer_bidirectional_lengths_gradcheck():
    mg.manual_seed(0)
    rec = nn.Recurrent(MinimalGatedUnit, 2, 3, num_layers=2, bidirectional=True, batch_first=True)
    assert "cell_l1_reverse.w_f" in rec.state_dict()
    x = mg.tensor(np.random.default_rng(11).standard_normal((3, 4, 2)), requires_grad=True)
    h0 = mg.tensor(np.random.default_rng(12).standard_normal((4, 3, 3)), requires_grad=True)
    lengths = [4, 2, 3]
    out, h_n = rec(x, h0, lengths=lengths)
    assert out.shape == (3, 4, 6) and h_n.shape == (4, 3, 3)
    assert np.all(out.detach().numpy()[1, 2:] == 0)
    params = list(rec.parameters())
    n_params = len(params)

    def fn(x, h0, *ps):
        return rec(x, h0, lengths=lengths)

    assert mg.gradcheck(fn, x, h0, *params[:4])  # layer 0 cell weights
    assert mg.gradcheck(fn, x, h0, *params[n_params - 4:])  # the top reverse cell
    # the final state of a sequence is taken at its own end: running sequence 1 alone,
    # truncated to its length, gives the same final state
    out1, h1 = rec(x[1:2, :2], h0[:, 1:2])
    np.testing.assert_allclose(h1.detach().numpy(), h_n.detach().numpy()[:, 1:2], **F64)


def test_custom_tuple_state_cell_and_learned_state():
    rec = nn.Recurrent(TwoStateCell, 3, 4, num_layers=2, bidirectional=True, init_state="learned", scale=0.25)
    rec.double()
    assert rec.cell_l0.scale == 0.25
    names = [n for n, _ in rec.named_parameters()]
    assert "h0" in names and "c0" in names
    assert rec.h0.shape == (4, 1, 4)
    x = mg.tensor(np.random.default_rng(13).standard_normal((5, 2, 3)))
    out, (h_n, m_n) = rec(x, lengths=[5, 2])
    assert out.shape == (5, 2, 8) and h_n.shape == m_n.shape == (4, 2, 4)
    (out.sum() + m_n.sum()).backward()
    assert np.abs(rec.h0.grad.numpy()).sum() > 0 and np.abs(rec.c0.grad.numpy()).sum() > 0
    with pytest.raises(TypeError, match="bias"):
        nn.Recurrent(MinimalGatedUnit, 3, 4, bias=False)


def test_recurrent_builtin_by_name():
    rec = nn.Recurrent("gru", 3, 4, num_layers=2)
    out, h = rec(mg.randn(5, 2, 3))
    assert out.shape == (5, 2, 4) and h.shape == (2, 2, 4)


# --------------------------------------------------------------------------- learned initial state


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_learned_initial_state_gets_gradients(kind, fused):
    _, mcls, extra = _classes(kind)
    m = mcls(3, 4, num_layers=2, bidirectional=True, init_state="learned", fused=fused, **extra)
    torch_keys = list(_classes(kind)[0](3, 4, num_layers=2, bidirectional=True, **extra).state_dict())
    keys = list(m.state_dict())
    expected_extra = ["h0", "c0"] if kind == "lstm" else ["h0"]
    assert keys == torch_keys + expected_extra
    assert list(mcls(3, 4, num_layers=2, bidirectional=True, **extra).state_dict()) == torch_keys
    assert m.h0.shape == (4, 1, 4)
    out, h = m(mg.randn(6, 3, 3))
    (out.sum() + _states(h)[0].sum()).backward()
    g = m.h0.grad.numpy()
    assert g.shape == (4, 1, 4) and np.all(np.abs(g).sum(axis=(1, 2)) > 0)
    if kind == "lstm":
        assert np.abs(m.c0.grad.numpy()).sum() > 0


def test_learned_state_equals_explicit_hx():
    m = nn.LSTM(3, 4, init_state="learned", proj_size=2)
    with mg.no_grad():
        m.h0.copy_(mg.randn(1, 1, 2))
        m.c0.copy_(mg.randn(1, 1, 4))
    x = mg.randn(5, 3, 3)
    a, _ = m(x)
    hx = (m.h0.detach().expand(1, 3, 2), m.c0.detach().expand(1, 3, 4))
    b, _ = m(x, hx)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- gradient norms


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
def test_grad_norms_show_vanishing_gradient(fused):
    mg.manual_seed(0)
    m = nn.RNN(4, 16, track_grad_norms=True, fused=fused)
    m.double()
    with mg.no_grad():
        for p in m.parameters():
            p.mul_(0.3)  # small weights: the Jacobians dh_{t+1}/dh_t shrink the gradient
    x = mg.tensor(np.random.default_rng(14).standard_normal((50, 8, 4)))
    assert m.last_grad_norms is None
    out, h_n = m(x)
    assert m.last_grad_norms is None  # nothing before backward
    (out[-1] ** 2).sum().backward()  # the loss reads only the last step
    norms = m.last_grad_norms
    assert norms.shape == (1, 50)
    row = norms[0]
    assert np.all(np.isfinite(row)) and row[-1] > 0
    assert row[0] < 1e-6 * row[-1]
    assert np.all(np.diff(row[-10:]) > 0)  # growing towards the end that the loss reads


def test_grad_norms_generic_runner_records_per_step():
    rng = np.random.default_rng(15)
    cell = nn.GRUCell(2, 3)
    cell.double()
    x = mg.tensor(rng.standard_normal((6, 2, 2)))
    sink = []
    outs, h = nn.run_sequence(cell.step, x, cell.init_state(2), grad_norms=sink)
    hs = []
    # the same quantity by retaining grads of every h_t by hand
    state = cell.init_state(2)
    for t in range(6):
        state, _ = cell.step(x[t], state)
        state.retain_grad()
        hs.append(state)
    w = rng.standard_normal((6, 2, 3))
    (outs * mg.tensor(w)).sum().backward()
    (mg.stack(hs) * mg.tensor(w)).sum().backward()
    assert len(sink) == 1
    expected = [np.linalg.norm(h_t.grad.numpy()) for h_t in hs]
    np.testing.assert_allclose(sink[0], expected, rtol=1e-10)


def test_bidirectional_grad_norm_rows():
    m = nn.GRU(2, 3, num_layers=2, bidirectional=True, track_grad_norms=True)
    out, h = m(mg.randn(7, 2, 2))
    out[0].sum().backward()  # only the first step: the reverse direction sees it last
    norms = m.last_grad_norms
    assert norms.shape == (4, 7)
    fwd, rev = norms[2], norms[3]
    assert fwd[0] > 0 and np.all(fwd[1:] == 0)  # forward: later steps don't affect out[0]
    assert np.all(rev > 0)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
def test_dropout_between_layers_only_in_training(fused):
    rng = np.random.default_rng(16)
    t, m = make_pair("lstm", 3, 8, num_layers=2, dropout=0.5)
    t.eval()
    m.eval()
    x = rng.standard_normal((5, 4, 3))
    assert_same(*run_both(t, m, x, fused=fused))  # eval: no dropout, equals torch
    m.train()
    m.fused = fused
    xm = mg.tensor(x)
    a, _ = m(xm)
    b, _ = m(xm)
    ref, _ = m.eval()(xm)
    assert not np.allclose(a.detach().numpy(), ref.detach().numpy())
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())  # fresh masks each call
    # one layer: nothing to drop between layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = nn.GRU(3, 4, dropout=0.9, fused=fused).double()
    s1, _ = single(xm)
    s2, _ = single.eval()(xm)
    np.testing.assert_array_equal(s1.detach().numpy(), s2.detach().numpy())


def test_no_grad_forward():
    m = nn.LSTM(2, 3)
    with mg.no_grad():
        out, (h, c) = m(mg.randn(4, 2, 2))
    assert not out.requires_grad
