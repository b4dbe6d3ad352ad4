"""``Vocab``: a character-level vocabulary (id <-> character), storable as JSON.

A recurrent net reads integers, so text goes through a table: ``itos`` (id -> string) and
``stoi`` (string -> id). Two optional special entries sit at the front:

* ``pad`` (id 0 when present): fills the end of short sequences in a padded batch; the
  embedding's ``padding_idx`` and the ``lengths`` keep it out of the computation.
* ``unk``: stands for any character the table lacks (one unseen at training time, or one
  dropped for being rarer than ``min_freq``).

Every other entry is a single character, in sorted order, so the same text always gives
the same ids. ``to_dict()`` / ``from_dict()`` (and ``save`` / ``load``) round-trip the table
through JSON, which is how a run folder keeps it for ``mgnn generate`` and ``mgnn eval``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .base import DataError, DataFileError
from ..fileio import atomic_write

__all__ = ["Vocab", "PAD", "UNK"]

PAD = "<pad>"
UNK = "<unk>"
_REPLACEMENT = "\ufffd"  # what an unk decodes to: the Unicode "replacement character"


class Vocab:
    """A character vocabulary: ``itos``, ``stoi``, ``encode``, ``decode``.

    Args:
        chars: the characters (single-character strings), in id order after the specials.
        pad: add the padding entry ``"<pad>"`` at id 0.
        unk: add the unknown entry ``"<unk>"`` (id 1 after pad, else 0). Without one,
            encoding a character outside the table is an error.
    """

    def __init__(self, chars: Iterable[str], *, pad: bool = False, unk: bool = True) -> None:
        specials = ([PAD] if pad else []) + ([UNK] if unk else [])
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise DataError(f"Vocab: entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise DataError("Vocab: duplicate characters")
        self.itos: list[str] = specials + chars
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad_id: int | None = self.stoi[PAD] if pad else None
        self.unk_id: int | None = self.stoi[UNK] if unk else None
        self._lut: np.ndarray | None = None  # code point -> id table, built on first encode_array

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, texts: str | Iterable[str], *, min_freq: int = 1, pad: bool = False, unk: bool = True) -> "Vocab":
        """The sorted characters of ``texts`` that occur at least ``min_freq`` times."""
        if isinstance(texts, str):
            texts = [texts]
        counts = np.zeros(0, dtype=np.int64)
        for text in texts:
            codes = _codes(text)
            if codes.size:
                c = np.bincount(codes)
                if c.size > counts.size:
                    counts = np.pad(counts, (0, c.size - counts.size))
                counts[: c.size] += c
        keep = np.nonzero(counts >= max(int(min_freq), 1))[0]
        return cls((chr(int(k)) for k in keep), pad=pad, unk=unk)

    # -- the table ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos and self.pad_id == other.pad_id and self.unk_id == other.unk_id

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, pad_id={self.pad_id}, unk_id={self.unk_id})"

    @property
    def specials(self) -> set[int]:
        return {i for i in (self.pad_id, self.unk_id) if i is not None}

    # -- text <-> ids ---------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Character ids of ``text`` (unknown characters -> unk)."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Like :meth:`encode`, as an int64 numpy array; fast for a corpus of millions of
        characters (one table look-up per character, no Python loop)."""
        codes = _codes(text)
        if codes.size == 0:
            return np.zeros(0, dtype=np.int64)
        lut = self._table(int(codes.max()))
        ids = lut[codes]
        if self.unk_id is None and ids.size and ids.min() < 0:
            bad = chr(int(codes[np.argmax(ids < 0)]))
            raise DataError(f"character {bad!r} (U+{ord(bad):04X}) is not in the vocabulary, which has no unk entry")
        return ids

    def _table(self, top: int) -> np.ndarray:
        if self._lut is None or self._lut.size <= top:
            size = max(top + 1, max((ord(s) for s in self.itos if len(s) == 1), default=0) + 1, 256)
            lut = np.full(size, -1 if self.unk_id is None else self.unk_id, dtype=np.int64)
            for s, i in self.stoi.items():
                if len(s) == 1:
                    lut[ord(s)] = i
            self._lut = lut
        return self._lut

    def decode(self, ids: Iterable[int] | np.ndarray, skip_special: bool = True) -> str:
        """The text of ``ids``. Padding is dropped and unk shows as U+FFFD unless
        ``skip_special=False`` (then both appear as "<pad>" / "<unk>")."""
        out = []
        n = len(self.itos)
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if not 0 <= i < n:
                raise DataError(f"Vocab.decode: id {i} is out of range (vocabulary size {n})")
            if skip_special and i == self.pad_id:
                continue
            if skip_special and i == self.unk_id:
                out.append(_REPLACEMENT)
                continue
            out.append(self.itos[i])
        return "".join(out)

    # -- storage --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description: ``{"kind": "char", "pad": bool, "unk": bool, "chars": [...]}``."""
        first = len(self.specials)
        return {"kind": "char", "pad": self.pad_id is not None, "unk": self.unk_id is not None,
                "chars": self.itos[first:]}

    @classmethod
    def from_dict(cls, d: Any) -> "Vocab":
        if isinstance(d, Vocab):
            return d
        if not isinstance(d, dict) or not isinstance(d.get("chars"), list):
            raise DataError("a vocabulary must be a dict like Vocab.to_dict() gives: {kind: char, pad, unk, chars: [...]}")
        if d.get("kind", "char") != "char":
            raise DataError(f"unsupported vocabulary kind {d.get('kind')!r}; this version reads 'char'")
        return cls(d["chars"], pad=bool(d.get("pad", False)), unk=bool(d.get("unk", True)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically (a crash never leaves half a file)."""
        atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        path = Path(path)
        if not path.is_file():
            raise DataFileError(f"vocabulary file not found: {str(path)!r}")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise DataError(f"{str(path)!r} is not valid JSON: {e}") from None


def as_vocab(value: Any, owner: str, kind: type = Vocab) -> Any:
    """A ``vocab`` option as a ``kind`` (a :class:`Vocab`, or any class with ``from_dict``
    and ``load``): None, an instance, a ``to_dict()`` dict, or a JSON path."""
    if value is None or isinstance(value, kind):
        return value
    if isinstance(value, dict):
        return kind.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        return kind.load(value)
    name = kind.__name__
    raise DataError(f"{owner}: vocab must be a {name}, a dict from {name}.to_dict() or a path to its JSON, "
                    f"got {type(value).__name__}")


def _codes(text: str) -> np.ndarray:
    """The Unicode code points of ``text`` as an int64 array (UTF-32 is one 4-byte unit per
    character, so numpy can read it directly)."""
    if not isinstance(text, str):
        raise DataError(f"expected text (str), got {type(text).__name__}")
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32).astype(np.int64)
