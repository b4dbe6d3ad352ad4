"""Shared helpers of the fine-tuning tests: a small LSTM language model, seeded data, and
a few optimizer steps that record which parameters changed."""

from __future__ import annotations

import numpy as np

import microgradnn as mg
from microgradnn.models import SequenceModel

VOCAB = 13


def make_lm(seed: int = 0, cell: str = "lstm", num_layers: int = 2, **kw) -> SequenceModel:
    """The same pretrained-looking model for a given seed (fresh object each call)."""
    mg.manual_seed(seed)
    options = dict(vocab_size=VOCAB, embedding_dim=6, hidden_size=8, num_layers=num_layers, cell=cell)
    options.update(kw)
    return SequenceModel(VOCAB, **options)


def batch(seed: int = 1, b: int = 3, t: int = 7, classes: int | None = None):
    rng = np.random.default_rng(seed)
    x = mg.tensor(rng.integers(0, VOCAB, (b, t)))
    y = mg.tensor(rng.integers(0, classes, (b,))) if classes else mg.tensor(rng.integers(0, VOCAB, (b, t)))
    return x, y


def loss_of(model, x, y):
    out, _ = model(x)
    if out.ndim == 3:
        return mg.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return mg.cross_entropy(out, y)


def train(model, strategy, steps: int = 4, lr: float = 0.05, seed: int = 1, weight_decay: float = 0.01):
    """``steps`` AdamW steps over ALL parameters (frozen ones have no gradient and must be
    skipped, weight decay included), calling ``strategy.on_step`` after each."""
    x, y = batch(seed, classes=model.output_size if model.task != "lm" else None)
    opt = mg.optim.AdamW(list(model.parameters()), lr=lr, weight_decay=weight_decay)
    for step in range(1, steps + 1):
        loss = loss_of(model, x, y)
        extra = strategy.penalty(model)
        if extra is not None:
            loss = loss + extra
        opt.zero_grad()
        loss.backward()
        opt.step()
        strategy.on_step(step)
    return model


def snapshot(model) -> dict:
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def changed(before: dict, model) -> list[str]:
    after = model.state_dict()
    return [k for k in after if k not in before or not np.array_equal(before[k], after[k])]


def outputs(model, x) -> np.ndarray:
    was = model.training
    model.eval()
    with mg.no_grad():
        out = model(x)[0].array.copy()
    model.train(was)
    return out
