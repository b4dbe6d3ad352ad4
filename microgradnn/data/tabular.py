"""Sequence classification and regression from CSV or JSONL files: ``csv`` and ``jsonl``.

Each row holds one input sequence and its label:

* ``text_column``: a string, read as characters (ids from a :class:`Vocab` built on the
  training rows; padding id 0, unknown characters -> ``<unk>``);
* or ``sequence_column``: numbers, a float sequence. In JSONL a list (``[0.1, 0.5, 2]``, one
  feature per step) or a list of lists (``[[0.1, 1], [0.5, 0]]``, F features per step); in
  either format a string ``"0.1 0.5 2"`` / ``"0.1,0.5,2"`` (one feature per step) or
  ``"0.1,1; 0.5,0"`` (steps split by ``;``, features by ``,`` or spaces).
* ``label_column``: a class name (``task: classification``), or a number (``regression``;
  several targets: a list of columns, or a JSON list in one column).

Validation rows come from ``val_path`` or, without one, a ``val_fraction`` of the rows
picked by a generator seeded with ``seed`` (the split never depends on the training seed).
"""

from __future__ import annotations

import csv as _csv
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..fileio import not_a_file_reason
from .base import DataError, DataFileError, check_fraction, check_int
from .sequences import Examples, SequenceData
from .vocab import Vocab, as_vocab

__all__ = ["csv", "jsonl", "read_table"]

_SPLIT = re.compile(r"[,\s]+")


class _Table:
    """Rows of a CSV/JSONL file: ``rows`` as (line number, dict), ``columns`` as seen."""

    def __init__(self, path: Path, rows: list[tuple[int, dict]], columns: list[str]) -> None:
        self.path, self.rows, self.columns = path, rows, columns


def read_table(path: str | os.PathLike, fmt: str, delimiter: str | None = None, encoding: str = "utf-8",
               owner: str | None = None) -> _Table:
    """Read a CSV (header row first) or JSONL (one JSON object per line) file."""
    owner = owner or fmt
    p = Path(path).expanduser()
    if not p.is_file():
        reason = not_a_file_reason(p)
        if reason == "does not exist":
            raise DataFileError(f"{owner}: data file {os.fspath(path)!r} not found (resolved to {str(p.resolve())!r})")
        raise DataError(f"{owner}: data file {os.fspath(path)!r} {reason}")
    rows: list[tuple[int, dict]] = []
    if fmt == "csv":
        if delimiter is None:
            delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
        with open(p, newline="", encoding=encoding, errors="replace") as f:
            reader = _csv.DictReader(f, delimiter=delimiter)
            columns = list(reader.fieldnames or [])
            if not columns:
                raise DataError(f"{owner}: {os.fspath(path)!r} is empty (a CSV file needs a header row)")
            for row in reader:
                if None in row:
                    raise DataError(f"{owner}: {os.fspath(path)!r} line {reader.line_num}: more fields than the "
                                    f"{len(columns)} columns of the header")
                rows.append((reader.line_num, row))
    else:
        columns = []
        seen: set = set()
        with open(p, encoding=encoding, errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{owner}: {os.fspath(path)!r} line {number} is not valid JSON: {e.msg}") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{owner}: {os.fspath(path)!r} line {number}: expected a JSON object "
                                    f"{{\"column\": value, ...}}, got {type(obj).__name__}")
                for k in obj:
                    if k not in seen:
                        seen.add(k)
                        columns.append(k)
                rows.append((number, obj))
    if not rows:
        raise DataError(f"{owner}: {os.fspath(path)!r} holds no rows")
    return _Table(p, rows, columns)


