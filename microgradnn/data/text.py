"""Character-level language modelling: ``charlm`` (files, folders, or the stdlib corpus).

The corpus is read once into one long array of character ids. The first
``1 - val_fraction`` of it trains, the rest validates (as char-rnn and nanoGPT's
shakespeare_char do: the validation text is text the model never saw, not a random
sprinkle of characters from the middle of training text).

How batches are cut (the "B parallel streams" layout)
-----------------------------------------------------
For a batch size B, the training text is cut into B equal, contiguous streams, stacked as
rows. Batch k is columns ``[k*T, (k+1)*T)`` of those rows (T = ``seq_len``), and its targets
are the same window shifted one character right (the next character at every step)::

    stream 0: |  batch 0  |  batch 1  |  batch 2  | ...
    stream 1: |  batch 0  |  batch 1  |  batch 2  | ...
    ...

So row b of batch k+1 continues row b of batch k exactly where it stopped: a trainer can
carry each row's hidden state into the next batch (truncated backpropagation through
time, ``train.tbptt``) and the network effectively reads every stream from start to end.
Each epoch starts the streams at a different random offset in [0, T), a pure function
of (seed, epoch), so chunk boundaries move between epochs while the order stays
reproducible.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..fileio import glob_files, not_a_file_reason
from .base import (Batch, DataError, DataFileError, DataModule, check_batch_size, check_fraction, check_int,
                   epoch_rng)
from .vocab import Vocab, as_vocab

__all__ = ["CharLMData", "charlm", "text", "read_corpus", "stdlib_files"]

# Folders of the standard library that are not the library itself: third-party packages
# installed next to it, and the CPython test suite (large, full of deliberately odd text).
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_GLOB_CHARS = set("*?[")


def stdlib_files() -> list[Path]:
    """The running Python's standard-library ``.py`` files, sorted by relative path.

    ``sysconfig.get_paths()["stdlib"]`` is the folder ``import os`` came from (also inside a
    virtual environment). Installed third-party packages and the test suite are left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataFileError(f"charlm: the standard library folder {str(root)!r} does not exist on this machine")
    files = [p for p in root.rglob("*.py")
             if p.is_file() and not _STDLIB_SKIP.intersection(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts)


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(8192)


def _expand(entry: str | os.PathLike, owner: str) -> list[Path]:
    """One ``paths`` entry -> the text files it names (a file, a folder walked recursively,
    or a glob pattern such as ``"notes/**/*.md"``), in sorted order."""
    text = os.fspath(entry)
    path = Path(text).expanduser()
    if _GLOB_CHARS.intersection(text):
        # glob_files, not glob.glob: "**" must not loop forever through a symlinked folder
        files = [m for m in glob_files(text) if not _looks_binary(m)]
        if not files:
            raise DataFileError(f"{owner}: no text files match the pattern {text!r} (looked from {os.getcwd()!r})")
        return files
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file() and not _is_hidden(p, path)),
                       key=lambda p: p.relative_to(path).as_posix())
        files = [p for p in files if not _looks_binary(p)]
        if not files:
            raise DataError(f"{owner}: the folder {text!r} holds no text files")
        return files
    if path.is_file():
        if _looks_binary(path):
            raise DataError(f"{owner}: {text!r} is a binary file, not text")
        return [path]
    reason = not_a_file_reason(path)
    if reason is not None and reason != "does not exist":  # a device, a FIFO, a socket, a symlink loop
        raise DataError(f"{owner}: {text!r} {reason}: give text files or folders of them")
    raise DataFileError(f"{owner}: no such file or folder: {text!r} (resolved to {str(path.resolve())!r})")


def read_corpus(files: Sequence[Path], max_chars: int | None = None, encoding: str = "utf-8") -> str:
    """The files' text joined with a blank line between files, cut at ``max_chars``.

    Undecodable bytes become U+FFFD rather than stopping the run."""
    parts: list[str] = []
    total = 0
    for f in files:
        if max_chars is not None and total >= max_chars:
            break
        text = Path(f).read_text(encoding=encoding, errors="replace")
        if parts:
            text = "\n\n" + text
        if max_chars is not None:
            text = text[: max_chars - total]
        parts.append(text)
        total += len(text)
    return "".join(parts)


