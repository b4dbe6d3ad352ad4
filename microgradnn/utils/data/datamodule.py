"""A spec dataset's split as a map-style :class:`~microgradnn.utils.data.Dataset`.

The spec's datasets (:mod:`microgradnn.data`) batch themselves for the trainer. To use
one with a :class:`~microgradnn.utils.data.DataLoader` instead, take a split as a dataset::

    data = mg.data.parity(seq_len=12)
    train = data.as_dataset("train")          # item i: (x_i, y_i), x_i at its own length
    loader = DataLoader(train, batch_size=32, shuffle=True, collate_fn=train.collate)
    for x, y, lengths in loader:              # padded batch-first, as the trainer's batches
        out, _ = model(x, lengths=lengths)

Splits held as examples in memory (``SequenceData``: csv, jsonl, adding, copy, parity) are
read item by item; any other DataModule (``charlm``'s streams, a plugin's) is read once
through its own ``train_batches(1)`` / ``val_batches(1)`` (the train split in epoch 0's
order of seed 0), so every DataModule works.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...tensor import from_numpy
from .dataset import Dataset

__all__ = ["DataModuleDataset", "pad_collate"]

_SPLITS = ("train", "val")


class DataModuleDataset(Dataset):
    """Split ``split`` ("train" or "val") of a DataModule; item i is ``(x, y)`` tensors,
    ``x`` (T_i,) tokens or (T_i, F) features at the sequence's real length."""

    def __init__(self, data_module: Any, split: str = "train") -> None:
        if split not in _SPLITS:
            raise ValueError(f"as_dataset: split must be one of {_SPLITS}, got {split!r}")
        self.data_module, self.split = data_module, split
        self.task = getattr(data_module, "task", None)
        vocab = getattr(data_module, "vocab", None)
        examples = getattr(data_module, split, None)
        self._examples = examples if hasattr(examples, "batch") and hasattr(examples, "lengths") else None
        self._items: list | None = None
        if self._examples is None:
            batches = data_module.train_batches(1, 0, 0) if split == "train" else data_module.val_batches(1)
            self._items = [_one(b) for b in batches]
        self.pad_value = getattr(self._examples, "pad_value", None)
        if self.pad_value is None:
            self.pad_value = vocab.pad_id if vocab is not None and hasattr(vocab, "pad_id") else 0

    def __len__(self) -> int:
        return len(self._examples) if self._examples is not None else len(self._items)

    def __getitem__(self, index: int) -> tuple:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for a dataset of {n} items")
        if self._items is not None:
            return self._items[index]
        return _one(self._examples.batch(np.array([index % n])))

    def collate(self, batch: list) -> tuple:
        """``[(x, y), ...]`` -> ``(x, y, lengths)``, see :func:`pad_collate`."""
        return pad_collate(batch, pad_value=self.pad_value, per_step_targets=self.task == "lm")


def _one(batch: Any) -> tuple:
    """A batch of one -> ``(x, y)`` tensors with the padding cut off."""
    x, y = batch.x[0], batch.y[0]  # a batch of one is padded to its own length: no padding
    return from_numpy(np.array(x)), from_numpy(np.array(y))  # np.array keeps a 0-d target 0-d


def pad_collate(batch: list, pad_value: float = 0, per_step_targets: bool = False,
                ignore_index: int = -100) -> tuple:
    """``[(x_i, y_i), ...]`` -> ``(x, y, lengths)``: ``x`` padded batch-first to the longest
    sequence with ``pad_value``, ``lengths`` (B,) int64 the real lengths, ``y`` stacked, or
    (``per_step_targets``) padded with ``ignore_index`` as the losses expect."""
    xs = [item[0].numpy() for item in batch]
    ys = [item[1].numpy() for item in batch]
    lengths = np.array([len(x) for x in xs], dtype=np.int64)
    longest = int(lengths.max())
    x = np.full((len(xs), longest) + xs[0].shape[1:], pad_value, dtype=xs[0].dtype)
    for row, seq in enumerate(xs):
        x[row, : len(seq)] = seq
    if per_step_targets:
        y = np.full((len(ys), longest) + ys[0].shape[1:], ignore_index, dtype=ys[0].dtype)
        for row, seq in enumerate(ys):
            y[row, : len(seq)] = seq
    else:
        y = np.stack(ys)
    return from_numpy(x), from_numpy(y), from_numpy(lengths)