def _missing_column(owner: str, table: _Table, option: str, column: str) -> DataError:
    close = difflib.get_close_matches(column, table.columns, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return DataError(f"{owner}: {option}={column!r} is not a column of {str(table.path)!r}{hint}; "
                     f"columns are: {', '.join(map(repr, table.columns))}")


def _cell(owner: str, table: _Table, line: int, row: dict, column: str) -> Any:
    if column not in row:
        raise DataError(f"{owner}: {str(table.path)!r} line {line} has no {column!r}; its keys are: "
                        f"{', '.join(map(repr, row))}")
    value = row[column]
    if value is None or (isinstance(value, str) and value == ""):
        raise DataError(f"{owner}: {str(table.path)!r} line {line}: column {column!r} is empty")
    return value


def _numbers(owner: str, where: str, value: Any) -> np.ndarray:
    """A number-sequence cell -> float32 (T, F)."""
    try:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            if ";" in text:
                steps = [[float(v) for v in _SPLIT.split(s.strip()) if v] for s in text.split(";") if s.strip()]
            else:
                steps = [[float(v)] for v in _SPLIT.split(text) if v]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            steps = [[float(value)]]
        elif isinstance(value, list):
            steps = [[float(v) for v in s] if isinstance(s, list) else [float(s)] for s in value]
        else:
            raise TypeError(type(value).__name__)
        wide = np.asarray(steps, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{owner}: {where}: expected a sequence of numbers, got {str(value)[:60]!r}") from None
    arr = _fit_float32(owner, where, "the sequence", wide)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{owner}: {where}: expected a non-empty sequence with the same number of features at every "
                        f"step, got {str(value)[:60]!r}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{owner}: {where}: the sequence holds NaN or infinity")
    return arr


def _targets(owner: str, where: str, values: list) -> list[float]:
    out: list[float] = []
    for v in values:
        items = v if isinstance(v, list) else (_SPLIT.split(v.strip()) if isinstance(v, str) else [v])
        for item in items:
            try:
                if isinstance(item, bool):
                    raise ValueError
                out.append(float(item))
            except (TypeError, ValueError):
                raise DataError(f"{owner}: {where}: a regression label must be a number, got {item!r}") from None
    _fit_float32(owner, where, "the label", np.asarray(out, dtype=np.float64))
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fit_float32(owner: str, where: str, what: str, values: np.ndarray) -> np.ndarray:
    """``values`` as float32, the training dtype, refusing what it cannot hold: NaN and
    infinity, and finite numbers beyond float32's range (1e39 would become inf, and the
    loss would blow up far from the line that caused it)."""
    if not np.all(np.isfinite(values)):
        raise DataError(f"{owner}: {where}: {what} holds NaN or infinity")
    too_big = np.abs(values) > _FLOAT32_MAX
    if np.any(too_big):
        raise DataError(f"{owner}: {where}: {what} holds {values[too_big].flat[0]:g}, which does not fit float32 "
                        f"(the training dtype; its largest value is {_FLOAT32_MAX:.4g}): rescale the column")
    return values.astype(np.float32)


def _label_key(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _sort_classes(keys: Iterable[str]) -> list[str]:
    keys = sorted(set(keys))
    try:  # numeric labels in numeric order ("2" before "10")
        return sorted(keys, key=lambda k: float(k))
    except ValueError:
        return keys


def _parse(owner: str, table: _Table, input_column: str, as_text: bool, labels: list[str], task: str,
           max_len: int | None, lowercase: bool) -> tuple[list, list]:
    inputs, targets = [], []
    for line, row in table.rows:
        where = f"{str(table.path)!r} line {line}"
        value = _cell(owner, table, line, row, input_column)
        if as_text:
            if not isinstance(value, str):
                raise DataError(f"{owner}: {where}: text_column {input_column!r} must hold text, got {value!r}")
            value = value.lower() if lowercase else value
            inputs.append(value[:max_len] if max_len else value)
        else:
            seq = _numbers(owner, f"{where}, column {input_column!r}", value)
            inputs.append(seq[:max_len] if max_len else seq)
        cells = [_cell(owner, table, line, row, c) for c in labels]
        if task == "classification":
            targets.append(_label_key(cells[0]))
        else:
            targets.append(_targets(owner, f"{where}, label", cells))
    return inputs, targets


def _load(fmt: str, path: str, text_column: str | None, sequence_column: str | None, label_column: str | list[str],
          task: str, val_path: str | None, val_fraction: float, seed: int, max_len: int | None, lowercase: bool,
          min_freq: int, classes: list[str] | None, bucket: bool, delimiter: str | None, vocab: Any,
          encoding: str) -> SequenceData:
    owner = fmt
    if task not in ("classification", "regression"):
        raise DataError(f"{owner}: task must be 'classification' or 'regression', got {task!r}")
    if text_column is not None and sequence_column is not None:
        raise DataError(f"{owner}: give text_column (characters) or sequence_column (numbers), not both")
    val_fraction = check_fraction(owner, "val_fraction", val_fraction)
    seed = check_int(owner, "seed", seed, 0)
    min_freq = check_int(owner, "min_freq", min_freq, 1)
    if max_len is not None:
        max_len = check_int(owner, "max_len", max_len, 1)
    labels = [label_column] if isinstance(label_column, str) else list(label_column or [])
    if not labels or not all(isinstance(c, str) for c in labels):
        raise DataError(f"{owner}: label_column must be a column name (or, for regression, a list of them), got {label_column!r}")
    if task == "classification" and len(labels) != 1:
        raise DataError(f"{owner}: classification takes one label_column, got {labels}")

    table = read_table(path, fmt, delimiter, encoding, owner)
    val_table = read_table(val_path, fmt, delimiter, encoding, owner) if val_path is not None else None
    if text_column is None and sequence_column is None:
        if "text" not in table.columns:
            raise DataError(f"{owner}: say which column holds the input: text_column (characters) or sequence_column "
                            f"(numbers); columns are: {', '.join(map(repr, table.columns))}")
        text_column = "text"
    as_text = text_column is not None
    input_column = text_column if as_text else sequence_column
    for t in [table] + ([val_table] if val_table else []):
        if fmt == "csv":  # JSONL rows may differ in keys; those are checked row by row
            for option, column in [("text_column" if as_text else "sequence_column", input_column)] + \
                    [("label_column", c) for c in labels]:
                if column not in t.columns:
                    raise _missing_column(owner, t, option, column)
        elif not any(input_column in row for _, row in t.rows):
            raise _missing_column(owner, t, "text_column" if as_text else "sequence_column", input_column)
        elif not any(labels[0] in row for _, row in t.rows):
            raise _missing_column(owner, t, "label_column", labels[0])

    xs, ys = _parse(owner, table, input_column, as_text, labels, task, max_len, lowercase)
    if val_table is not None:
        vx, vy = _parse(owner, val_table, input_column, as_text, labels, task, max_len, lowercase)
        tx, ty = xs, ys
    else:
        n = len(xs)
        n_val = int(round(n * val_fraction))
        if val_fraction > 0 and n_val == 0 and n >= 2:
            n_val = 1
        if n - n_val < 1:
            raise DataError(f"{owner}: {n} row(s) leave nothing to train on after a val_fraction={val_fraction} split")
        perm = np.random.default_rng(seed).permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        tx, ty = [xs[i] for i in train_idx], [ys[i] for i in train_idx]
        vx, vy = [xs[i] for i in val_idx], [ys[i] for i in val_idx]

    info: dict[str, Any] = {"path": os.fspath(path)}
    # Targets.
    if task == "classification":
        if classes is not None:
            if not isinstance(classes, (list, tuple)) or not classes:
                raise DataError(f"{owner}: classes must be a non-empty list of class names, got {classes!r}")
            class_names = [_label_key(c) for c in classes]
        else:
            class_names = _sort_classes(ty)
        if len(class_names) < 2 and classes is None:
            raise DataError(f"{owner}: label_column {labels[0]!r} holds a single class {class_names}; "
                            "classification needs at least two")
        index = {c: i for i, c in enumerate(class_names)}
        for split, targets in (("training", ty), ("validation", vy)):
            unknown = sorted(set(targets) - set(index))
            if unknown:
                raise DataError(f"{owner}: {split} label(s) {unknown[:5]} not among the classes {class_names}")
        y_train = np.array([index[c] for c in ty], dtype=np.int64)
        y_val = np.array([index[c] for c in vy], dtype=np.int64)
        output_size = len(class_names)
    else:
        class_names = None
        k = {len(t) for t in ty + vy}
        if len(k) != 1:
            raise DataError(f"{owner}: every row needs the same number of regression targets, found {sorted(k)}")
        output_size = k.pop()
        y_train = np.array(ty, dtype=np.float32).reshape(-1, output_size)
        y_val = np.array(vy, dtype=np.float32).reshape(-1, output_size)
    # Inputs.
    if as_text:
        given = as_vocab(vocab, owner)
        voc = given if given is not None else Vocab.build(tx, min_freq=min_freq, pad=True, unk=True)
        # A given vocabulary may have no padding entry: a pretrained character LM's has none
        # (its streams are never padded). Padding then reuses id 0, a real character; that is
        # harmless because every batch carries ``lengths`` and the recurrent layers stop each
        # row at its length, so padded steps reach neither the output nor the gradients.
        # (The model's embedding then has no padding_idx, exactly like the pretrained one.)
        pad_value = voc.pad_id if voc.pad_id is not None else 0
        train_x = [voc.encode_array(s) for s in tx]
        val_x = [voc.encode_array(s) for s in vx]
        input_size = None
        info["text_column"] = text_column
    else:
        voc = None
        pad_value = 0
        widths = {s.shape[1] for s in tx + vx}
        if len(widths) != 1:
            raise DataError(f"{owner}: every sequence needs the same number of features per step, found {sorted(widths)}")
        input_size = widths.pop()
        train_x, val_x = tx, vx
        info["sequence_column"] = sequence_column
    train = Examples(train_x, y_train, pad_value=pad_value)
    val = Examples(val_x, y_val, pad_value=pad_value) if len(val_x) else None
    return SequenceData(train, val, task, output_size, name=owner, vocab=voc, input_size=input_size,
                        class_names=class_names, bucket=bucket, info=info)


def csv(path: str, text_column: str | None = None, label_column: str | list[str] = "label",
        task: str = "classification", sequence_column: str | None = None, val_path: str | None = None,
        val_fraction: float = 0.1, seed: int = 0, max_len: int | None = None, lowercase: bool = False,
        min_freq: int = 1, classes: list[str] | None = None, bucket: bool = False, delimiter: str | None = None,
        vocab: Any = None, encoding: str = "utf-8") -> SequenceData:
    """Sequence classification/regression from a CSV file with a header row (``.tsv``: tabs).

    Args:
        path: the CSV file.
        text_column: column of text, read as characters (default: a column named "text").
        sequence_column: column of numbers, read as a float sequence (instead of text).
        label_column: the label's column (regression: a list of columns for several targets).
        task: "classification" or "regression".
        val_path: a separate validation file with the same columns; else ``val_fraction``
            of the rows, chosen with ``seed``.
        max_len: keep at most this many characters/steps of each sequence.
        lowercase: lowercase text first.
        min_freq: rarer characters map to ``<unk>``.
        classes: the class names in output order (default: sorted; numeric labels numerically).
        bucket: batch sequences of similar length together (faster; see SequenceData).
        delimiter: field separator (default "," or, for .tsv, a tab).
        vocab: reuse a vocabulary (Vocab, ``to_dict()`` dict, or JSON path), e.g. a
            pretrained language model's; one without a padding entry works too (padding
            then reuses id 0, which ``lengths`` keeps out of the computation).
    """
    return _load("csv", path, text_column, sequence_column, label_column, task, val_path, val_fraction, seed,
                 max_len, lowercase, min_freq, classes, bucket, delimiter, vocab, encoding)


def jsonl(path: str, text_column: str | None = None, label_column: str | list[str] = "label",
          task: str = "classification", sequence_column: str | None = None, val_path: str | None = None,
          val_fraction: float = 0.1, seed: int = 0, max_len: int | None = None, lowercase: bool = False,
          min_freq: int = 1, classes: list[str] | None = None, bucket: bool = False, vocab: Any = None,
          encoding: str = "utf-8") -> SequenceData:
    """Sequence classification/regression from a JSON-lines file (one object per line).
    Options as :func:`csv`; a number sequence may be a JSON list (of lists, for several
    features per step), a regression label a number or a JSON list of numbers."""
    return _load("jsonl", path, text_column, sequence_column, label_column, task, val_path, val_fraction, seed,
                 max_len, lowercase, min_freq, classes, bucket, None, vocab, encoding)
