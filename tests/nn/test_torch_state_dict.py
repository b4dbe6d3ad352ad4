"""A PyTorch ``state_dict`` loads unchanged into the microgradnn twin of the same model and
gives the same outputs (and gradients): nn.LSTM / nn.GRU / nn.RNN on their own, a model
made of Embedding -> LSTM -> Linear, and ``microgradnn.models.SequenceModel`` reading the
usual PyTorch char-LM (attributes ``embedding``, ``rnn``, ``head``), also from a file
written by ``torch.save``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import microgradnn as mg
from microgradnn import nn
from microgradnn.models import SequenceModel

# torch's own note that oneDNN lacks LSTM projections (it falls back to its default kernel)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

F64 = dict(rtol=1e-6, atol=1e-6)
F32 = dict(rtol=1e-4, atol=1e-5)


def tol(dtype):
    return F64 if dtype == np.float64 else F32


def torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def load_into(m, t, dtype):
    """t's state_dict -> m (cast to dtype), after checking the key lists are identical."""
    t.to(torch_dtype(dtype))
    m.to(dtype=dtype)
    assert list(m.state_dict()) == list(t.state_dict())
    result = m.load_state_dict(t.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in t.state_dict().items():
        np.testing.assert_array_equal(np.asarray(m.state_dict()[key]), value.numpy())


def compare_grads(m, t, dtype):
    tparams = dict(t.named_parameters())
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), **tol(dtype), err_msg=name)


# ============================================================================ RNN / LSTM / GRU alone

LAYERS = {
    "lstm": (torch.nn.LSTM, nn.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, nn.LSTM, {"proj_size": 3}),
    "gru": (torch.nn.GRU, nn.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, nn.RNN, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_recurrent_layer_state_dict_loads_and_matches(kind, bidirectional, dtype):
    tcls, mcls, extra = LAYERS[kind]
    torch.manual_seed(0)
    options = dict(num_layers=2, bidirectional=bidirectional, batch_first=True, **extra)
    t, m = tcls(4, 5, **options), mcls(4, 5, **options)
    load_into(m, t, dtype)
    x = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(dtype)
    tx, mx = torch.tensor(x, requires_grad=True), mg.tensor(x, requires_grad=True)
    tout, tstate = t(tx)
    mout, mstate = m(mx)
    np.testing.assert_allclose(mout.detach().numpy(), tout.detach().numpy(), **tol(dtype))
    tstates = tstate if isinstance(tstate, tuple) else (tstate,)
    mstates = mstate if isinstance(mstate, tuple) else (mstate,)
    for ms, ts in zip(mstates, tstates):
        np.testing.assert_allclose(ms.detach().numpy(), ts.detach().numpy(), **tol(dtype))
    g = np.random.default_rng(1).standard_normal(tuple(tout.shape)).astype(dtype)
    (tout * torch.tensor(g)).sum().backward()
    (mout * mg.tensor(g)).sum().backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), **tol(dtype))
    compare_grads(m, t, dtype)


def test_single_layer_keys_and_a_mismatched_state_dict_is_a_clear_error():
    t = torch.nn.LSTM(3, 4)
    with pytest.raises(Exception, match=r"weight_ih_l0.*\(16, 3\).*\(8, 3\)"):
        nn.LSTM(3, 2).load_state_dict(t.state_dict())
    with pytest.raises(Exception, match="weight_ih_l1"):
        nn.LSTM(3, 4, num_layers=2).load_state_dict(t.state_dict())


# ============================================================================ Embedding -> LSTM -> Linear


class TorchTagger(torch.nn.Module):
    """A typical hand-written PyTorch model: tokens -> embedding -> 2-layer LSTM -> per-step logits."""

    def __init__(self, vocab, dim, hidden, classes, padding_idx=0):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.lstm = torch.nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
        self.norm = torch.nn.LayerNorm(hidden)
        self.out = torch.nn.Linear(hidden, classes)

    def forward(self, tokens):
        h, _ = self.lstm(self.embed(tokens))
        return self.out(self.norm(h))


