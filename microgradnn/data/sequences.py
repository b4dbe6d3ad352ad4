"""``SequenceData``: a DataModule over sequences held in memory (CSV/JSONL rows, synthetic tasks).

Each example is one sequence (token ids (T_i,) or float features (T_i, F)) and one target.
Every epoch shuffles the examples with a generator seeded by (seed, epoch); each batch is
padded to its longest sequence and comes with the real ``lengths``, so the recurrent layers
keep padding out of the final state (see :func:`microgradnn.nn.run_sequence`).

``bucket=True`` sorts examples by length inside windows of 32 batches before cutting
batches (then shuffles the batch order): batches hold sequences of similar length, so
less time goes into padding. It changes which examples share a batch, nothing else.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .base import IGNORE_INDEX, TASKS, Batch, DataError, DataModule, check_batch_size, epoch_rng

__all__ = ["SequenceData", "Examples"]

_BUCKET_WINDOW = 32  # batches per sorting window when bucket=True


class Examples:
    """Sequences and targets, stored for fast batching.

    ``xs``: an array (N, T) / (N, T, F) when all sequences share one length, or a list of
    N arrays (T_i,) / (T_i, F). ``ys``: (N,) int64 classes, (N, k) float32 targets, or
    (N, T) int64 per-step targets (padded with IGNORE_INDEX)."""

    def __init__(self, xs: np.ndarray | Sequence[np.ndarray], ys: np.ndarray, pad_value: float = 0) -> None:
        self.pad_value = pad_value
        if isinstance(xs, np.ndarray):
            self.fixed: np.ndarray | None = xs
            self.seqs: list[np.ndarray] | None = None
            if xs.ndim < 2:
                raise DataError(f"sequences must be (N, T) or (N, T, F), got shape {xs.shape}")
            self.lengths = np.full(xs.shape[0], xs.shape[1], dtype=np.int64)
        else:
            self.fixed = None
            self.seqs = list(xs)
            self.lengths = np.array([len(s) for s in self.seqs], dtype=np.int64)
        self.ys = ys
        if len(self.lengths) != len(ys):
            raise DataError(f"{len(self.lengths)} sequences but {len(ys)} targets")

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray) -> Batch:
        y = self.ys[idx]
        if self.fixed is not None:
            return Batch(self.fixed[idx], y, self.lengths[idx].copy())
        lengths = self.lengths[idx]
        T = int(lengths.max())
        first = self.seqs[int(idx[0])]
        x = np.full((len(idx), T) + first.shape[1:], self.pad_value, dtype=first.dtype)
        for row, i in enumerate(idx):
            s = self.seqs[int(i)]
            x[row, : len(s)] = s
        if y.ndim == 2 and y.dtype == np.int64 and self.ys.shape[1] != T:
            y = y[:, :T]  # per-step targets padded to the longest sequence overall
        return Batch(x, y, lengths.copy())


class SequenceData(DataModule):
    """Batches of whole sequences, shuffled per epoch (see the module docstring)."""

    streams = False

    def __init__(self, train: Examples, val: Examples | None, task: str, output_size: int, *,
                 name: str = "sequences", vocab: Any = None, input_size: int | None = None,
                 class_names: list[str] | None = None, bucket: bool = False,
                 info: dict[str, Any] | None = None) -> None:
        if task not in TASKS:
            raise DataError(f"{name}: task must be one of {tuple(TASKS)}, got {task!r}")
        if len(train) == 0:
            raise DataError(f"{name}: no training examples")
        self.name, self.task, self.output_size = name, task, output_size
        self.vocab, self.input_size, self.class_names = vocab, input_size, class_names
        self.train, self.val = train, val
        self.bucket = bool(bucket)
        self._info = dict(info or {})

    def num_train_batches(self, batch_size: int) -> int:
        return -(-len(self.train) // check_batch_size(batch_size))

    def num_val_batches(self, batch_size: int) -> int:
        return 0 if self.val is None else -(-len(self.val) // check_batch_size(batch_size))

    def _order(self, batch_size: int, epoch: int, seed: int) -> list[np.ndarray]:
        """The epoch's batches as index arrays: a pure function of (batch_size, epoch, seed)."""
        rng = epoch_rng(seed, epoch)
        perm = rng.permutation(len(self.train))
        if not self.bucket:
            return [perm[i: i + batch_size] for i in range(0, perm.size, batch_size)]
        window = batch_size * _BUCKET_WINDOW
        batches = []
        for w in range(0, perm.size, window):
            chunk = perm[w: w + window]
            chunk = chunk[np.argsort(self.train.lengths[chunk], kind="stable")]
            batches.extend(chunk[i: i + batch_size] for i in range(0, chunk.size, batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def train_batches(self, batch_size: int, epoch: int = 0, seed: int = 0, start: int = 0) -> Iterator[Batch]:
        order = self._order(check_batch_size(batch_size), epoch, seed)
        return (self.train.batch(idx) for idx in order[start:])

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        batch_size = check_batch_size(batch_size)
        if self.val is None:
            return iter(())
        n = len(self.val)
        return (self.val.batch(np.arange(i, min(i + batch_size, n))) for i in range(0, n, batch_size))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(train_examples=len(self.train), val_examples=0 if self.val is None else len(self.val))
        info.update(self._info)
        return info


def per_step_targets(ys: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stack per-step target rows, padding with IGNORE_INDEX to ``length``."""
    out = np.full((len(ys), length), IGNORE_INDEX, dtype=np.int64)
    for i, y in enumerate(ys):
        out[i, : len(y)] = y
    return out
