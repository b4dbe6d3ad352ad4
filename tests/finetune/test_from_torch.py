"""Fine-tuning from a PyTorch nn.LSTM language model's state_dict (torch.save'd .pt file)."""

from __future__ import annotations

import numpy as np
import pytest

from microgradnn import finetune as ft
from microgradnn.models import SequenceModel

from ._util import VOCAB, batch, loss_of, outputs, train

torch = pytest.importorskip("torch", reason="the PyTorch state_dict tests need torch")


class TorchLM(torch.nn.Module):
    """A PyTorch character LM with the usual attribute names."""

    def __init__(self, vocab, emb, hidden, layers):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, emb)
        self.rnn = torch.nn.LSTM(emb, hidden, layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.rnn(self.embedding(x))
        return self.head(out)


@pytest.mark.parametrize("wrap", ["plain", "nested", "dataparallel"])
def test_finetune_from_a_pytorch_lstm_lm_state_dict(tmp_path, wrap):
    torch.manual_seed(0)
    tmodel = TorchLM(VOCAB, 6, 8, 2)
    sd = tmodel.state_dict()
    if wrap == "nested":
        sd = {"model_state_dict": sd, "epoch": 3}
    elif wrap == "dataparallel":
        sd = {f"module.{k}": v for k, v in sd.items()}
    torch.save(sd, tmp_path / "lm.pt")

    state = ft.load_base(tmp_path / "lm.pt")
    options = ft.infer_model_options(state)
    assert options == {"output_size": VOCAB, "cell": "lstm", "hidden_size": 8, "num_layers": 2,
                       "bidirectional": False, "vocab_size": VOCAB, "embedding_dim": 6}
    model = SequenceModel(**options)
    model.load_state_dict(state)
    x, y = batch(2)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x.array)).numpy()
    np.testing.assert_allclose(outputs(model, x), expected, rtol=1e-4, atol=1e-5)

    strategy = ft.LoRA(r=2, alpha=4.0)
    strategy.apply(model)
    np.testing.assert_array_equal(outputs(model, x), outputs(model, x))

    start = loss_of(model, x, y).item()
    train(model, strategy, steps=10, lr=0.05, seed=2)
    assert loss_of(model, x, y).item() < start
    # the merged result loads back into the PyTorch model and agrees with ours
    strategy.merge(model)
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    with torch.no_grad():
        np.testing.assert_allclose(outputs(model, x), tmodel(torch.from_numpy(x.array)).numpy(), rtol=1e-4, atol=1e-5)