class MgTagger(nn.Module):
    """The same model written against microgradnn: the code is line for line PyTorch's."""

    def __init__(self, vocab, dim, hidden, classes, padding_idx=0):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, tokens):
        h, _ = self.lstm(self.embed(tokens))
        return self.out(self.norm(h))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_embedding_lstm_linear_model_loads_and_trains_the_same(dtype):
    torch.manual_seed(0)
    t, m = TorchTagger(12, 6, 8, 5), MgTagger(12, 6, 8, 5)
    load_into(m, t, dtype)
    tokens = np.random.default_rng(0).integers(0, 12, (4, 7))
    tokens[:, -2:] = 0  # padding
    labels = np.random.default_rng(1).integers(0, 5, (4, 7))
    labels[:, -2:] = -100
    tlogits, mlogits = t(torch.tensor(tokens)), m(mg.tensor(tokens))
    np.testing.assert_allclose(mlogits.detach().numpy(), tlogits.detach().numpy(), **tol(dtype))
    tloss = torch.nn.CrossEntropyLoss()(tlogits.reshape(-1, 5), torch.tensor(labels).reshape(-1))
    mloss = nn.CrossEntropyLoss()(mlogits.reshape(-1, 5), mg.tensor(labels).reshape(-1))
    np.testing.assert_allclose(mloss.item(), tloss.item(), **tol(dtype))
    tloss.backward()
    mloss.backward()
    compare_grads(m, t, dtype)
    assert not m.embed.weight.grad.numpy()[0].any()  # the padding row
    # one identical optimizer step keeps them together
    topt = torch.optim.Adam(t.parameters(), lr=1e-2)
    mopt = mg.optim.Adam(m.parameters(), lr=1e-2)
    topt.step()
    mopt.step()
    for key, value in t.state_dict().items():
        np.testing.assert_allclose(np.asarray(m.state_dict()[key]), value.numpy(), **tol(dtype), err_msg=key)


def test_torch_save_file_loads_through_mg_load(tmp_path):
    torch.manual_seed(0)
    t = TorchTagger(10, 4, 6, 3)
    path = tmp_path / "tagger.pt"
    torch.save(t.state_dict(), path)
    state = mg.load(path)
    m = MgTagger(10, 4, 6, 3)
    m.load_state_dict(state)
    tokens = np.random.default_rng(0).integers(0, 10, (2, 5))
    np.testing.assert_allclose(m(mg.tensor(tokens)).detach().numpy(), t(torch.tensor(tokens)).detach().numpy(), **F32)


# ============================================================================ SequenceModel <- torch char-LM


class TorchCharLM(torch.nn.Module):
    """The usual PyTorch char-level language model (as in many tutorials)."""

    def __init__(self, vocab, dim, hidden, layers, cell="lstm"):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, dim)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = rnn(dim, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embedding(x), state)
        return self.head(out), state


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_sequence_model_loads_a_torch_char_lm(cell, dtype):
    torch.manual_seed(0)
    vocab, dim, hidden, layers = 11, 6, 8, 2
    t = TorchCharLM(vocab, dim, hidden, layers, cell)
    m = SequenceModel(vocab, vocab_size=vocab, embedding_dim=dim, hidden_size=hidden, num_layers=layers, cell=cell,
                      task="lm")
    load_into(m, t, dtype)
    m.eval(), t.eval()
    x = np.random.default_rng(0).integers(0, vocab, (3, 9))
    y = np.random.default_rng(1).integers(0, vocab, (3, 9))
    tlogits, tstate = t(torch.tensor(x))
    mlogits, mstate = m(mg.tensor(x))
    assert mlogits.shape == (3, 9, vocab)
    np.testing.assert_allclose(mlogits.detach().numpy(), tlogits.detach().numpy(), **tol(dtype))
    # carrying the state into the next chunk (truncated BPTT / generation) agrees too
    x2 = np.random.default_rng(2).integers(0, vocab, (3, 4))
    t2, _ = t(torch.tensor(x2), tstate)
    m2, _ = m(mg.tensor(x2), mstate)
    np.testing.assert_allclose(m2.detach().numpy(), t2.detach().numpy(), **tol(dtype))
    tloss = torch.nn.functional.cross_entropy(tlogits.transpose(1, 2), torch.tensor(y))
    mloss = mg.nn.functional.cross_entropy(mlogits.transpose(1, 2), mg.tensor(y))
    np.testing.assert_allclose(mloss.item(), tloss.item(), **tol(dtype))
    tloss.backward()
    mloss.backward()
    compare_grads(m, t, dtype)


def test_sequence_model_classifier_reads_the_final_hidden_state_like_torch():
    class TorchClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(9, 5, padding_idx=0)
            self.rnn = torch.nn.GRU(5, 6, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(12, 3)

        def forward(self, x, lengths):
            packed = torch.nn.utils.rnn.pack_padded_sequence(self.embedding(x), lengths, batch_first=True,
                                                             enforce_sorted=False)
            _, h_n = self.rnn(packed)
            return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))

    torch.manual_seed(0)
    t = TorchClassifier().double()
    m = SequenceModel(3, vocab_size=9, embedding_dim=5, padding_idx=0, cell="gru", hidden_size=6,
                      bidirectional=True, task="classification")
    load_into(m, t, np.float64)
    lengths = [5, 2, 4]
    x = np.random.default_rng(0).integers(1, 9, (3, 5))
    for row, n in enumerate(lengths):
        x[row, n:] = 0
    tout = t(torch.tensor(x), torch.tensor(lengths))
    mout, _ = m(mg.tensor(x), lengths=lengths)
    np.testing.assert_allclose(mout.detach().numpy(), tout.detach().numpy(), **F64)
