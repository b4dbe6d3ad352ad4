"""Evaluation metrics: ``Accuracy``, ``F1``, ``Perplexity``, ``BLEU`` (and the ``bleu`` function).

A metric is a small accumulator the trainer feeds batch by batch, then reads once:

    m = Accuracy()
    for batch in data.val_batches(64):
        out = model(...)                              # logits, as numpy
        m.update(out, batch.y, loss_sum, count)       # loss_sum: summed loss; count: tokens
    m.compute()                                       # one float
    m.reset()

``output`` is the model's raw output: logits (B, C) for classification, (B, T, V) for a
language model, (B, k) for regression. ``target`` is (B,) or (B, T) class ids, where
IGNORE_INDEX (-100) marks positions that are not scored. Every metric is also a plugin
kind (``microgradnn.metrics``), registered with its class; ``name`` and
``higher_is_better`` tell the trainer how to show it and which way "best" points.

Why accumulate counts instead of averaging per-batch scores: batches differ in size
(the last one, padded tokens), and the mean of per-batch F1 scores is not the F1 of the
data. Each metric keeps the sufficient statistics (correct/total counts, a confusion
count per class, n-gram match counts) and computes the score from the totals.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from .backend import to_host

__all__ = ["Metric", "Accuracy", "F1", "Perplexity", "BLEU", "bleu", "corpus_bleu", "IGNORE_INDEX"]

IGNORE_INDEX = -100


def _predictions(output: Any, target: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, true class) for every scored position, as flat int64 arrays.

    ``output`` (..., C) logits -> argmax over the last axis; a single logit (..., 1) is a
    binary classifier's (class 1 when the logit > 0). Positions whose target is negative
    (IGNORE_INDEX) are dropped."""
    out, tgt = to_host(output), to_host(target)
    if tgt.dtype.kind not in "iub":
        raise ValueError(f"{owner}: needs integer class targets, got dtype {tgt.dtype} (is this a regression task?)")
    if out.shape[:-1] != tgt.shape:
        raise ValueError(f"{owner}: output shape {out.shape} does not match target shape {tgt.shape} "
                         "(expected output = target shape + a class axis)")
    pred = (out[..., 0] > 0).astype(np.int64) if out.shape[-1] == 1 else out.argmax(axis=-1).astype(np.int64)
    pred, tgt = pred.reshape(-1), tgt.reshape(-1).astype(np.int64)
    keep = tgt >= 0
    return pred[keep], tgt[keep]


class Metric:
    """Base class: ``update`` many times, ``compute`` once, ``reset`` to start over."""

    name: str = "metric"
    higher_is_better: bool = True
    #: What targets it fits (:mod:`microgradnn.tasks`): "classes" (integer ids) or "values".
    targets: str = "classes"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, output: Any, target: Any, loss_sum: float = 0.0, count: int = 0) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        """The score over everything seen since the last reset (NaN before any data)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Share of scored positions whose argmax class is the target."""

    name = "accuracy"
    higher_is_better = True

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, output: Any, target: Any, loss_sum: float = 0.0, count: int = 0) -> None:
        pred, tgt = _predictions(output, target, self.name)
        self.correct += int((pred == tgt).sum())
        self.total += int(tgt.size)

    def compute(self) -> float:
        return self.correct / self.total if self.total else float("nan")


