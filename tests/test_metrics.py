"""Metrics against hand-computed values, published reference values, and independent
re-implementations of the textbook formulas (sklearn and NLTK are not installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microgradnn.metrics import BLEU, F1, IGNORE_INDEX, Accuracy, Perplexity, bleu, corpus_bleu


def _logits(pred: np.ndarray, classes: int, seed: int = 0) -> np.ndarray:
    """Random logits whose argmax is ``pred``."""
    rng = np.random.default_rng(seed)
    out = rng.standard_normal(pred.shape + (classes,))
    np.put_along_axis(out, pred[..., None], 10.0 + np.abs(rng.standard_normal(pred.shape + (1,))), axis=-1)
    return out


# ------------------------------------------------------------------------------ accuracy


def test_accuracy_by_hand_and_accumulated() -> None:
    m = Accuracy()
    m.update(_logits(np.array([0, 1, 2, 2]), 3), np.array([0, 1, 1, 2]))
    assert m.compute() == pytest.approx(3 / 4)
    m.update(_logits(np.array([1, 1]), 3, seed=1), np.array([0, 0]))
    assert m.compute() == pytest.approx(3 / 6)  # counts add up, not a mean of batch means
    m.reset()
    assert math.isnan(m.compute())


def test_accuracy_per_step_with_ignore_index() -> None:
    pred = np.array([[1, 2, 3], [0, 0, 1]])
    target = np.array([[1, IGNORE_INDEX, 0], [IGNORE_INDEX, 0, 1]])
    m = Accuracy()
    m.update(_logits(pred, 4), target)
    assert m.compute() == pytest.approx(3 / 4)


def test_accuracy_single_logit_is_binary() -> None:
    m = Accuracy()
    m.update(np.array([[2.0], [-1.0], [0.5]]), np.array([1, 0, 0]))
    assert m.compute() == pytest.approx(2 / 3)


def test_accuracy_errors() -> None:
    with pytest.raises(ValueError, match="integer class targets"):
        Accuracy().update(np.zeros((2, 1)), np.zeros((2, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="does not match target shape"):
        Accuracy().update(np.zeros((2, 3)), np.zeros(3, dtype=np.int64))


# ------------------------------------------------------------------------------ F1


def _f1_reference(y_true: list, y_pred: list, average: str, pos_label: int = 1) -> float:
    """sklearn's definition, written out: per-label precision and recall from counts,
    labels = union of those in y_true and y_pred, 0 where undefined."""
    labels = sorted(set(y_true) | set(y_pred))
    scores = {}
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        scores[c] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    if average == "binary":
        return scores.get(pos_label, 0.0)
    return sum(scores.values()) / len(scores)


def test_f1_macro_sklearn_doc_example() -> None:
    # sklearn's f1_score docstring: y_true=[0,1,2,0,1,2], y_pred=[0,2,1,0,0,1] -> macro 0.26666...
    y_true, y_pred = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 2, 1, 0, 0, 1])
    m = F1()
    m.update(_logits(y_pred, 3), y_true)
    assert m.compute() == pytest.approx(0.26666666666666666)


def test_f1_binary_by_hand() -> None:
    # TP=2, FP=1, FN=1 for class 1: precision 2/3, recall 2/3, F1 2/3.
    y_true, y_pred = np.array([1, 1, 1, 0, 0, 0]), np.array([1, 1, 0, 1, 0, 0])
    m = F1(average="binary")
    m.update(_logits(y_pred, 2), y_true)
    assert m.compute() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="more than two classes"):
        m.update(_logits(np.array([2]), 3), np.array([2]))
        m.compute()


@pytest.mark.parametrize("seed", range(5))
def test_f1_matches_reference_on_random_batches(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = 5
    m, b = F1(), F1(average="binary")
    all_t, all_p, bin_t, bin_p = [], [], [], []
    for _ in range(3):  # accumulated over batches, including a class absent from a batch
        t = rng.integers(0, classes - 1, 20)
        p = rng.integers(0, classes, 20)  # class 4 only ever predicted: counts in macro (sklearn's union)
        m.update(_logits(p, classes, seed), t)
        all_t += t.tolist()
        all_p += p.tolist()
        tb, pb = rng.integers(0, 2, 15), rng.integers(0, 2, 15)
        b.update(_logits(pb, 2, seed), tb)
        bin_t += tb.tolist()
        bin_p += pb.tolist()
    assert m.compute() == pytest.approx(_f1_reference(all_t, all_p, "macro"))
    assert b.compute() == pytest.approx(_f1_reference(bin_t, bin_p, "binary"))


def test_f1_ignores_ignore_index_and_checks_average() -> None:
    m = F1()
    m.update(_logits(np.array([[0, 1], [1, 1]]), 2), np.array([[0, IGNORE_INDEX], [1, IGNORE_INDEX]]))
    assert m.compute() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="average must be 'macro' or 'binary'"):
        F1(average="micro")


# ------------------------------------------------------------------------------ perplexity


def test_perplexity() -> None:
    m = Perplexity()
    m.update(None, None, loss_sum=2.0 * 10, count=10)
    m.update(None, None, loss_sum=4.0 * 30, count=30)
    assert m.compute() == pytest.approx(math.exp((20 + 120) / 40))
    assert Perplexity.higher_is_better is False
    # Uniform logits over V tokens: cross-entropy log V per token, perplexity V.
    V = 17
    m.reset()
    m.update(np.zeros((2, 3, V)), np.zeros((2, 3), dtype=np.int64), loss_sum=6 * math.log(V), count=6)
    assert m.compute() == pytest.approx(V)
    m.reset()
    assert math.isnan(m.compute())


# ------------------------------------------------------------------------------ BLEU

HYP1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
REF1A = "It is a guide to action that ensures that the military will forever heed Party commands"
REF1B = "It is the guiding principle which guarantees the military forces always being under the command of the Party"
REF1C = "It is the practical guide for the army always to heed the directions of the party"
HYP2 = "he read the book because he was interested in world history"
REF2A = "he was interested in world history because he read the book"


def test_bleu_published_values() -> None:
    # NLTK's documented corpus_bleu / sentence_bleu examples (nltk.translate.bleu_score).
    assert bleu([HYP1, HYP2], [[REF1A, REF1B, REF1C], [REF2A]]) == pytest.approx(0.5920778868801042, rel=1e-12)
    assert bleu([HYP1], [[REF1A, REF1B, REF1C]]) == pytest.approx(0.5045666840058485, rel=1e-12)


def test_bleu_modified_precision_papineni() -> None:
    # Papineni et al. 2002, section 2.1: "the the the the the the the" scores 2/7 in unigrams.
    cand = "the the the the the the the"
    refs = ["the cat is on the mat", "there is a cat on the mat"]
    assert bleu([cand], [refs], max_n=1) == pytest.approx(2 / 7)  # closest reference has 7 words: BP = 1


def test_bleu_brevity_penalty_and_perfect() -> None:
    ref = "a b c d e f g h"
    assert bleu([ref], [ref]) == pytest.approx(1.0)
    # "a b c d": every n-gram matches, c = 4 < r = 8: BLEU = exp(1 - 8/4)
    assert bleu(["a b c d"], ["a b c d e f g h"]) == pytest.approx(math.exp(1 - 2))
    assert bleu([""], ["a b"]) == 0.0
    assert bleu(["x y z w"], ["a b c d"]) == 0.0


def test_bleu_smoothing_by_hand() -> None:
    # cand "a b c x" vs ref "a b c d": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1.
    assert bleu(["a b c x"], ["a b c d"]) == 0.0
    # add-one for n > 1: p2 = 3/4, p3 = 2/3, p4 = 1/2; BP = 1.
    expected = (3 / 4 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert bleu(["a b c x"], ["a b c d"], smooth=True) == pytest.approx(expected)


def _bleu_reference(cands: list, refs: list, max_n: int) -> float:
    """Textbook corpus BLEU, written independently (lists instead of Counters for the clip)."""
    num = [0] * max_n
    den = [0] * max_n
    c_len = r_len = 0
    for cand, rs in zip(cands, refs):
        c_len += len(cand)
        r_len += sorted(rs, key=lambda r: (abs(len(r) - len(cand)), len(r)))[0].__len__()
        for n in range(1, max_n + 1):
            grams = [tuple(cand[i:i + n]) for i in range(len(cand) - n + 1)]
            for g in set(grams):
                best = max(sum(1 for i in range(len(r) - n + 1) if tuple(r[i:i + n]) == g) for r in rs)
                num[n - 1] += min(grams.count(g), best)
            den[n - 1] += len(grams)
    if min(num) == 0:
        return 0.0
    bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
    return bp * math.exp(sum(math.log(a / b) for a, b in zip(num, den)) / max_n)


@pytest.mark.parametrize("seed", range(6))
def test_bleu_matches_reference_on_random_corpora(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cands, refs = [], []
    for _ in range(8):
        base = rng.integers(0, 4, rng.integers(4, 14)).tolist()
        refs.append([base, (np.array(base[: rng.integers(2, len(base) + 1)]) + rng.integers(0, 2)).tolist()])
        cand = [t if rng.random() < 0.8 else int(rng.integers(0, 6)) for t in base]
        cands.append(cand[: rng.integers(3, len(cand) + 1)])
    for max_n in (1, 2, 4):
        assert corpus_bleu(cands, refs, max_n=max_n) == pytest.approx(_bleu_reference(cands, refs, max_n))


def test_bleu_chars_and_errors() -> None:
    assert bleu(["abcd"], ["abcd"], tokenize="chars") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 candidates but 1 reference sets"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="list of texts"):
        bleu("abc", ["abc"])
    with pytest.raises(ValueError, match="tokenize must be"):
        bleu(["a"], ["a"], tokenize="bpe")


def test_bleu_metric_from_outputs() -> None:
    target = np.array([[IGNORE_INDEX, 1, 2, 3, 4, 5], [IGNORE_INDEX, IGNORE_INDEX, 3, 3, 2, 1]])
    pred = np.array([[9, 1, 2, 3, 4, 0], [1, 1, 3, 3, 2, 1]])
    m = BLEU(max_n=2)
    m.update(_logits(pred, 10), target)
    cands = [[1, 2, 3, 4, 0], [3, 3, 2, 1]]
    refs = [[[1, 2, 3, 4, 5]], [[3, 3, 2, 1]]]
    assert m.compute() == pytest.approx(corpus_bleu(cands, refs, max_n=2))
    # p1 = 8/9, p2 = 6/7 (3 of 4 bigrams in row 0, all 3 in row 1), lengths equal: BP = 1.
    assert m.compute() == pytest.approx(math.sqrt(8 / 9 * 6 / 7))
    with pytest.raises(ValueError, match="per-step outputs"):
        m.update(np.zeros((2, 3)), np.zeros(2, dtype=np.int64))


def test_metric_class_attributes() -> None:
    for cls, name, hib in [(Accuracy, "accuracy", True), (F1, "f1", True), (Perplexity, "perplexity", False),
                           (BLEU, "bleu", True)]:
        m = cls()
        assert cls.name == name and cls.higher_is_better is hib
        assert callable(m.update) and callable(m.compute) and callable(m.reset)
