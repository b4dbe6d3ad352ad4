"""Encoder–decoder ("sequence to sequence") models with attention, and how to decode them.

The model of Sutskever et al. (2014) with the attention of Bahdanau et al. (2015) and
Luong et al. (2015), in the Luong layout with "input feeding"::

    encoder:   e_1 .. e_S = Encoder(embed(x_1 .. x_S))                 (B, S, D*H_enc)
    bridge:    s_0 = tanh(W_b [top layer's final states, both directions])
    step t:    s_t = Cell([embed(y_{t-1}); h~_{t-1}], s_{t-1})        decoder state
               c_t, a_t = Attention(query=s_t, keys=e, mask=real source positions)
               h~_t = tanh(W_c [s_t; c_t])                              attentional state
               p(y_t | y_<t, x) = softmax(W_o h~_t)

Feeding ``h~_{t-1}`` back in tells the decoder where it looked last, which helps it move
along the source monotonically. Without attention (``attention=None``) the decoder sees
the source only through ``s_0``: everything about a sentence has to squeeze through one
vector, the bottleneck attention removes.

* Training is teacher forced: step t reads the true ``y_{t-1}``. ``sampling_ratio`` > 0 is
  scheduled sampling (Bengio et al. 2015): each row, at each step, reads the model's own
  previous argmax instead, with that probability, so training sees its own mistakes.
* :func:`greedy_decode` takes the argmax at every step; :func:`beam_search` keeps the
  ``beam_size`` best partial translations, batched over sentences and beams.

The encoder is any sequence layer (``nn.LSTM``/``GRU``/``RNN`` or ``nn.Recurrent`` over a
plugin cell; multi-layer, bidirectional), the decoder any cell class following the runner
convention ``cell.step(x, state) -> (h, new_state)``. Padding is handled on both sides:
``src_lengths`` keep padding out of the encoder's final state and, as the attention mask,
out of every context vector; the target's padding is IGNORE_INDEX in the loss.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from ..autograd import no_grad
from ..backend import to_host
from ..tensor import Tensor, cat, rand, stack, zeros
from .attention import Attention, lengths_to_mask
from .layers import Dropout, Embedding, Linear, ModuleList
from .module import Module

__all__ = ["Seq2Seq", "Memory", "greedy_decode", "beam_search", "length_penalty", "Hypothesis"]


def _parts(state: Any) -> tuple:
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


class Memory(NamedTuple):
    """What the decoder reads from the encoder at every step: ``keys`` (B, S, K) the
    encoder outputs, ``projected`` the attention's query-independent part of them, ``mask``
    (B, S) bool (True at real source positions)."""

    keys: Tensor
    projected: Tensor | None
    mask: Any

    def select(self, rows: np.ndarray) -> "Memory":
        """The memory of the given batch rows (beam search copies a sentence per beam)."""
        return Memory(self.keys[rows], None if self.projected is None else self.projected[rows], self.mask[rows])


class Seq2Seq(Module):
    """An encoder–decoder with optional attention (see the module docstring).

    Args:
        src_vocab_size, tgt_vocab_size: the two vocabularies' sizes.
        encoder: a batch-first sequence layer reading ``embedding_dim`` features,
            ``encoder(x, lengths=...) -> (outputs (B, S, D*H), h_n)``.
        decoder_cell: a cell class or factory ``cell(input_size, hidden_size, **options)``.
        hidden_size: the decoder's state size.
        attention: an :class:`~microgradnn.nn.attention.Attention` class or factory
            ``(query_size, key_size, **options)``, or None for the plain encoder–decoder.
        decoder_layers: decoder cells stacked (dropout between them).
        bos_id, eos_id: the target vocabulary's begin/end-of-sentence ids.
        src_padding_idx, tgt_padding_idx: the embeddings' padding rows.
        sampling_ratio: the scheduled-sampling probability ``forward`` uses in training
            when it is not given one.

    ``forward(src, src_lengths, tgt_in, sampling_ratio=0.0, return_attention=False)``
    -> logits (B, T, tgt_vocab_size) (and the attention weights (B, T, S)).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, encoder: Module, decoder_cell: Callable, *,
                 hidden_size: int = 128, embedding_dim: int = 64, attention: Callable | None = None,
                 attention_options: dict | None = None, decoder_options: dict | None = None,
                 decoder_layers: int = 1, dropout: float = 0.0, bos_id: int = 1, eos_id: int = 2,
                 src_padding_idx: int | None = 0, tgt_padding_idx: int | None = 0, sampling_ratio: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= float(sampling_ratio) <= 1.0:
            raise ValueError(f"Seq2Seq: sampling_ratio must be in [0, 1], got {sampling_ratio!r}")
        self.sampling_ratio = float(sampling_ratio)
        if isinstance(decoder_layers, bool) or not isinstance(decoder_layers, int) or decoder_layers < 1:
            raise ValueError(f"Seq2Seq: decoder_layers must be a positive int, got {decoder_layers!r}")
        self.bos_id, self.eos_id = int(bos_id), int(eos_id)
        self.hidden_size = hidden_size
        self.tgt_vocab_size = tgt_vocab_size
        self.src_embedding = Embedding(src_vocab_size, embedding_dim, padding_idx=src_padding_idx)
        self.encoder = encoder
        directions = 2 if getattr(encoder, "bidirectional", False) else 1
        self.encoder_size = encoder.hidden_size * directions
        self.tgt_embedding = Embedding(tgt_vocab_size, embedding_dim, padding_idx=tgt_padding_idx)
        feed = hidden_size if attention is not None else 0
        options = dict(decoder_options or {})
        self.decoder = ModuleList(
            [decoder_cell(embedding_dim + feed if k == 0 else hidden_size, hidden_size, **options)
             for k in range(decoder_layers)])
        probe = self._zero_state(self.decoder[0], 1)
        enc_parts = self._encoder_parts()
        # One bridge per state part the encoder and decoder share (an LSTM's h and c; a GRU's h).
        self.bridge = ModuleList([Linear(self.encoder_size, p.shape[-1]) for p in _parts(probe)[:enc_parts]])
        if attention is not None:
            self.attention = attention(hidden_size, self.encoder_size, **(attention_options or {}))
            if not isinstance(self.attention, Attention):
                raise TypeError(f"Seq2Seq: attention must build an nn.attention.Attention, got {type(self.attention).__name__}")
            self.combine = Linear(hidden_size + self.encoder_size, hidden_size, bias=False)
        else:
            self.register_module("attention", None)
            self.register_module("combine", None)
        self.drop = Dropout(dropout)
        self.out = Linear(hidden_size, tgt_vocab_size)

    # -- pieces ----------------------------------------------------------------------------
    def ids(self, tokens: Any) -> Tensor:
        """Token ids as an int64 tensor on the model's device (numpy input is copied there)."""
        if isinstance(tokens, Tensor):
            return tokens
        backend = self.src_embedding.weight._backend
        return Tensor(backend.xp.asarray(np.asarray(tokens, dtype=np.int64)), backend)

    def _encoder_parts(self) -> int:
        """How many tensors the encoder's state has (2 for an LSTM's (h, c))."""
        probe = self.encoder(zeros(1, 1, self.src_embedding.embedding_dim,
                                   dtype=self.src_embedding.weight.dtype, device=self.src_embedding.weight._backend))[1]
        return len(_parts(probe))

    @staticmethod
    def _zero_state(cell: Module, batch: int, like: Tensor | None = None) -> Any:
        device = like._backend if like is not None else None
        dtype = like.dtype if like is not None else None
        if hasattr(cell, "init_state"):
            return cell.init_state(batch, device, dtype)
        first = next(iter(cell.parameters()))
        return zeros(batch, cell.hidden_size, dtype=first.dtype, device=first._backend)

    def encode(self, src: Any, src_lengths: Any = None) -> tuple[Memory, list]:
        """Run the encoder; return the decoder's memory and its initial state per layer."""
        src = self.ids(src)
        emb = self.drop(self.src_embedding(src))
        if src_lengths is not None:
            src_lengths = to_host(src_lengths).astype(np.int64)
            keys, h_n = self.encoder(emb, lengths=src_lengths)
        else:
            keys, h_n = self.encoder(emb)
        B, S = src.shape
        mask = (lengths_to_mask(src_lengths, S, keys._backend.xp) if src_lengths is not None
                else keys._backend.xp.ones((B, S), dtype=bool))
        projected = self.attention.project_keys(keys) if self.attention is not None else None
        directions = 2 if getattr(self.encoder, "bidirectional", False) else 1
        top = [cat(list(p[-directions:]), 1) if directions > 1 else p[-1] for p in _parts(h_n)]  # (B, D*H) each
        state0 = list(_parts(self._zero_state(self.decoder[0], B, keys)))
        for i, bridge in enumerate(self.bridge):
            state0[i] = bridge(top[i]).tanh()
        first = tuple(state0) if len(state0) > 1 else state0[0]
        states = [first] + [self._zero_state(c, B, keys) for c in list(self.decoder)[1:]]
        return Memory(keys, projected, mask), states

    def initial_feed(self, memory: Memory) -> Tensor | None:
        if self.attention is None:
            return None
        return zeros(memory.keys.shape[0], self.hidden_size, dtype=memory.keys.dtype, device=memory.keys._backend)

    def step(self, emb_t: Tensor, states: list, feed: Tensor | None, memory: Memory) -> tuple:
        """One decoder step from the embedded previous token (B, E).
        Returns ``(h~_t (B, H), new states, attention weights (B, S) or None)``."""
        inp = emb_t if feed is None else cat([emb_t, feed], 1)
        new_states = []
        for k, cell in enumerate(self.decoder):
            h, state = cell.step(inp, states[k]) if hasattr(cell, "step") else cell(inp, states[k])
            new_states.append(state)
            inp = self.drop(h) if k < len(self.decoder) - 1 else h
        if self.attention is None:
            return inp, new_states, None
        context, weights = self.attention(inp, memory.keys, memory.mask, projected=memory.projected)
        return self.combine(cat([inp, context], 1)).tanh(), new_states, weights

    def logits(self, hidden: Tensor) -> Tensor:
        return self.out(self.drop(hidden))

    # -- training --------------------------------------------------------------------------
    def forward(self, src: Any, src_lengths: Any, tgt_in: Any, sampling_ratio: float | None = None,
                return_attention: bool = False) -> Any:
        """Teacher-forced logits (B, T, V) for ``tgt_in`` (B, T) (BOS first). With
        ``sampling_ratio`` p > 0 (training only), each row reads its own previous argmax
        instead of the true token with probability p at each step."""
        sampling_ratio = self.sampling_ratio if sampling_ratio is None else sampling_ratio
        if not 0.0 <= float(sampling_ratio) <= 1.0:
            raise ValueError(f"Seq2Seq: sampling_ratio must be in [0, 1], got {sampling_ratio!r}")
        tgt_in = self.ids(tgt_in)
        memory, states = self.encode(src, src_lengths)
        feed = self.initial_feed(memory)
        sampling = sampling_ratio > 0 and self.training
        T = tgt_in.shape[1]
        hiddens, weights, step_logits = [], [], []
        embedded = None if sampling else self.drop(self.tgt_embedding(tgt_in)).unbind(1)
        for t in range(T):
            if sampling:
                tokens = to_host(tgt_in.array[:, t])
                if t > 0:
                    own = to_host(step_logits[-1].array).argmax(-1)
                    use_own = to_host(rand(tokens.shape[0]).array) < sampling_ratio
                    tokens = np.where(use_own, own, tokens)
                emb_t = self.drop(self.tgt_embedding(self.ids(tokens)))
            else:
                emb_t = embedded[t]
            hidden, states, w = self.step(emb_t, states, feed, memory)
            feed = hidden if self.attention is not None else None
            if sampling:
                step_logits.append(self.logits(hidden))
            hiddens.append(hidden)
            if w is not None:
                weights.append(w)
        out = stack(step_logits, 1) if sampling else self.logits(stack(hiddens, 1))  # one GEMM for all steps
        if return_attention:
            return out, (stack(weights, 1) if weights else None)
        return out


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------


