"""What every dataset hands the trainer: :class:`Batch` and the :class:`DataModule` contract.

A *factory* (``charlm(...)``, ``csv(...)``, ``adding(...)``, or a plugin's) reads or makes
the data once and returns a :class:`DataModule`. The trainer then only asks it for batches:

* ``train_batches(batch_size, epoch, seed)``: an iterator of :class:`Batch`. The order
  depends on nothing but those three numbers, so a resumed run can skip to batch k of
  epoch e and see exactly what an uninterrupted run would have seen (``start=k`` does the
  skipping without building the skipped batches).
* ``val_batches(batch_size)``: always the same batches, in the same order.

Batches are plain numpy arrays, batch-first:

====================  ==============================  ==============  ===============================
task                  x                               y               lengths
====================  ==============================  ==============  ===============================
``lm``                (B, T) int64 tokens             (B, T) int64    None for streams (charlm), else
                                                                      (B,) int64 (copy)
``classification``    (B, T) int64 padded with 0,     (B,) int64      (B,) int64
                      or (B, T, F) float32
``regression``        as classification               (B, k) float32  (B,) int64
====================  ==============================  ==============  ===============================

Per-step targets (``lm``) may hold :data:`IGNORE_INDEX` (-100, PyTorch's
``ignore_index`` default) at positions that are not scored; losses and metrics skip them.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple

import numpy as np

from ..tasks import TASKS  # the known tasks, declared once

__all__ = ["Batch", "DataModule", "DataError", "DataFileError", "IGNORE_INDEX", "TASKS", "epoch_rng"]

#: Target value that losses and metrics skip (PyTorch's ``ignore_index`` default).
IGNORE_INDEX = -100



class DataError(ValueError):
    """Bad data or bad dataset options: the message says what, where, and what is allowed."""


class DataFileError(DataError, FileNotFoundError):
    """A data file or folder that does not exist (the message names the path)."""


class Batch(NamedTuple):
    """One batch: ``x`` inputs, ``y`` targets, ``lengths`` real length of each row (or None
    when every row is full length)."""

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray | None = None


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random generator for one epoch's data order: a pure function of (seed, epoch).

    numpy's ``SeedSequence`` mixes the pair into independent streams, so epoch 3 of seed 0
    and epoch 0 of seed 3 do not share an order."""
    for name, value in (("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{name} must be a non-negative int, got {value!r}")
    return np.random.default_rng([int(seed), int(epoch)])


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def check_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """A clear error for an option that must be an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0 or math.isnan(value):
        raise DataError(f"{owner}: {name} must be a number in [0, 1), got {value!r}")
    return float(value)


class DataModule:
    """The contract between a dataset and the trainer (subclasses fill it in).

    Attributes:
        name: the dataset's registry name (for messages and the run summary).
        task: "lm" (a target per step), "classification" (a class per sequence) or
            "regression" (k numbers per sequence).
        vocab: the :class:`~microgradnn.data.Vocab` of token inputs, or None for float
            inputs. ``len(vocab)`` is the embedding's size; ``vocab.pad_id`` its padding_idx.
        input_size: features per step for float inputs, else None.
        output_size: lm: number of token classes; classification: number of classes;
            regression: number of targets.
        class_names: the classes' names (classification), else None.
        streams: True when row b of batch k+1 continues row b of batch k (a character
            stream): then the trainer may carry the hidden state across batches
            (truncated BPTT). False when every batch holds fresh, independent sequences.
    """

    name: str = "data"
    task: str = "classification"
    vocab: Any = None
    input_size: int | None = None
    output_size: int = 0
    class_names: list[str] | None = None
    streams: bool = False

    def train_batches(self, batch_size: int, epoch: int = 0, seed: int = 0, start: int = 0) -> Iterator[Batch]:
        """The training batches of one epoch; deterministic given (batch_size, epoch, seed).
        ``start`` skips the first ``start`` batches (for resuming mid-epoch)."""
        raise NotImplementedError

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        """The validation batches, the same every time (empty when there is no validation split)."""
        raise NotImplementedError

    def num_train_batches(self, batch_size: int) -> int:
        raise NotImplementedError

    def num_val_batches(self, batch_size: int) -> int:
        raise NotImplementedError

    @property
    def has_val(self) -> bool:
        return self.num_val_batches(1) > 0

    @property
    def vocab_size(self) -> int | None:
        """``len(vocab)`` for token inputs, None for float inputs."""
        return None if self.vocab is None else len(self.vocab)

    def describe(self) -> dict[str, Any]:
        """A few facts for a run summary (sizes, vocabulary, classes)."""
        info: dict[str, Any] = {"dataset": self.name, "task": self.task, "output_size": self.output_size}
        if self.vocab is not None:
            info["vocab_size"] = len(self.vocab)
        if self.input_size is not None:
            info["input_size"] = self.input_size
        if self.class_names is not None:
            info["classes"] = list(self.class_names)
        return info

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "classes")
        return f"{type(self).__name__}({facts})"