class F1(Metric):
    """F1 score, the harmonic mean of precision and recall.

    For one class c: precision = TP / (TP + FP), recall = TP / (TP + FN),
    F1 = 2 PR / (P + R) = 2 TP / (2 TP + FP + FN) (0 when the class was never predicted
    nor present).

    ``average="macro"`` (default): the unweighted mean of the per-class F1 over the classes
    that occur in the targets or the predictions, so a rare class counts as much as a
    common one (sklearn's ``f1_score(average="macro")``). ``average="binary"``: the F1 of
    class ``pos_label`` alone (two-class problems)."""

    name = "f1"
    higher_is_better = True

    def __init__(self, average: str = "macro", pos_label: int = 1) -> None:
        if average not in ("macro", "binary"):
            raise ValueError(f"F1: average must be 'macro' or 'binary', got {average!r}")
        self.average, self.pos_label = average, int(pos_label)
        super().__init__()

    def reset(self) -> None:
        self.tp = np.zeros(0, dtype=np.int64)
        self.fp = np.zeros(0, dtype=np.int64)
        self.fn = np.zeros(0, dtype=np.int64)

    def _grow(self, n: int) -> None:
        if n > self.tp.size:
            pad = n - self.tp.size
            self.tp, self.fp, self.fn = (np.pad(a, (0, pad)) for a in (self.tp, self.fp, self.fn))

    def update(self, output: Any, target: Any, loss_sum: float = 0.0, count: int = 0) -> None:
        pred, tgt = _predictions(output, target, self.name)
        if tgt.size == 0:
            return
        n = int(max(pred.max(), tgt.max())) + 1
        self._grow(n)
        hit = pred == tgt
        self.tp += np.bincount(tgt[hit], minlength=self.tp.size)
        self.fp += np.bincount(pred[~hit], minlength=self.tp.size)
        self.fn += np.bincount(tgt[~hit], minlength=self.tp.size)

    def compute(self) -> float:
        support = self.tp + self.fp + self.fn
        if not support.any():
            return float("nan")
        denom = 2 * self.tp + self.fp + self.fn
        f1 = np.divide(2.0 * self.tp, denom, out=np.zeros(denom.shape), where=denom > 0)
        if self.average == "binary":
            if support.size > 2 and support[2:].any():
                raise ValueError("F1(average='binary') got more than two classes; use average='macro'")
            return float(f1[self.pos_label]) if self.pos_label < f1.size else 0.0
        return float(f1[support > 0].mean())

    def __repr__(self) -> str:
        return f"F1(average={self.average!r})"


class Perplexity(Metric):
    """exp(mean loss per token): the effective number of choices the model hesitates
    between at each step (a uniform guess over V tokens has perplexity V).

    It reads ``loss_sum`` (the summed cross-entropy, in nats) and ``count`` (how many
    tokens it was summed over) from each update; the mean is over all tokens seen, not
    a mean of per-batch means."""

    name = "perplexity"
    higher_is_better = False

    def reset(self) -> None:
        self.loss_sum = 0.0
        self.count = 0

    def update(self, output: Any = None, target: Any = None, loss_sum: float = 0.0, count: int = 0) -> None:
        if count < 0:
            raise ValueError(f"perplexity: count must be >= 0, got {count}")
        self.loss_sum += float(loss_sum)
        self.count += int(count)

    def compute(self) -> float:
        if not self.count:
            return float("nan")
        mean = self.loss_sum / self.count
        return math.exp(mean) if mean < 709 else float("inf")  # exp overflows a float past ~709


# ----------------------------------------------------------------------------------------
# BLEU
# ----------------------------------------------------------------------------------------


def _ngrams(tokens: Sequence[Any], n: int) -> Counter:
    return Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


class _BleuStats:
    """The sufficient statistics of corpus BLEU: per order n, the clipped n-gram matches
    and the candidate n-gram count; the candidate length and the matched reference length."""

    def __init__(self, max_n: int) -> None:
        if not isinstance(max_n, int) or max_n < 1:
            raise ValueError(f"BLEU: max_n must be a positive int, got {max_n!r}")
        self.max_n = max_n
        self.matches = [0] * max_n
        self.possible = [0] * max_n
        self.cand_len = 0
        self.ref_len = 0

    def add(self, candidate: Sequence[Any], references: Sequence[Sequence[Any]]) -> None:
        if not references:
            raise ValueError("BLEU: every candidate needs at least one reference")
        c = len(candidate)
        self.cand_len += c
        # Brevity penalty uses the reference length closest to the candidate's (the shorter on a tie).
        self.ref_len += min((abs(len(r) - c), len(r)) for r in references)[1]
        for n in range(1, self.max_n + 1):
            cand = _ngrams(candidate, n)
            if not cand:
                continue
            # "Modified" precision: an n-gram counts at most as often as it occurs in any
            # one reference, so "the the the" does not score against "the cat".
            most: Counter = Counter()
            for r in references:
                most |= _ngrams(r, n)
            self.matches[n - 1] += sum(min(k, most[g]) for g, k in cand.items())
            self.possible[n - 1] += sum(cand.values())

    def score(self, smooth: bool) -> float:
        if self.cand_len == 0:
            return 0.0
        log_p = 0.0
        for n in range(self.max_n):
            m, p = self.matches[n], self.possible[n]
            if smooth and n > 0:  # add-one smoothing of the n>1 precisions (Lin & Och 2004)
                m, p = m + 1, p + 1
            if m == 0 or p == 0:
                return 0.0  # geometric mean with a zero factor
            log_p += math.log(m / p) / self.max_n
        c, r = self.cand_len, self.ref_len
        bp = 1.0 if c > r else math.exp(1.0 - r / c)
        return bp * math.exp(log_p)