class Hypothesis(NamedTuple):
    """A finished translation: token ids (EOS excluded), summed log-probability, the score
    it was ranked by (log-probability / length penalty)."""

    tokens: list
    log_prob: float
    score: float


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty ((5 + n) / 6) ** alpha (Wu et al. 2016): alpha = 0 ranks by
    total log-probability (which favours short outputs); larger alpha favours longer ones."""
    return ((5.0 + length) / 6.0) ** alpha


def _check_decode_args(max_len: int, beam_size: int = 1) -> None:
    for name, value in (("max_len", max_len), ("beam_size", beam_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"decode: {name} must be a positive int, got {value!r}")


def _log_probs(model: Seq2Seq, hidden: Tensor) -> np.ndarray:
    """Next-token log-probabilities (float64 on the host); padding and BOS are never produced."""
    logp = to_host(model.logits(hidden).log_softmax(-1).array).astype(np.float64)
    for never in {model.bos_id, model.tgt_embedding.padding_idx} - {None, model.eos_id}:
        logp[:, never] = -np.inf
    return logp


def greedy_decode(model: Seq2Seq, src: Any, src_lengths: Any = None, max_len: int = 50) -> list[Hypothesis]:
    """The argmax token at every step until EOS (or ``max_len`` tokens), per sentence."""
    _check_decode_args(max_len)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            memory, states = model.encode(src, src_lengths)
            B = memory.keys.shape[0]
            feed = model.initial_feed(memory)
            tokens = np.full(B, model.bos_id, dtype=np.int64)
            out = [[] for _ in range(B)]
            log_prob = np.zeros(B)
            done = np.zeros(B, dtype=bool)
            for _ in range(max_len):
                hidden, states, _w = model.step(model.tgt_embedding(model.ids(tokens)), states, feed, memory)
                feed = hidden if model.attention is not None else None
                logp = _log_probs(model, hidden)
                tokens = logp.argmax(-1)
                for b in np.nonzero(~done)[0]:
                    log_prob[b] += logp[b, tokens[b]]
                    if tokens[b] == model.eos_id:
                        done[b] = True
                    else:
                        out[b].append(int(tokens[b]))
                if done.all():
                    break
    finally:
        model.train(was_training)
    return [Hypothesis(o, float(lp), float(lp)) for o, lp in zip(out, log_prob)]


def _select_states(states: list, rows: np.ndarray) -> list:
    return [tuple(p[rows] for p in s) if isinstance(s, (tuple, list)) else s[rows] for s in states]


def beam_search(model: Seq2Seq, src: Any, src_lengths: Any = None, beam_size: int = 4, max_len: int = 50,
                alpha: float = 0.0, n_best: int = 1) -> list[list[Hypothesis]]:
    """Beam search, batched over sentences and beams: ``n_best`` hypotheses per sentence,
    best first.

    Each sentence keeps ``beam_size`` partial translations (rows ``b * beam_size + k`` of
    one batch). At every step each live beam proposes every next token; the ``beam_size``
    best proposals by total log-probability survive. A proposal that ends in EOS (or
    reaches ``max_len`` tokens) is finished and leaves the beam, which then has one live
    slot fewer: so ``beam_size=1`` is exactly greedy decoding, and a beam wide enough to
    keep every prefix is exactly exhaustive search. Finished translations are ranked by
    ``log_prob / length_penalty(len, alpha)``, the length counting EOS.
    """
    _check_decode_args(max_len, beam_size)
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam_size:
        raise ValueError(f"beam_search: n_best must be an int in 1..beam_size ({beam_size}), got {n_best!r}")
    K = beam_size
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            memory, states = model.encode(src, src_lengths)
            B = memory.keys.shape[0]
            rows = np.repeat(np.arange(B), K)  # beam slot -> its sentence
            memory, states = memory.select(rows), _select_states(states, rows)
            feed = model.initial_feed(memory)
            score = np.full((B, K), -np.inf)
            score[:, 0] = 0.0  # one live beam to start with (the others would be copies of it)
            history = np.zeros((B, K, 0), dtype=np.int64)
            tokens = np.full(B * K, model.bos_id, dtype=np.int64)
            finished: list[list[Hypothesis]] = [[] for _ in range(B)]
            for t in range(max_len):
                hidden, states, _w = model.step(model.tgt_embedding(model.ids(tokens)), states, feed, memory)
                feed = hidden if model.attention is not None else None
                logp = _log_probs(model, hidden).reshape(B, K, -1)
                V = logp.shape[-1]
                cand = (score[:, :, None] + logp).reshape(B, K * V)
                best = np.argsort(-cand, axis=1, kind="stable")[:, :K]  # (B, K) flat (beam, token) ids
                best_score = np.take_along_axis(cand, best, 1)
                origin, token = best // V, best % V
                history = np.concatenate([np.take_along_axis(history, origin[:, :, None], 1), token[:, :, None]], 2)
                ends = (token == model.eos_id) | (t == max_len - 1)
                for b, k in zip(*np.nonzero(ends & np.isfinite(best_score))):
                    seq = history[b, k].tolist()
                    body = seq[:-1] if seq[-1] == model.eos_id else seq
                    finished[b].append(Hypothesis(body, float(best_score[b, k]),
                                                  float(best_score[b, k]) / length_penalty(len(seq), alpha)))
                score = np.where(ends, -np.inf, best_score)
                if not np.isfinite(score).any():
                    break
                slot = (np.arange(B)[:, None] * K + origin).reshape(-1)
                states = _select_states(states, slot)
                feed = None if feed is None else feed[slot]
                tokens = token.reshape(-1).astype(np.int64)
    finally:
        model.train(was_training)
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]
