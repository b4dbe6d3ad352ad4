"""Corpus BLEU and chrF against sacreBLEU (the reference implementation) on random corpora."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from microgradnn.metrics import bleu, chrf

WORDS = "trois cent soixante et onze vingt quatre-vingt mille deux".split()


def _corpus(seed: int, n: int = 40, refs: int = 2):
    """References of random words; candidates are noisy copies (so 4-grams match too)."""
    rng = np.random.default_rng(seed)
    vocab = WORDS[: rng.integers(3, len(WORDS) + 1)]
    references = [[" ".join(rng.choice(vocab, size=rng.integers(1, 14))) for _ in range(n)] for _ in range(refs)]
    candidates = []
    for sentence in references[0]:
        words = sentence.split()
        keep = [w if rng.random() > 0.2 else str(rng.choice(vocab)) for w in words if rng.random() > 0.1]
        if rng.random() < 0.3:
            keep += list(rng.choice(vocab, size=rng.integers(1, 3)))
        candidates.append(" ".join(keep))
    return candidates, references


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n_refs", [1, 3])
def test_bleu_matches_sacrebleu(seed, n_refs):
    cands, refs = _corpus(seed, refs=n_refs)
    ours = bleu(cands, list(zip(*refs))) * 100
    theirs = sacrebleu.corpus_bleu(cands, refs, tokenize="none", smooth_method="none").score
    assert theirs > 1.0  # a corpus where every order has matches: the test can fail
    assert abs(ours - theirs) < 1e-6
    smoothed = bleu(cands, list(zip(*refs)), smooth=True) * 100
    assert abs(smoothed - sacrebleu.corpus_bleu(cands, refs, tokenize="none", smooth_method="add-k").score) < 1e-6


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n_refs", [1, 3])
def test_chrf_matches_sacrebleu(seed, n_refs):
    cands, refs = _corpus(100 + seed, refs=n_refs)
    if seed % 3 == 0:
        cands[0] = ""  # an empty candidate and one-character texts are edge cases of the order average
        cands[1] = cands[1][:1]
    ours = chrf(cands, list(zip(*refs))) * 100
    theirs = sacrebleu.corpus_chrf(cands, refs).score
    assert 5.0 < theirs < 100.0
    assert abs(ours - theirs) < 1e-6
    assert abs(chrf(cands, list(zip(*refs)), beta=1.0) * 100 - sacrebleu.corpus_chrf(cands, refs, beta=1).score) < 1e-6


def test_perfect_and_empty_cases():
    refs = ["trois cent soixante et onze", "deux mille"]
    assert bleu(refs, refs) == pytest.approx(1.0)
    assert chrf(refs, refs) == pytest.approx(1.0)
    assert chrf(["", ""], refs) == 0.0 == sacrebleu.corpus_chrf(["", ""], [refs]).score
    with pytest.raises(TypeError):
        chrf("one string", refs)
