"""IA3 against a numpy oracle of gate pre-activation scaling; prefix and prompt details."""

from __future__ import annotations

import numpy as np
import pytest

import microgradnn as mg
from microgradnn import finetune as ft
from microgradnn.models import SequenceModel

from ._util import batch, make_lm, outputs, train


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _oracle(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, s):
    """One layer over time in numpy, every gate's pre-activation multiplied by ``s``."""
    outs = []
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if cell == "lstm":
            i, f, g, o = np.split(s * (gi + gh), 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # gru: s scales the whole candidate pre-activation, reset gate inside
            s_r, s_z, s_n = np.split(s, 3)
            i_r, i_z, i_n = np.split(gi, 3, axis=1)
            h_r, h_z, h_n = np.split(gh, 3, axis=1)
            r = _sigmoid(s_r * (i_r + h_r))
            z = _sigmoid(s_z * (i_z + h_z))
            n = np.tanh(s_n * (i_n + r * h_n))
            h = (1 - z) * n + z * h
        outs.append(h)
    return np.stack(outs, 1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ia3_scales_each_gate_pre_activation(cell):
    mg.manual_seed(0)
    model = SequenceModel(2, input_size=3, hidden_size=4, cell=cell).double()
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    strategy = ft.IA3()
    strategy.apply(model)
    rng = np.random.default_rng(0)
    scale = model.rnn.parametrizations.weight_ih_l0[0].scale
    with mg.no_grad():
        scale.array[...] = rng.uniform(0.5, 1.5, scale.shape)
    x = rng.standard_normal((2, 5, 3))
    h0 = rng.standard_normal((1, 2, 4))
    hx = (mg.tensor(h0), mg.tensor(rng.standard_normal((1, 2, 4)))) if cell == "lstm" else mg.tensor(h0)
    with mg.no_grad():
        out, _ = model.rnn(mg.tensor(x), hx)
    c0 = hx[1].array[0] if cell == "lstm" else None
    expected = _oracle(cell, x, h0[0], c0, sd["rnn.weight_ih_l0"], sd["rnn.weight_hh_l0"],
                       sd["rnn.bias_ih_l0"], sd["rnn.bias_hh_l0"], scale.array)
    np.testing.assert_allclose(out.array, expected, rtol=1e-10, atol=1e-12)
    # one scale per gate and unit, shared by the four tensors; counted once
    assert strategy.trainable_summary(model)["trainable"] == scale.numel() == (4 if cell == "lstm" else 3) * 4


def test_ia3_on_a_linear_scales_its_outputs_and_merges_exactly():
    model = make_lm()
    x, _ = batch(2)
    base_logits = outputs(model, x)
    strategy = ft.IA3(modules=["head"])
    strategy.apply(model)
    s = model.head.parametrizations.weight[0].scale
    with mg.no_grad():
        s.array[...] = np.linspace(0.5, 2.0, s.numel())
    np.testing.assert_allclose(outputs(model, x), base_logits * s.array, rtol=1e-5, atol=1e-6)
    expected = outputs(model, x)
    strategy.merge(model)
    np.testing.assert_array_equal(outputs(model, x), expected)  # the very same products


def test_ia3_on_generic_recurrent_with_builtin_cells():
    from microgradnn.nn import GRUCell

    mg.manual_seed(0)
    model = SequenceModel(13, vocab_size=13, embedding_dim=4, hidden_size=5, num_layers=2, cell=GRUCell)
    x, _ = batch(2)
    base = outputs(model, x)
    strategy = ft.IA3()
    strategy.apply(model)
    np.testing.assert_array_equal(outputs(model, x), base)
    assert strategy.trainable_summary(model)["trainable"] == 2 * 15
    train(model, strategy, steps=2)
    expected = outputs(model, x)
    strategy.merge(model)
    np.testing.assert_allclose(outputs(model, x), expected, rtol=1e-6, atol=1e-7)


def test_prefix_bidirectional_multilayer_and_existing_learned_state():
    mg.manual_seed(0)
    model = SequenceModel(3, vocab_size=13, embedding_dim=4, hidden_size=5, num_layers=2, bidirectional=True,
                          task="classification")
    x, _ = batch(2)
    base = outputs(model, x)
    strategy = ft.Prefix()
    strategy.apply(model)
    assert model.rnn.h0.shape == (4, 1, 5) and model.rnn.c0.shape == (4, 1, 5)
    np.testing.assert_array_equal(outputs(model, x), base)
    train(model, strategy, steps=2)
    assert np.abs(model.rnn.h0.array).sum() > 0
    # a layer built with learned states keeps (and trains) its own
    pre = make_lm(init_state="learned")
    h0 = pre.rnn.h0
    ft.Prefix().apply(pre)
    assert pre.rnn.h0 is h0 and h0.requires_grad


def test_prompt_from_vocab_rows_and_random():
    model = make_lm(padding_idx=0)
    strategy = ft.Prompt(n_tokens=5)
    strategy.apply(model)
    table = model.embedding.weight.array
    for row in model.prompt.array:  # each a copy of a real (non-padding) token's embedding
        matches = np.flatnonzero((table == row).all(axis=1))
        assert matches.size and 0 not in matches
    x, _ = batch(2)
    assert outputs(model, x).shape == (3, 7, 13)  # the prompt positions are dropped for an LM
    other = make_lm()
    ft.Prompt(n_tokens=2, init="random").apply(other)
    assert other.prompt.shape == (2, 6)


def test_prompt_for_classification_with_lengths():
    mg.manual_seed(0)
    model = SequenceModel(2, vocab_size=13, embedding_dim=4, hidden_size=5, task="classification", padding_idx=0)
    strategy = ft.Prompt(n_tokens=2)
    strategy.apply(model)
    x, y = batch(3, classes=2)
    out, _ = model(x, lengths=[7, 4, 2])
    loss = mg.cross_entropy(out, y)
    loss.backward()
    assert model.prompt.grad is not None and model.embedding.weight.grad is None
