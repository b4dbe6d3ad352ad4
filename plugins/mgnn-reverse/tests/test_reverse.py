"""Tests of the mgnn-reverse plugin: the ``reverse`` dataset (layout, determinism, padding)
and the ``cer`` metric (hand-computed edit distances), discovery through entry points, and
a short training run through microgradnn's SequenceModel."""

from __future__ import annotations

import importlib.metadata as metadata

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.data import IGNORE_INDEX, DataError
from microgradnn.models import SequenceModel
from mgnn_reverse import CER, cer, edit_distance, reverse


def test_layout_and_targets() -> None:
    dm = reverse(length=4, num_symbols=5, train_size=20, val_size=5, seed=3)
    assert dm.task == "lm" and not dm.streams and dm.output_size == len(dm.vocab) == 8
    b = next(dm.train_batches(6, epoch=0, seed=0))
    assert b.x.shape == (6, 8) and b.x.dtype == np.int64 and b.y.shape == (6, 8) and b.y.dtype == np.int64
    for x, y in zip(b.x, b.y):
        text = dm.vocab.decode(x)
        assert text[4] == "=" and text[5:] == "___"
        assert np.all(y[:4] == IGNORE_INDEX)
        assert dm.vocab.decode(y[4:]) == text[:4][::-1]


def test_variable_length_padding() -> None:
    dm = reverse(length=6, min_length=2, train_size=50, val_size=10, seed=0)
    for b in dm.train_batches(8, epoch=1, seed=2):
        T = b.x.shape[1]
        assert T == int(b.lengths.max()) and b.y.shape == (len(b.x), T) and np.all(b.lengths % 2 == 0)
        for x, y, n in zip(b.x, b.y, b.lengths):
            k = n // 2
            assert np.all(x[n:] == dm.vocab.pad_id) and np.all(y[n:] == IGNORE_INDEX)
            assert dm.vocab.decode(y[k:n]) == dm.vocab.decode(x[:k])[::-1]


def test_deterministic_and_seeded() -> None:
    a = [b.x for b in reverse(train_size=40, seed=1).train_batches(16, epoch=2, seed=5)]
    b = [b.x for b in reverse(train_size=40, seed=1).train_batches(16, epoch=2, seed=5)]
    c = [b.x for b in reverse(train_size=40, seed=1).train_batches(16, epoch=3, seed=5)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def test_bad_options() -> None:
    with pytest.raises(DataError, match="min_length"):
        reverse(length=3, min_length=5)
    with pytest.raises(DataError, match="num_symbols"):
        reverse(num_symbols=40)


def test_edit_distance_by_hand() -> None:
    assert edit_distance("kitten", "sitting") == 3   # k->s, e->i, +g
    assert edit_distance("", "abc") == 3
    assert edit_distance("abcd", "bcde") == 2        # -a, +e (Hamming would say 4)
    assert edit_distance("flaw", "lawn") == 2
    assert cer(["kitten", "abc"], ["sitting", "abc"]) == pytest.approx(3 / 10)


def test_cer_metric_on_outputs() -> None:
    rng = np.random.default_rng(0)
    target = np.array([[IGNORE_INDEX, 1, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, 4, 4]])
    pred = np.array([[0, 1, 3, 3], [2, 2, 4, 1]])
    out = rng.standard_normal((2, 4, 6))
    out[np.arange(2)[:, None], np.arange(4)[None, :], pred] = 10.0  # argmax = pred
    m = CER()
    m.update(out, target)
    # row 0: [1,3,3] vs [1,2,3] -> 1 edit; row 1: [4,1] vs [4,4] -> 1 edit; 5 reference chars
    assert m.compute() == pytest.approx(2 / 5)
    m.reset()
    assert np.isnan(m.compute())


def test_trains_through_sequence_model() -> None:
    """Loss falls on the reverse task with a small LSTM (a few dozen steps)."""
    mg.manual_seed(0)
    dm = reverse(length=3, num_symbols=4, train_size=256, val_size=0, seed=0)
    model = SequenceModel(dm.output_size, vocab_size=len(dm.vocab), embedding_dim=16, hidden_size=32,
                          padding_idx=dm.vocab.pad_id, task="lm")
    opt = mg.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for epoch in range(6):
        for b in dm.train_batches(64, epoch=epoch, seed=0):
            out, _ = model(mg.tensor(b.x))
            loss = mg.cross_entropy(out.reshape(-1, out.shape[-1]), mg.tensor(b.y.reshape(-1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.75 * np.mean(losses[:4]), losses


@pytest.mark.parametrize("group, name, target", [("microgradnn.datasets", "reverse", reverse),
                                                  ("microgradnn.metrics", "cer", CER)])
def test_entry_point_discovery(group: str, name: str, target: object) -> None:
    eps = [ep for ep in metadata.entry_points(group=group) if ep.name == name and ep.value.startswith("mgnn_reverse")]
    if not eps:
        pytest.skip("mgnn-reverse is not installed (pip install -e plugins/mgnn-reverse): no entry point to discover")
    assert eps[0].load() is target
    try:
        from microgradnn import registry
    except ImportError:
        return
    assert registry.get(group.split(".", 1)[1], name) is target