class CharLMData(DataModule):
    """Character streams for language modelling (see the module docstring for the layout).

    ``train_ids`` / ``val_ids``: the two halves of the corpus as int64 id arrays."""

    task = "lm"
    streams = True

    def __init__(self, train_ids: np.ndarray, val_ids: np.ndarray, vocab: Vocab, seq_len: int,
                 name: str = "charlm", source: str = "") -> None:
        self.name = name
        self.vocab = vocab
        self.output_size = len(vocab)
        self.seq_len = seq_len
        self.train_ids = np.ascontiguousarray(train_ids, dtype=np.int64)
        self.val_ids = np.ascontiguousarray(val_ids, dtype=np.int64)
        self.source = source

    # -- training ---------------------------------------------------------------------------
    def _stream_len(self, batch_size: int) -> int:
        # Room for the largest epoch offset (seq_len - 1) and the one-step target shift.
        return (self.train_ids.size - self.seq_len) // batch_size

    def num_train_batches(self, batch_size: int) -> int:
        batch_size = check_batch_size(batch_size)
        return max(self._stream_len(batch_size), 0) // self.seq_len

    def train_batches(self, batch_size: int, epoch: int = 0, seed: int = 0, start: int = 0) -> Iterator[Batch]:
        batch_size = check_batch_size(batch_size)
        n = self.num_train_batches(batch_size)
        if n == 0:
            need = batch_size * self.seq_len + self.seq_len
            raise DataError(f"{self.name}: the training text ({self.train_ids.size} characters) is too short for one batch "
                            f"of batch_size={batch_size} x seq_len={self.seq_len} (needs {need}); "
                            "lower train.batch_size or data.seq_len, or add text")
        offset = int(epoch_rng(seed, epoch).integers(0, self.seq_len))
        return self._batches(self.train_ids, offset, batch_size, self._stream_len(batch_size), n, start)

    def _batches(self, ids: np.ndarray, offset: int, rows: int, length: int, count: int, start: int) -> Iterator[Batch]:
        T = self.seq_len
        # Row b is the stream starting at offset + b * length. Batch k reads T + 1 characters
        # of every row from column k * T (the extra one is the last step's target).
        index = offset + np.arange(rows)[:, None] * length + np.arange(T + 1)[None, :]
        for k in range(start, count):
            window = ids[index + k * T]
            yield Batch(window[:, :-1].copy(), window[:, 1:].copy(), None)

    # -- validation -------------------------------------------------------------------------
    def _val_layout(self, batch_size: int) -> tuple[int, int, int, int]:
        """(rows, stream length, batches, steps per batch) for the validation text: at most
        ``batch_size`` streams, fewer when the text is short, so it always gives a batch."""
        pairs = self.val_ids.size - 1  # (input, next character) pairs
        if pairs < 1:
            return 0, 0, 0, 0
        T = self.seq_len
        if pairs < T:
            return 1, pairs, 1, pairs
        rows = min(batch_size, pairs // T)
        length = pairs // rows
        return rows, length, length // T, T

    def num_val_batches(self, batch_size: int) -> int:
        return self._val_layout(check_batch_size(batch_size))[2]

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        rows, length, count, steps = self._val_layout(check_batch_size(batch_size))
        if count == 0:
            return iter(())
        if steps < self.seq_len:  # a validation text shorter than one window
            return iter([Batch(self.val_ids[None, :-1].copy(), self.val_ids[None, 1:].copy(), None)])
        return self._batches(self.val_ids, 0, rows, length, count, 0)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(train_chars=int(self.train_ids.size), val_chars=int(self.val_ids.size), seq_len=self.seq_len)
        if self.source:
            info["source"] = self.source
        return info


def charlm(paths: str | list[str] | None = None, corpus: str | None = None, seq_len: int = 128,
           val_fraction: float = 0.1, max_chars: int | None = None, min_freq: int = 1,
           encoding: str = "utf-8", vocab: Any = None) -> CharLMData:
    """Character-level language modelling over local text, or the standard library.

    Args:
        paths: a file, a folder (read recursively; hidden entries and binary files are
            skipped), a glob pattern (``"notes/**/*.txt"``), or a list of them. Files are
            read in sorted order, joined by a blank line.
        corpus: ``"stdlib"``: the running Python's own standard-library ``.py`` files
            (no download; its test suite and site-packages are left out). Give exactly
            one of ``paths`` and ``corpus``.
        seq_len: characters per training window (the truncated-BPTT length).
        val_fraction: share of the corpus, taken from its end, used for validation.
        max_chars: read at most this many characters (None: everything).
        min_freq: characters seen fewer times map to ``<unk>`` (keeps a large corpus'
            handful of exotic characters out of the softmax).
        vocab: reuse a vocabulary (a Vocab, its ``to_dict()``, or a JSON path), e.g. a
            trained model's, instead of building one from this text.
    """
    return _charlm("charlm", paths, corpus, seq_len, val_fraction, max_chars, min_freq, encoding, vocab)


def _charlm(owner: str, paths: Any, corpus: str | None, seq_len: int, val_fraction: float, max_chars: int | None,
            min_freq: int, encoding: str, vocab: Any) -> CharLMData:
    if (paths is None) == (corpus is None):
        raise DataError(f"{owner}: give exactly one of paths (files, folders or glob patterns) or corpus ('stdlib')")
    seq_len = check_int(owner, "seq_len", seq_len, 1)
    val_fraction = check_fraction(owner, "val_fraction", val_fraction)
    min_freq = check_int(owner, "min_freq", min_freq, 1)
    if max_chars is not None:
        max_chars = check_int(owner, "max_chars", max_chars, 2)
    if corpus is not None:
        if corpus != "stdlib":
            raise DataError(f"{owner}: unknown corpus {corpus!r}; the built-in corpus is 'stdlib'")
        files = stdlib_files()
        source = f"stdlib ({sysconfig.get_paths()['stdlib']})"
    else:
        entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not entries:
            raise DataError(f"{owner}: paths is empty")
        files = [f for e in entries for f in _expand(e, owner)]
        source = ", ".join(os.fspath(e) for e in entries)
    text = read_corpus(files, max_chars, encoding)
    if not text:
        raise DataError(f"{owner}: the corpus is empty ({source})")
    given = as_vocab(vocab, owner)
    voc = given if given is not None else Vocab.build(text, min_freq=min_freq, pad=False, unk=True)
    ids = voc.encode_array(text)
    n_val = int(round(ids.size * val_fraction))
    if val_fraction > 0 and n_val < 2:
        raise DataError(f"{owner}: val_fraction={val_fraction} of {ids.size} characters leaves no validation text; "
                        "raise it, add text, or set val_fraction: 0")
    split = ids.size - n_val
    if split < seq_len + 2:
        raise DataError(f"{owner}: only {split} training characters, fewer than seq_len={seq_len} + 2")
    return CharLMData(ids[:split], ids[split:], voc, seq_len, name=owner, source=source)


def text(paths: str | list[str], seq_len: int = 128, val_fraction: float = 0.1, max_chars: int | None = None,
         min_freq: int = 1, encoding: str = "utf-8", vocab: Any = None) -> CharLMData:
    """``charlm`` over your own text (``paths`` required): the name a spec reads best with,
    ``data: {name: text, paths: [notes/]}``."""
    if paths is None:
        raise DataError("text: paths is required (files, folders or glob patterns); for the stdlib corpus use charlm")
    return _charlm("text", paths, None, seq_len, val_fraction, max_chars, min_freq, encoding, vocab)
