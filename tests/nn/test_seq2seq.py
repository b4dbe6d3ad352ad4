"""The encoder-decoder: padding on both sides, scheduled sampling, and decoding
(beam search = exhaustive search when the beam holds every prefix; beam 1 = greedy)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import microgradnn as mg
import microgradnn.nn.functional as F
from microgradnn.nn.attention import AdditiveAttention, DotAttention, GeneralAttention
from microgradnn.nn.seq2seq import Seq2Seq, beam_search, greedy_decode, length_penalty

PAD, BOS, EOS = 0, 1, 2


def _model(attention=AdditiveAttention, cell=mg.nn.LSTMCell, encoder=None, src_vocab=9, tgt_vocab=5, hidden=8,
           emb=6, seed=0):
    mg.manual_seed(seed)
    encoder = encoder or mg.nn.LSTM(emb, 5, num_layers=2, bidirectional=True, batch_first=True)
    return Seq2Seq(src_vocab, tgt_vocab, encoder, cell, hidden_size=hidden, embedding_dim=emb, attention=attention,
                   bos_id=BOS, eos_id=EOS)


def _batch(rng, B=4, S=6, src_vocab=9):
    lengths = np.array([6, 2, 4, 5])[:B]
    src = rng.integers(3, src_vocab, size=(B, S))
    for b, n in enumerate(lengths):
        src[b, n:] = PAD
    return src, lengths


def _sequence_log_prob(model, src, lengths, seq):
    """log p(seq | src) by teacher forcing (one sentence)."""
    tgt_in = np.array([[BOS] + seq[:-1]])
    with mg.no_grad():
        logp = model(src, lengths, tgt_in).log_softmax(-1).array[0]
    return float(sum(logp[t, tok] for t, tok in enumerate(seq)))


@pytest.mark.parametrize("attention", [AdditiveAttention, GeneralAttention, None])
@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_beam_search_equals_exhaustive_search(attention, alpha):
    model = _model(attention).double().eval()
    rng = np.random.default_rng(3)
    src, lengths = _batch(rng, B=2)
    max_len, words = 4, [3, 4]
    candidates = [list(body) + [EOS] for n in range(max_len) for body in itertools.product(words, repeat=n)]
    candidates += [list(body) + [last] for body in itertools.product(words, repeat=max_len - 1) for last in words]
    beams = beam_search(model, src, lengths, beam_size=64, max_len=max_len, alpha=alpha, n_best=5)
    for b in range(2):
        scored = []
        for seq in candidates:
            lp = _sequence_log_prob(model, src[b:b + 1], lengths[b:b + 1], seq)
            body = seq[:-1] if seq[-1] == EOS else seq
            scored.append((lp / length_penalty(len(seq), alpha), body, lp))
        scored.sort(key=lambda s: -s[0])
        assert [h.tokens for h in beams[b]] == [s[1] for s in scored[:5]]
        np.testing.assert_allclose([h.log_prob for h in beams[b]], [s[2] for s in scored[:5]], rtol=1e-9)


@pytest.mark.parametrize("attention", [AdditiveAttention, DotAttention, None])
@pytest.mark.parametrize("cell", [mg.nn.LSTMCell, mg.nn.GRUCell])
def test_beam_size_one_is_greedy(attention, cell):
    hidden = 10 if attention is DotAttention else 8  # dot needs decoder size = encoder outputs (2 x 5)
    model = _model(attention, cell=cell, hidden=hidden, tgt_vocab=7, seed=4)
    rng = np.random.default_rng(5)
    src, lengths = _batch(rng)
    greedy = greedy_decode(model, src, lengths, max_len=8)
    beam = beam_search(model, src, lengths, beam_size=1, max_len=8)
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam]
    np.testing.assert_allclose([g.log_prob for g in greedy], [b[0].log_prob for b in beam], rtol=1e-5)
    assert any(len(g.tokens) > 0 for g in greedy)
    for g in greedy:
        assert PAD not in g.tokens and BOS not in g.tokens and EOS not in g.tokens


def test_padding_on_both_sides_changes_nothing():
    model = _model().eval()
    rng = np.random.default_rng(6)
    src, lengths = _batch(rng)
    tgt_in = rng.integers(3, 5, size=(4, 5))
    tgt_in[:, 0] = BOS
    out, att = model(src, lengths, tgt_in, return_attention=True)
    other = src.copy()
    for b, n in enumerate(lengths):
        other[b, n:] = rng.integers(3, 9, size=6 - n)  # garbage where the padding was
    out2, att2 = model(other, lengths, tgt_in, return_attention=True)
    np.testing.assert_array_equal(out.array, out2.array)
    for b, n in enumerate(lengths):
        assert (att.array[b, :, n:] == 0).all()
    # A padded batch row equals the same sentence decoded alone.
    alone = model(src[1:2, :2], lengths[1:2], tgt_in[1:2])
    np.testing.assert_allclose(out.array[1], alone.array[0], rtol=1e-5, atol=1e-6)
    # Target padding (IGNORE_INDEX) gets no gradient: the loss ignores it.
    target = rng.integers(3, 5, size=(4, 5))
    target[0, 3:] = -100
    model.train()
    loss = F.cross_entropy(model(src, lengths, tgt_in).reshape(-1, 5), mg.tensor(target.reshape(-1)))
    loss.backward()
    grads = {n: p.grad.array.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    changed = tgt_in.copy()
    changed[0, 4] = 4 if changed[0, 4] == 3 else 3  # the input after the last scored step
    F.cross_entropy(model(src, lengths, changed).reshape(-1, 5), mg.tensor(target.reshape(-1))).backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.array, grads[n], rtol=1e-5, atol=1e-7, err_msg=n)


def test_scheduled_sampling_reads_own_predictions():
    model = _model()
    rng = np.random.default_rng(7)
    src, lengths = _batch(rng)
    tgt_in = rng.integers(3, 5, size=(4, 5))
    tgt_in[:, 0] = BOS
    forced = model(src, lengths, tgt_in).array
    mg.manual_seed(0)
    np.testing.assert_array_equal(model(src, lengths, tgt_in, sampling_ratio=0.0).array, forced)
    sampled = model(src, lengths, tgt_in, sampling_ratio=1.0).array
    np.testing.assert_array_equal(sampled[:, 0], forced[:, 0])  # step 0 always reads BOS
    assert not np.allclose(sampled, forced)
    # ratio 1 feeds back the argmax: the same as greedy's first steps, teacher-forced on them.
    own = [BOS]
    for t in range(4):
        own.append(int(sampled[0, t].argmax()))
    refed = model(src[:1], lengths[:1], np.array([own])).array[0]
    np.testing.assert_allclose(refed, sampled[0], rtol=1e-5, atol=1e-6)
    model.eval()  # no sampling at evaluation
    np.testing.assert_array_equal(model(src, lengths, tgt_in, sampling_ratio=1.0).array, forced)
    with pytest.raises(ValueError, match="sampling_ratio"):
        model(src, lengths, tgt_in, sampling_ratio=1.5)


def test_gradients_match_finite_differences():
    model = _model(hidden=4, emb=3, encoder=mg.nn.GRU(3, 2, bidirectional=True, batch_first=True)).double()
    rng = np.random.default_rng(8)
    src, lengths = _batch(rng, B=2, S=4)
    lengths = np.array([4, 2])
    tgt_in = np.array([[BOS, 3, 4], [BOS, 4, 3]])
    target = np.array([[3, 4, EOS], [4, EOS, -100]])
    params = list(model.parameters())

    def loss():
        out = model(src, lengths, tgt_in)
        return F.cross_entropy(out.reshape(-1, 5), mg.tensor(target.reshape(-1)))

    model.zero_grad()
    loss().backward()
    for p in params[:: max(1, len(params) // 8)]:
        flat = p.array.reshape(-1)
        idx = np.random.default_rng(0).choice(flat.size, size=min(4, flat.size), replace=False)
        for i in idx:
            old = flat[i]
            flat[i] = old + 1e-6
            up = float(loss().item())
            flat[i] = old - 1e-6
            down = float(loss().item())
            flat[i] = old
            np.testing.assert_allclose(p.grad.array.reshape(-1)[i], (up - down) / 2e-6, rtol=1e-4, atol=1e-7)


def test_bad_decode_arguments():
    model = _model()
    src, lengths = _batch(np.random.default_rng(0))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, lengths, beam_size=0)
    with pytest.raises(ValueError, match="n_best"):
        beam_search(model, src, lengths, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, src, lengths, max_len=0)