def _tokens(item: str | Sequence[Any], tokenize: str) -> list:
    if not isinstance(item, str):
        return list(item)
    if tokenize == "whitespace":
        return item.split()
    if tokenize == "chars":
        return list(item)
    raise ValueError(f"bleu: tokenize must be 'whitespace' or 'chars', got {tokenize!r}")


def corpus_bleu(candidates: Sequence[Sequence[Any]], references: Sequence[Sequence[Sequence[Any]]],
                max_n: int = 4, smooth: bool = False) -> float:
    """Corpus BLEU of token sequences: ``references[i]`` is the list of reference token
    sequences for ``candidates[i]``."""
    if len(candidates) != len(references):
        raise ValueError(f"bleu: {len(candidates)} candidates but {len(references)} reference sets")
    stats = _BleuStats(max_n)
    for cand, refs in zip(candidates, references):
        stats.add(list(cand), [list(r) for r in refs])
    return stats.score(smooth)


def bleu(candidates: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], max_n: int = 4,
         smooth: bool = False, tokenize: str = "whitespace") -> float:
    """Corpus BLEU (Papineni et al. 2002) of generated texts against references, in [0, 1].

    BLEU = BP * exp(mean over n = 1..max_n of log p_n), where p_n is the corpus-wide
    modified n-gram precision (clipped matches / candidate n-grams, summed over all
    sentences before dividing) and BP = exp(1 - r/c) when the candidates' total length c is
    below the references' r (each sentence's reference closest in length), else 1.

    Args:
        candidates: the generated texts (or token lists).
        references: one reference per candidate, or a list of references per candidate.
        max_n: the largest n-gram order (4 is the standard BLEU-4).
        smooth: add one to the n > 1 precisions' numerator and denominator, so a short
            text with no 4-gram match scores above 0 (Lin & Och 2004; NLTK's method2).
        tokenize: "whitespace" (words) or "chars" (character BLEU).
    """
    if isinstance(candidates, str):
        raise TypeError("bleu: candidates must be a list of texts, not one string")
    refs = [[_tokens(r, tokenize)] if isinstance(r, str) else [_tokens(x, tokenize) for x in r] for r in references]
    return corpus_bleu([_tokens(c, tokenize) for c in candidates], refs, max_n, smooth)


class BLEU(Metric):
    """Corpus BLEU of a per-step model's argmax predictions against the targets.

    Each row of a (B, T, V) output is one candidate: its argmax tokens at the scored
    positions (target >= 0), compared with the target tokens there. That is teacher-forced
    BLEU (each step sees the true prefix), meaningful for sequence-to-sequence style tasks
    such as ``copy``; for free generation use :func:`bleu` on the generated texts."""

    name = "bleu"
    higher_is_better = True
    per_step = True  # it reads each row's sequence of predictions (microgradnn.tasks)

    def __init__(self, max_n: int = 4, smooth: bool = False) -> None:
        self.max_n, self.smooth = max_n, smooth
        super().__init__()

    def reset(self) -> None:
        self.stats = _BleuStats(self.max_n)

    def update(self, output: Any, target: Any, loss_sum: float = 0.0, count: int = 0) -> None:
        out, tgt = to_host(output), to_host(target)
        if out.ndim != 3 or tgt.ndim != 2:
            raise ValueError(f"bleu: needs per-step outputs (B, T, V) and targets (B, T), got {out.shape} and {tgt.shape}")
        if out.shape[:2] != tgt.shape:
            raise ValueError(f"bleu: output shape {out.shape} does not match target shape {tgt.shape}")
        pred = out.argmax(axis=-1)
        for p, t in zip(pred, tgt):
            keep = t >= 0
            self.stats.add(p[keep].tolist(), [t[keep].tolist()])

    def compute(self) -> float:
        if self.stats.cand_len == 0:
            return float("nan")
        return self.stats.score(self.smooth)
