"""Translation pairs from a TSV file: ``seq2seq`` (task ``seq2seq``).

Each row holds a source sentence and its target. Both sides go through a
:class:`TokenVocab` of characters or whitespace-separated words with four reserved ids::

    0 <pad>   fills short rows of a padded batch
    1 <bos>   the decoder's first input ("begin of sentence")
    2 <eos>   what the decoder emits when the translation is complete
    3 <unk>   a token the training rows never had

A batch (:class:`Seq2SeqBatch`) is a :class:`~microgradnn.data.Batch` with two more fields:

===============  ========================  ==================================================
field            shape                     holds
===============  ========================  ==================================================
``x``            (B, S) int64              source ids, padded with 0
``lengths``      (B,) int64                source lengths
``tgt_in``       (B, T) int64              ``<bos> y_1 .. y_n``, padded with 0 (decoder input)
``y``            (B, T) int64              ``y_1 .. y_n <eos>``, padded with IGNORE_INDEX
``tgt_lengths``  (B,) int64                n + 1
===============  ========================  ==================================================

``tgt_in`` is ``y`` shifted right by one: teacher forcing.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from .base import IGNORE_INDEX, DataError, DataFileError, check_fraction, check_int
from .sequences import SequenceData
from .tabular import _missing_column, read_table
from .vocab import as_vocab
from ..fileio import atomic_write

__all__ = ["TokenVocab", "PairVocab", "Seq2SeqBatch", "Seq2SeqData", "seq2seq", "SPECIALS"]

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
TOKENIZE = ("chars", "words")


class _JsonVocab:
    """``save``/``load`` of a vocabulary as the JSON of its ``to_dict()`` (one copy for both kinds)."""

    def save(self, path: str | os.PathLike) -> None:
        atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Any:
        p = Path(path)
        if not p.is_file():
            raise DataFileError(f"vocabulary file not found: {str(p)!r}")
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise DataError(f"{str(p)!r} is not valid JSON: {e}") from None


class TokenVocab(_JsonVocab):
    """Characters or words <-> ids, with ``<pad> <bos> <eos> <unk>`` at ids 0-3."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, tokens: Iterable[str], tokenize: str = "words") -> None:
        if tokenize not in TOKENIZE:
            raise DataError(f"TokenVocab: tokenize must be one of {TOKENIZE}, got {tokenize!r}")
        tokens = list(tokens)
        if set(tokens) & set(SPECIALS) or len(set(tokens)) != len(tokens):
            raise DataError("TokenVocab: tokens must be distinct and not among the reserved " + ", ".join(SPECIALS))
        self.tokenize = tokenize
        self.itos: list[str] = list(SPECIALS) + tokens
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], tokenize: str = "words", min_freq: int = 1) -> "TokenVocab":
        """Tokens of ``texts`` seen at least ``min_freq`` times, sorted (the same data always
        gives the same ids)."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(split_tokens(text, tokenize))
        return cls(sorted(t for t, n in counts.items() if n >= min_freq and t not in SPECIALS), tokenize)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenVocab) and self.itos == other.itos and self.tokenize == other.tokenize

    def __repr__(self) -> str:
        return f"TokenVocab(size={len(self)}, tokenize={self.tokenize!r})"

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in split_tokens(text, self.tokenize)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``, stopping at the first ``<eos>``; pad and bos are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            if not 0 <= i < len(self.itos):
                raise DataError(f"TokenVocab.decode: id {i} is out of range (vocabulary size {len(self)})")
            out.append(self.itos[i])
        return ("" if self.tokenize == "chars" else " ").join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tokens", "tokenize": self.tokenize, "tokens": self.itos[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, d: Any) -> "TokenVocab":
        if not isinstance(d, dict) or d.get("kind") != "tokens" or not isinstance(d.get("tokens"), list):
            raise DataError("a token vocabulary must be a dict like TokenVocab.to_dict(): {kind: tokens, tokenize, tokens: [...]}")
        return cls(d["tokens"], d.get("tokenize", "words"))



class PairVocab(_JsonVocab):
    """The two vocabularies of a translation task, stored together as one JSON file (a
    run folder's ``vocab.json``): ``{"kind": "seq2seq", "source": {...}, "target": {...}}``."""

    def __init__(self, source: TokenVocab, target: TokenVocab) -> None:
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PairVocab) and self.source == other.source and self.target == other.target

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "seq2seq", "source": self.source.to_dict(), "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, d: Any) -> "PairVocab":
        if not isinstance(d, dict) or d.get("kind") != "seq2seq":
            raise DataError("a translation vocabulary must be a dict {kind: seq2seq, source: {...}, target: {...}}")
        return cls(TokenVocab.from_dict(d.get("source")), TokenVocab.from_dict(d.get("target")))



