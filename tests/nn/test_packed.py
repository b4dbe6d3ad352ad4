"""Packed sequences (mg.nn.utils.rnn) against torch.nn.utils.rnn, and RNN/LSTM/GRU on a
PackedSequence against torch's: outputs, final states and gradients from the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import rnn as tr

import microgradnn as mg
from microgradnn.nn.utils import rnn as mr


def _np(t):
    return t.detach().numpy()


def _pair(mode, bidirectional, batch_first, seed=0, **kw):
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, mode)(3, 5, num_layers=2, batch_first=batch_first, bidirectional=bidirectional, **kw)
    ours = getattr(mg.nn, mode)(3, 5, num_layers=2, batch_first=batch_first, bidirectional=bidirectional, **kw)
    ours.load_state_dict({k: mg.tensor(_np(v)) for k, v in theirs.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_pack_and_pad_match_torch(batch_first, enforce_sorted):
    rng = np.random.default_rng(1)
    lengths = [6, 4, 4, 1] if enforce_sorted else [3, 6, 1, 4]
    shape = (4, 6, 2) if batch_first else (6, 4, 2)
    x = rng.standard_normal(shape).astype(np.float32)
    tx, mx = torch.tensor(x, requires_grad=True), mg.tensor(x, requires_grad=True)
    tp = tr.pack_padded_sequence(tx, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    mp = mr.pack_padded_sequence(mx, mg.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(_np(mp.data), _np(tp.data))
    assert mp.batch_sizes.tolist() == tp.batch_sizes.tolist() and mp.batch_sizes.dtype == mg.int64
    for a, b in ((mp.sorted_indices, tp.sorted_indices), (mp.unsorted_indices, tp.unsorted_indices)):
        assert (a is None and b is None) or a.tolist() == b.tolist()
    tpad, tl = tr.pad_packed_sequence(tp, batch_first=batch_first, padding_value=-7.0, total_length=8)
    mpad, ml = mr.pad_packed_sequence(mp, batch_first=batch_first, padding_value=-7.0, total_length=8)
    np.testing.assert_array_equal(_np(mpad), _np(tpad))
    assert ml.tolist() == tl.tolist() == lengths
    w = rng.standard_normal(tpad.shape).astype(np.float32)
    (tpad * torch.tensor(w)).sum().backward()
    (mpad * mg.tensor(w)).sum().backward()
    np.testing.assert_array_equal(mx.grad.numpy(), tx.grad.numpy())  # zero at the padding, w elsewhere


def test_pad_sequence_pack_sequence_and_errors():
    rng = np.random.default_rng(2)
    seqs = [rng.standard_normal((n, 2)).astype(np.float32) for n in (2, 5, 3)]
    for kwargs in ({}, {"batch_first": True, "padding_value": 9.0}, {"padding_side": "left"}):
        ours = mr.pad_sequence([mg.tensor(s) for s in seqs], **kwargs)
        np.testing.assert_array_equal(ours.numpy(), tr.pad_sequence([torch.tensor(s) for s in seqs], **kwargs).numpy())
    mp = mr.pack_sequence([mg.tensor(s) for s in seqs], enforce_sorted=False)
    tp = tr.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    np.testing.assert_array_equal(mp.data.numpy(), tp.data.numpy())
    back = mr.unpack_sequence(mp)
    assert [b.shape[0] for b in back] == [2, 5, 3]
    np.testing.assert_array_equal(back[1].numpy(), seqs[1])
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        mr.pack_padded_sequence(mg.zeros(5, 2, 1), [2, 5])
    with pytest.raises(RuntimeError, match="greater than 0"):
        mr.pack_padded_sequence(mg.zeros(5, 2, 1), [5, 0])
    with pytest.raises(ValueError, match="total_length"):
        mr.pad_packed_sequence(mp, total_length=3)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_layers_on_packed_input_match_torch(mode, bidirectional, batch_first):
    rng = np.random.default_rng(3)
    ours, theirs = _pair(mode, bidirectional, batch_first)
    lengths = [3, 6, 1, 4]
    x = rng.standard_normal((4, 6, 3) if batch_first else (6, 4, 3)).astype(np.float32)
    tx, mx = torch.tensor(x, requires_grad=True), mg.tensor(x, requires_grad=True)
    directions = 2 if bidirectional else 1
    h0 = rng.standard_normal((2 * directions, 4, 5)).astype(np.float32)
    th0, mh0 = torch.tensor(h0, requires_grad=True), mg.tensor(h0, requires_grad=True)
    t_hx = (th0, torch.zeros(2 * directions, 4, 5)) if mode == "LSTM" else th0
    m_hx = (mh0, mg.zeros(2 * directions, 4, 5)) if mode == "LSTM" else mh0
    t_out, t_state = theirs(tr.pack_padded_sequence(tx, lengths, batch_first=batch_first, enforce_sorted=False), t_hx)
    m_out, m_state = ours(mr.pack_padded_sequence(mx, lengths, batch_first=batch_first, enforce_sorted=False), m_hx)
    assert isinstance(m_out, mr.PackedSequence)
    np.testing.assert_allclose(_np(m_out.data), _np(t_out.data), atol=2e-6)
    assert m_out.sorted_indices.tolist() == t_out.sorted_indices.tolist()
    t_h = t_state[0] if mode == "LSTM" else t_state
    m_h = m_state[0] if mode == "LSTM" else m_state
    np.testing.assert_allclose(_np(m_h), _np(t_h), atol=2e-6)  # final states in the original batch order
    t_pad, _ = tr.pad_packed_sequence(t_out, batch_first=batch_first)
    m_pad, _ = mr.pad_packed_sequence(m_out, batch_first=batch_first)
    w = rng.standard_normal(t_pad.shape).astype(np.float32)
    ((t_pad * torch.tensor(w)).sum() + (t_h ** 2).sum()).backward()
    ((m_pad * mg.tensor(w)).sum() + (m_h ** 2).sum()).backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), atol=5e-6)
    np.testing.assert_allclose(mh0.grad.numpy(), th0.grad.numpy(), atol=5e-6)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(getattr(ours, name).grad.numpy(), p.grad.numpy(), atol=5e-6, err_msg=name)


def test_packed_equals_the_lengths_path_and_the_generic_runner():
    rng = np.random.default_rng(4)
    lstm = mg.nn.LSTM(3, 4, batch_first=True)
    x = mg.tensor(rng.standard_normal((3, 5, 3)).astype(np.float32))
    lengths = [2, 5, 3]
    with mg.no_grad():
        padded_out, (h, _) = lstm(x, lengths=lengths)
        packed_out, (hp, _) = lstm(mr.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    unpacked, _ = mr.pad_packed_sequence(packed_out, batch_first=True)
    np.testing.assert_array_equal(unpacked.numpy(), padded_out.numpy())
    np.testing.assert_array_equal(hp.numpy(), h.numpy())
    generic = mg.nn.Recurrent(mg.nn.LSTMCell, 3, 4, batch_first=True)
    with mg.no_grad():
        out_g, _ = generic(mr.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    assert isinstance(out_g, mr.PackedSequence) and out_g.data.shape == (10, 4)


from hypothesis import given, strategies as st  # noqa: E402


@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=5), batch_first=st.booleans(),
       enforce_sorted=st.booleans(), seed=st.integers(0, 2**31))
def test_pack_pad_round_trip_matches_torch(lengths, batch_first, enforce_sorted, seed):
    if enforce_sorted:
        lengths = sorted(lengths, reverse=True)
    steps = max(lengths) + seed % 2  # sometimes padded past the longest
    shape = (len(lengths), steps, 2) if batch_first else (steps, len(lengths), 2)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    mp = mr.pack_padded_sequence(mg.tensor(x), lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    tp = tr.pack_padded_sequence(torch.tensor(x), lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(mp.data.numpy(), tp.data.numpy())
    assert mp.batch_sizes.tolist() == tp.batch_sizes.tolist()
    padded, back = mr.pad_packed_sequence(mp, batch_first=batch_first, total_length=steps)
    want, _ = tr.pad_packed_sequence(tp, batch_first=batch_first, total_length=steps)
    np.testing.assert_array_equal(padded.numpy(), want.numpy())
    assert back.tolist() == list(lengths)
