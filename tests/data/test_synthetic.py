"""adding / copy / parity: the task definitions checked element by element, shapes and
dtypes, determinism by seed, epoch shuffling."""

from __future__ import annotations

import numpy as np
import pytest

from microgradnn.data import IGNORE_INDEX, DataError, adding, copy, parity


def test_adding_definition() -> None:
    dm = adding(seq_len=20, train_size=300, val_size=50, seed=4)
    assert (dm.task, dm.input_size, dm.output_size, dm.vocab) == ("regression", 2, 1, None)
    batches = list(dm.train_batches(64, epoch=0, seed=0))
    assert len(batches) == dm.num_train_batches(64) == 5
    for b in batches:
        assert b.x.dtype == np.float32 and b.x.shape[1:] == (20, 2) and b.y.shape == (len(b.x), 1)
        assert b.y.dtype == np.float32 and np.all(b.lengths == 20)
        marks = b.x[:, :, 1]
        assert np.all(marks.sum(1) == 2) and set(np.unique(marks)) <= {0.0, 1.0}
        assert np.all(marks[:, :10].sum(1) == 1) and np.all(marks[:, 10:].sum(1) == 1)  # one per half
        np.testing.assert_allclose(b.y[:, 0], (b.x[:, :, 0] * marks).sum(1), rtol=1e-6)
        assert np.all((b.x[:, :, 0] >= 0) & (b.x[:, :, 0] < 1))
    # The mean predictor's MSE is about Var(U1 + U2) = 1/6.
    y = np.concatenate([b.y for b in dm.train_batches(300)])
    assert abs(((y - 1.0) ** 2).mean() - 1 / 6) < 0.03


def test_adding_seeded_and_val_independent() -> None:
    a, b, c = adding(train_size=50, val_size=20, seed=0), adding(train_size=50, val_size=20, seed=0), adding(train_size=50, val_size=20, seed=1)
    assert np.array_equal(a.train.fixed, b.train.fixed) and not np.array_equal(a.train.fixed, c.train.fixed)
    assert not np.array_equal(a.train.fixed[:20], a.val.fixed)
    v1, v2 = list(a.val_batches(8)), list(a.val_batches(8))
    assert len(v1) == a.num_val_batches(8) == 3 and all(np.array_equal(p.x, q.x) for p, q in zip(v1, v2))
    e0 = [x.y.tolist() for x in a.train_batches(10, epoch=0, seed=0)]
    e1 = [x.y.tolist() for x in a.train_batches(10, epoch=1, seed=0)]
    assert e0 != e1 and sorted(sum(e0, [])) == sorted(sum(e1, []))
    assert adding(val_size=0, train_size=5).num_val_batches(4) == 0


def test_copy_layout() -> None:
    dm = copy(length=4, delay=6, num_symbols=5, train_size=40, val_size=10, seed=2)
    T = 2 * 4 + 6 + 1
    assert dm.task == "lm" and not dm.streams and dm.output_size == len(dm.vocab) == 7
    assert dm.vocab.itos == ["_", "a", "b", "c", "d", "e", ":"]
    for b in dm.train_batches(16, epoch=0, seed=0):
        assert b.x.shape == b.y.shape == (len(b.x), T) and b.x.dtype == b.y.dtype == np.int64
        for x, y in zip(b.x, b.y):
            text = dm.vocab.decode(x)
            assert text[4:10] == "______" and text[10] == ":" and text[11:] == "____"
            assert set(text[:4]) <= set("abcde")
            assert np.all(y[:T - 4] == IGNORE_INDEX) and np.array_equal(y[T - 4:], x[:4])
    all_steps = copy(length=3, delay=2, train_size=5, val_size=0, score="all")
    b = next(all_steps.train_batches(5))
    assert np.all(b.y[:, :-3] == 0) and np.array_equal(b.y[:, -3:], b.x[:, :3])


def test_parity_definition() -> None:
    dm = parity(seq_len=12, train_size=200, val_size=20, seed=1)
    assert dm.class_names == ["even", "odd"] and dm.input_size == 1 and dm.output_size == 2
    b = next(dm.train_batches(32, epoch=0, seed=0))
    assert b.x.shape == (32, 12, 1) and b.x.dtype == np.float32 and b.y.dtype == np.int64
    assert np.array_equal(b.y, b.x[:, :, 0].sum(1).astype(int) % 2)
    assert 0.3 < np.mean([y for bb in dm.train_batches(200) for y in bb.y]) < 0.7


def test_parity_variable_length() -> None:
    dm = parity(seq_len=10, min_len=3, train_size=100, val_size=0, seed=0)
    lens = []
    for b in dm.train_batches(16, epoch=1, seed=3):
        assert b.x.shape[1] == b.lengths.max()
        for x, y, n in zip(b.x[:, :, 0], b.y, b.lengths):
            assert np.all(x[n:] == 0) and y == int(x[:n].sum()) % 2
        lens.extend(b.lengths.tolist())
    assert min(lens) >= 3 and max(lens) <= 10 and len(set(lens)) > 3


def test_errors() -> None:
    with pytest.raises(DataError, match="adding: seq_len must be an int >= 2, got 1"):
        adding(seq_len=1)
    with pytest.raises(DataError, match="copy: score must be 'answer' or 'all'"):
        copy(score="some")
    with pytest.raises(DataError, match="num_symbols must be at most 52"):
        copy(num_symbols=60)
    with pytest.raises(DataError, match=r"min_len \(12\) must not exceed seq_len \(10\)"):
        parity(seq_len=10, min_len=12)
    with pytest.raises(DataError, match="seed must be an int >= 0"):
        parity(seed=-3)