def split_tokens(text: str, tokenize: str) -> list[str]:
    return list(text) if tokenize == "chars" else text.split()


class Seq2SeqBatch(NamedTuple):
    """A :class:`~microgradnn.data.Batch` (``x``, ``y``, ``lengths``) plus the decoder's input."""

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray
    tgt_in: np.ndarray
    tgt_lengths: np.ndarray


class Pairs:
    """Encoded (source, target) pairs; ``lengths`` (the sources') drive bucketing."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], texts: list[tuple[str, str]]) -> None:
        self.sources, self.targets, self.texts = sources, targets, texts
        self.lengths = np.array([len(s) for s in sources], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sources)

    def batch(self, idx: np.ndarray) -> Seq2SeqBatch:
        src = [self.sources[int(i)] for i in idx]
        tgt = [self.targets[int(i)] for i in idx]
        S, T = max(map(len, src)), max(map(len, tgt)) + 1
        x = np.full((len(idx), S), PAD_ID, dtype=np.int64)
        tgt_in = np.full((len(idx), T), PAD_ID, dtype=np.int64)
        y = np.full((len(idx), T), IGNORE_INDEX, dtype=np.int64)
        for r, (s, t) in enumerate(zip(src, tgt)):
            x[r, :len(s)] = s
            tgt_in[r, :len(t) + 1] = [BOS_ID] + t
            y[r, :len(t) + 1] = t + [EOS_ID]
        return Seq2SeqBatch(x, y, np.array([len(s) for s in src], dtype=np.int64), tgt_in,
                            np.array([len(t) + 1 for t in tgt], dtype=np.int64))


class Seq2SeqData(SequenceData):
    """Translation pairs in memory; ``src_vocab``/``tgt_vocab``; ``val_texts`` the validation
    (source, target) strings for BLEU."""

    def __init__(self, train: Pairs, val: Pairs | None, src_vocab: TokenVocab, tgt_vocab: TokenVocab, *,
                 bucket: bool = False, info: dict | None = None) -> None:
        super().__init__(train, val, "seq2seq", len(tgt_vocab), name="seq2seq", vocab=PairVocab(src_vocab, tgt_vocab),
                         bucket=bucket, info=info)
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab

    @property
    def val_texts(self) -> list[tuple[str, str]]:
        return [] if self.val is None else list(self.val.texts)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(src_vocab_size=len(self.src_vocab), tgt_vocab_size=len(self.tgt_vocab))
        return info


def _rows(table: Any, source_column: str, target_column: str, lowercase: bool, owner: str) -> list[tuple[str, str]]:
    for option, column in (("source_column", source_column), ("target_column", target_column)):
        if column not in table.columns:
            raise _missing_column(owner, table, option, column)
    out = []
    for line, row in table.rows:
        s, t = row[source_column], row[target_column]
        if not isinstance(s, str) or not isinstance(t, str) or not s.strip() or not t.strip():
            raise DataError(f"{owner}: {str(table.path)!r} line {line}: source and target must be non-empty text")
        out.append((s.lower(), t.lower()) if lowercase else (s, t))
    return out


def seq2seq(path: str, source_column: str = "source", target_column: str = "target", tokenize: str = "words",
            source_tokenize: str | None = None, val_path: str | None = None, val_fraction: float = 0.1,
            seed: int = 0, lowercase: bool = False, min_freq: int = 1, max_len: int | None = None,
            bucket: bool = False, delimiter: str | None = None, src_vocab: Any = None,
            tgt_vocab: Any = None, vocab: Any = None) -> Seq2SeqData:
    """Translation pairs from a TSV/CSV file with a header row.

    Args:
        path: the file (``.tsv``: tab-separated, else comma; or give ``delimiter``).
        source_column, target_column: the two columns.
        tokenize: "words" (whitespace) or "chars", for the target (and the source unless
            ``source_tokenize`` says otherwise).
        val_path: a validation file with the same columns; else ``val_fraction`` of the
            rows, picked by a generator seeded with ``seed``.
        min_freq: rarer tokens map to ``<unk>``.
        max_len: drop pairs with a side longer than this many tokens.
        src_vocab, tgt_vocab: reuse vocabularies (TokenVocab, its ``to_dict()``, or a JSON path).
        vocab: both at once (a PairVocab or its ``to_dict()``: a run's ``vocab.json``).
    """
    owner = "seq2seq"
    for name, value in (("tokenize", tokenize), ("source_tokenize", source_tokenize or tokenize)):
        if value not in TOKENIZE:
            raise DataError(f"{owner}: {name} must be one of {TOKENIZE}, got {value!r}")
    val_fraction = check_fraction(owner, "val_fraction", val_fraction)
    seed, min_freq = check_int(owner, "seed", seed, 0), check_int(owner, "min_freq", min_freq, 1)
    if max_len is not None:
        max_len = check_int(owner, "max_len", max_len, 1)
    table = read_table(path, "csv", delimiter, owner=owner)
    rows = _rows(table, source_column, target_column, lowercase, owner)
    if val_path is not None:
        train_rows, val_rows = rows, _rows(read_table(val_path, "csv", delimiter, owner=owner), source_column,
                                           target_column, lowercase, owner)
    else:
        n_val = int(round(len(rows) * val_fraction))
        if val_fraction > 0 and n_val == 0 and len(rows) >= 2:
            n_val = 1
        if len(rows) - n_val < 1:
            raise DataError(f"{owner}: {len(rows)} row(s) leave nothing to train on after val_fraction={val_fraction}")
        perm = np.random.default_rng(seed).permutation(len(rows))
        val_rows = [rows[i] for i in np.sort(perm[:n_val])]
        train_rows = [rows[i] for i in np.sort(perm[n_val:])]
    if vocab is not None:
        pair = vocab if isinstance(vocab, PairVocab) else PairVocab.from_dict(vocab)
        src_vocab, tgt_vocab = pair.source, pair.target
    src_tok = source_tokenize or tokenize
    sv = as_vocab(src_vocab, owner, TokenVocab) or TokenVocab.build((s for s, _ in train_rows), src_tok, min_freq)
    tv = as_vocab(tgt_vocab, owner, TokenVocab) or TokenVocab.build((t for _, t in train_rows), tokenize, min_freq)

    def encode(pairs: list[tuple[str, str]]) -> Pairs | None:
        keep = [(s, t, sv.encode(s), tv.encode(t)) for s, t in pairs]
        if max_len is not None:
            keep = [k for k in keep if len(k[2]) <= max_len and len(k[3]) <= max_len]
        keep = [k for k in keep if k[2] and k[3]]
        return Pairs([k[2] for k in keep], [k[3] for k in keep], [(k[0], k[1]) for k in keep]) if keep else None

    train = encode(train_rows)
    if train is None:
        raise DataError(f"{owner}: no training pairs left (max_len={max_len})")
    return Seq2SeqData(train, encode(val_rows), sv, tv, bucket=bucket,
                       info={"path": os.fspath(path), "tokenize": tokenize})


