"""Datasets: what a spec's ``data:`` section names, and the :class:`DataModule` they return.

Built-in factories (each registered under the ``microgradnn.datasets`` entry-point group):

=========  ==================================================================================
charlm     character-level language modelling over local text, or ``corpus: stdlib``
text       the same over your own files (``paths`` required)
csv        sequence classification / regression from a CSV column of text or numbers
jsonl      the same from JSON lines
adding     the adding problem (regression, 2 features per step)
copy       the copy task (per-step classification after a delay)
parity     bit-sequence parity (classification)
seq2seq    translation pairs from a TSV (source -> target; word or character vocabularies)
forecast   windows of a numeric series from a CSV (context steps -> the next horizon steps)
=========  ==================================================================================

``factory(**options) -> DataModule``; see :mod:`microgradnn.data.base` for the batch layout.
A dataset plugin is any callable returning an object with the DataModule attributes and
methods (subclassing :class:`DataModule` or :class:`SequenceData` is the easy way).
"""

from __future__ import annotations

from .base import IGNORE_INDEX, TASKS, Batch, DataError, DataFileError, DataModule, epoch_rng
from .sequences import Examples, SequenceData
from .synthetic import adding, copy, parity
from .tabular import csv, jsonl
from .forecast import ForecastData, Normalizer, forecast
from .seq2seq import Seq2SeqBatch, Seq2SeqData, TokenVocab, seq2seq
from .text import CharLMData, charlm, stdlib_files, text
from .vocab import PAD, UNK, Vocab

__all__ = [
    "Batch", "DataModule", "DataError", "DataFileError", "IGNORE_INDEX", "TASKS", "epoch_rng",
    "Vocab", "PAD", "UNK", "Examples", "SequenceData", "CharLMData", "stdlib_files",
    "charlm", "text", "csv", "jsonl", "adding", "copy", "parity",
    "seq2seq", "Seq2SeqData", "Seq2SeqBatch", "TokenVocab", "forecast", "ForecastData", "Normalizer",
]
