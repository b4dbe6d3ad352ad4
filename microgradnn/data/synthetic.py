"""Synthetic long-range tasks for recurrent nets: ``adding``, ``copy``, ``parity``.

Each one is easy to state, has a known "no memory" baseline, and can only be solved by
carrying information across many time steps, which makes them the classic tests of
whether gradients survive the trip back through time. The data are drawn once from a
generator seeded with ``seed`` (training and validation from independent streams), so
they are the same on every machine.
"""

from __future__ import annotations

import string

import numpy as np

from .base import IGNORE_INDEX, DataError, check_int
from .sequences import Examples, SequenceData
from .vocab import Vocab

__all__ = ["adding", "copy", "parity"]


def _rngs(seed: int, owner: str) -> tuple[np.random.Generator, np.random.Generator]:
    seed = check_int(owner, "seed", seed, 0)
    return np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])


def adding(seq_len: int = 50, train_size: int = 10000, val_size: int = 1000, seed: int = 0) -> SequenceData:
    """The adding problem (Hochreiter & Schmidhuber 1997; in this form Le et al. 2015).

    Each step has 2 features: a random value in [0, 1) and a marker that is 1 at exactly two
    steps, one in each half of the sequence, and 0 elsewhere. The target is the sum of the
    two marked values (regression, ``x`` (B, T, 2) float32, ``y`` (B, 1) float32).

    Baseline: always answering 1.0 (the mean) gives a mean squared error of about 1/6 ~ 0.167;
    a net that solves the task goes far below it (0.01 and less)."""
    owner = "adding"
    seq_len = check_int(owner, "seq_len", seq_len, 2)
    train_size = check_int(owner, "train_size", train_size, 1)
    val_size = check_int(owner, "val_size", val_size, 0)
    rng_train, rng_val = _rngs(seed, owner)

    def make(n: int, rng: np.random.Generator) -> Examples:
        values = rng.random((n, seq_len)).astype(np.float32)
        half = seq_len // 2
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, seq_len, size=n)
        marks = np.zeros((n, seq_len), dtype=np.float32)
        rows = np.arange(n)
        marks[rows, first] = 1.0
        marks[rows, second] = 1.0
        y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
        return Examples(np.stack([values, marks], axis=2), y)

    val = make(val_size, rng_val) if val_size else None
    return SequenceData(make(train_size, rng_train), val, "regression", 1, name=owner, input_size=2,
                        info={"seq_len": seq_len, "baseline_mse": 1 / 6})


def copy(length: int = 10, delay: int = 20, num_symbols: int = 8, train_size: int = 10000,
         val_size: int = 1000, seed: int = 0, score: str = "answer") -> SequenceData:
    """The copy task (Hochreiter & Schmidhuber 1997; in this form Arjovsky et al. 2016).

    Tokens: ``_`` blank (id 0), ``num_symbols`` symbols ``a``, ``b``, ... (ids 1..K) and the
    delimiter ``:`` (id K+1). An input is ``length`` random symbols, ``delay`` blanks, the
    delimiter, then ``length`` blanks; the net must then output the symbols, in order, at
    those last ``length`` steps. Sequences are ``2 * length + delay + 1`` steps long::

        x:  c a h b _ _ _ _ _ _ : _ _ _ _       (length 4, delay 6)
        y:  . . . . . . . . . . . c a h b       ('.' = not scored)

    It is per-step classification, so ``task`` is "lm" (a prediction at every step, the
    head an ``lm`` model has); but every sequence is independent (``streams`` is False: no
    state is carried across batches). ``score="answer"`` scores only the last ``length``
    steps (the others hold IGNORE_INDEX, -100, which losses and metrics skip); ``"all"``
    scores every step, with target blank before the answer (the original formulation).

    Baseline (score="answer"): guessing gives accuracy 1/K and loss log K."""
    owner = "copy"
    length = check_int(owner, "length", length, 1)
    delay = check_int(owner, "delay", delay, 0)
    num_symbols = check_int(owner, "num_symbols", num_symbols, 1)
    train_size = check_int(owner, "train_size", train_size, 1)
    val_size = check_int(owner, "val_size", val_size, 0)
    symbols = string.ascii_lowercase + string.ascii_uppercase
    if num_symbols > len(symbols):
        raise DataError(f"{owner}: num_symbols must be at most {len(symbols)}, got {num_symbols}")
    if score not in ("answer", "all"):
        raise DataError(f"{owner}: score must be 'answer' or 'all', got {score!r}")
    vocab = Vocab(["_"] + list(symbols[:num_symbols]) + [":"], pad=False, unk=False)
    delimiter = num_symbols + 1
    total = 2 * length + delay + 1
    rng_train, rng_val = _rngs(seed, owner)

    def make(n: int, rng: np.random.Generator) -> Examples:
        pattern = rng.integers(1, num_symbols + 1, size=(n, length))
        x = np.zeros((n, total), dtype=np.int64)
        x[:, :length] = pattern
        x[:, length + delay] = delimiter
        y = np.full((n, total), IGNORE_INDEX if score == "answer" else 0, dtype=np.int64)
        y[:, total - length:] = pattern
        return Examples(x, y)

    val = make(val_size, rng_val) if val_size else None
    return SequenceData(make(train_size, rng_train), val, "lm", len(vocab), name=owner, vocab=vocab,
                        info={"seq_len": total, "baseline_accuracy": 1 / num_symbols})


def parity(seq_len: int = 20, min_len: int | None = None, train_size: int = 10000, val_size: int = 1000,
           seed: int = 0) -> SequenceData:
    """Parity: is the number of ones in a bit sequence even or odd?

    Every bit matters to the answer until the end, and flipping any one bit flips it: the
    hardest kind of long-range dependency for gradient descent to discover. Inputs
    ``x`` (B, T, 1) float32 bits, targets ``y`` (B,) int64: 0 "even", 1 "odd". With
    ``min_len``, lengths are drawn from [min_len, seq_len] and batches are padded (with
    ``lengths``). Baseline: accuracy 0.5."""
    owner = "parity"
    seq_len = check_int(owner, "seq_len", seq_len, 1)
    if min_len is not None:
        min_len = check_int(owner, "min_len", min_len, 1)
        if min_len > seq_len:
            raise DataError(f"{owner}: min_len ({min_len}) must not exceed seq_len ({seq_len})")
    train_size = check_int(owner, "train_size", train_size, 1)
    val_size = check_int(owner, "val_size", val_size, 0)
    rng_train, rng_val = _rngs(seed, owner)

    def make(n: int, rng: np.random.Generator) -> Examples:
        bits = rng.integers(0, 2, size=(n, seq_len)).astype(np.float32)
        if min_len is None:
            y = (bits.sum(axis=1) % 2).astype(np.int64)
            return Examples(bits[:, :, None], y)
        lengths = rng.integers(min_len, seq_len + 1, size=n)
        seqs = [bits[i, : lengths[i], None] for i in range(n)]
        y = np.array([int(s.sum()) % 2 for s in seqs], dtype=np.int64)
        return Examples(seqs, y)

    val = make(val_size, rng_val) if val_size else None
    return SequenceData(make(train_size, rng_train), val, "classification", 2, name=owner, input_size=1,
                        class_names=["even", "odd"], info={"seq_len": seq_len, "baseline_accuracy": 0.5})
