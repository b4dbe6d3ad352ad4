"""``reverse``: read a string, then write it backwards (a microgradnn dataset plugin).

Layout of one example (``length`` L = 4, symbols a..j)::

    x:  c a h b = _ _ _          the string, the delimiter "=", then L - 1 blanks
    y:  . . . . b h a c          '.' = not scored (IGNORE_INDEX, -100)

At the delimiter and after it, the net outputs the string's last character, then the one
before, and so on. The first character it read is the last it writes: the dependency
spans the whole sequence, unlike copying, where each output is L steps after its input.
With ``min_length`` the string lengths vary in [min_length, length] and batches are padded
(id 0 is ``<pad>``) with ``lengths`` given.
"""

from __future__ import annotations

import string

import numpy as np

from microgradnn.data import IGNORE_INDEX, DataError, Examples, SequenceData, Vocab

__all__ = ["reverse"]

_SYMBOLS = string.ascii_lowercase


def _check(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DataError(f"reverse: {name} must be an int >= {low}, got {value!r}")
    return value


def reverse(length: int = 8, min_length: int | None = None, num_symbols: int = 10, train_size: int = 10000,
            val_size: int = 1000, seed: int = 0) -> SequenceData:
    """Strings of ``num_symbols`` letters, ``length`` long (or ``min_length``..``length``),
    and their reversal. ``seed`` fixes the data (training and validation from independent
    streams). Task "lm" (a prediction per step); baseline accuracy 1 / num_symbols."""
    length = _check("length", length, 1)
    if min_length is not None:
        min_length = _check("min_length", min_length, 1)
        if min_length > length:
            raise DataError(f"reverse: min_length ({min_length}) must not exceed length ({length})")
    num_symbols = _check("num_symbols", num_symbols, 2)
    if num_symbols > len(_SYMBOLS):
        raise DataError(f"reverse: num_symbols must be at most {len(_SYMBOLS)}, got {num_symbols}")
    train_size = _check("train_size", train_size, 1)
    val_size = _check("val_size", val_size, 0)
    seed = _check("seed", seed, 0)
    # <pad> is id 0, then "_" (blank), the symbols, and "=" (the delimiter).
    vocab = Vocab(["_"] + list(_SYMBOLS[:num_symbols]) + ["="], pad=True, unk=False)
    blank, delimiter = vocab.stoi["_"], vocab.stoi["="]
    first_symbol = vocab.stoi[_SYMBOLS[0]]
    total = 2 * length

    def make(n: int, rng: np.random.Generator) -> Examples:
        lens = np.full(n, length) if min_length is None else rng.integers(min_length, length + 1, size=n)
        xs, ys = [], np.full((n, total), IGNORE_INDEX, dtype=np.int64)
        for i, k in enumerate(lens):
            s = rng.integers(first_symbol, first_symbol + num_symbols, size=k)
            x = np.concatenate([s, [delimiter], np.full(k - 1, blank)]).astype(np.int64)
            xs.append(x)
            ys[i, k: 2 * k] = s[::-1]
        if min_length is None:
            return Examples(np.stack(xs), ys)
        return Examples(xs, ys)

    val = make(val_size, np.random.default_rng([seed, 1])) if val_size else None
    return SequenceData(make(train_size, np.random.default_rng([seed, 0])), val, "lm", len(vocab),
                        name="reverse", vocab=vocab, info={"length": length, "baseline_accuracy": 1 / num_symbols})
