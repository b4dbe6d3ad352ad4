"""The ``seq2seq`` task: build an encoder–decoder from spec options, its loss, its scores.

What the trainer needs from a task, for translation:

* :func:`build` — a :class:`~microgradnn.nn.seq2seq.Seq2Seq` sized to the data's two
  vocabularies, the encoder built by the same rule as every spec's recurrent stack
  (fused ``nn.LSTM``/``GRU``/``RNN`` for the built-in cells, ``nn.Recurrent`` for a
  plugin's), the decoder from the registered cell class;
* :func:`loss` — teacher-forced (optionally scheduled-sampling) cross-entropy, padding
  skipped (``y`` holds IGNORE_INDEX there);
* :func:`evaluate` — decode the validation sources (greedy or beam) and score them:
  corpus BLEU and chrF (both sacreBLEU's definitions) and exact-match accuracy;
* :func:`translate` — texts in, texts out (``mgnn generate``), with the attention matrix.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..autograd import no_grad
from ..metrics import bleu, chrf
from .. import registry
from ..models import build_recurrent
from ..nn import functional as F
from ..nn.seq2seq import Seq2Seq, beam_search, greedy_decode
from ..tensor import Tensor

__all__ = ["build", "loss", "evaluate", "translate", "decode", "FINETUNE_DEFAULTS"]

#: What each fine-tuning strategy adapts in a Seq2Seq when the spec names no targets: the
#: encoder's and decoder's recurrent weights (the generic defaults name a SequenceModel's
#: ``rnn``). ``None``: the strategy does not fit this model, with the reason.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "freeze": {"targets": ["src_embedding.*", "encoder.*_l0", "encoder.*_l0_reverse"]},
    "lora": {"targets": ["encoder.weight_*", "decoder.*.weight_*"]},
    "adalora": {"targets": ["encoder.weight_*", "decoder.*.weight_*"]},
    "ia3": {"modules": ["encoder", "decoder.*"]},
    "adapter": {"after": ["encoder"]},
    "prefix": {"modules": ["encoder"]},
    "prompt": "a Seq2Seq has no prompt slot (prompt tuning prepends to a SequenceModel's inputs); use prefix",
}


def _decoder_cell(cell: Any) -> Callable:
    """The decoder steps one token at a time, so it needs the cell itself: a registered
    name's class (``lstm`` -> ``nn.LSTMCell``, ``rnn_relu`` -> its factory) or a class."""
    return registry.get("cells", cell) if isinstance(cell, str) else cell


def build(data: Any, *, encoder_cell: Any = "lstm", decoder_cell: Any = "lstm", hidden_size: int = 128,
          embedding_dim: int = 64, num_layers: int = 1, bidirectional: bool = True, decoder_layers: int = 1,
          dropout: float = 0.0, attention: Callable | None = None, attention_options: dict | None = None,
          encoder_options: dict | None = None, decoder_options: dict | None = None,
          encoder_hidden_size: int | None = None, sampling_ratio: float = 0.0) -> Seq2Seq:
    """A Seq2Seq for ``data`` (a :class:`~microgradnn.data.Seq2SeqData`). ``encoder_cell``
    as ``SequenceModel``'s ``cell`` (a built-in name or a cell class); ``decoder_cell`` a
    built-in name or a cell class. The encoder's size defaults to ``hidden_size`` (per
    direction)."""
    encoder = build_recurrent(encoder_cell, embedding_dim, encoder_hidden_size or hidden_size, num_layers, dropout,
                              bidirectional, None, dict(encoder_options or {}))
    return Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), encoder, _decoder_cell(decoder_cell),
                   hidden_size=hidden_size, embedding_dim=embedding_dim, attention=attention,
                   attention_options=attention_options, decoder_options=decoder_options,
                   decoder_layers=decoder_layers, dropout=dropout, bos_id=data.tgt_vocab.bos_id,
                   eos_id=data.tgt_vocab.eos_id, src_padding_idx=data.src_vocab.pad_id,
                   tgt_padding_idx=data.tgt_vocab.pad_id, sampling_ratio=sampling_ratio)


def build_from_spec(m: Any, info: Any) -> Seq2Seq:
    """The spec's ``model`` section (a ModelSpec) and the data's sizes (ModelInfo:
    ``vocab_size`` the source's, ``output_size`` the target's) -> the model ``mgnn train``
    trains. The special ids are :class:`~microgradnn.data.seq2seq.TokenVocab`'s."""
    from ..data.seq2seq import TokenVocab

    encoder = build_recurrent(m.cell.name, m.embedding_dim, m.hidden_size, m.num_layers, m.dropout,
                              m.bidirectional, None, m.cell.kwargs())
    decoder = m.decoder_cell if m.decoder_cell is not None else m.cell
    attention = registry.get("attention", m.attention.name) if m.attention is not None else None
    return Seq2Seq(int(info["vocab_size"]), int(info["output_size"]), encoder, _decoder_cell(decoder.name),
                   hidden_size=m.hidden_size, embedding_dim=m.embedding_dim, attention=attention,
                   attention_options=m.attention.kwargs() if m.attention is not None else None,
                   decoder_options=m.decoder_cell.kwargs() if m.decoder_cell is not None else None,
                   decoder_layers=m.decoder_layers, dropout=m.dropout, bos_id=TokenVocab.bos_id,
                   eos_id=TokenVocab.eos_id, src_padding_idx=TokenVocab.pad_id, tgt_padding_idx=TokenVocab.pad_id,
                   sampling_ratio=m.sampling_ratio)


def loss(model: Seq2Seq, batch: Any, sampling_ratio: float | None = None) -> tuple[Tensor, Tensor, int]:
    """(mean cross-entropy over the real target tokens, logits, how many tokens)."""
    logits = model(batch.x, batch.lengths, batch.tgt_in, sampling_ratio=sampling_ratio)
    target = np.asarray(batch.y).reshape(-1)
    value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), model.ids(target))
    return value, logits, int((target >= 0).sum())


def decode(model: Seq2Seq, src: np.ndarray, lengths: np.ndarray, beam_size: int = 1, max_len: int = 50,
           alpha: float = 0.0) -> list[list[int]]:
    """Token ids of the best translation of each source row."""
    if beam_size == 1:
        return [h.tokens for h in greedy_decode(model, src, lengths, max_len=max_len)]
    return [b[0].tokens for b in beam_search(model, src, lengths, beam_size=beam_size, max_len=max_len, alpha=alpha)]


def evaluate(model: Seq2Seq, data: Any, batch_size: int = 64, beam_size: int = 1, max_len: int | None = None,
             alpha: float = 0.0) -> dict[str, float]:
    """Decode every validation source; corpus BLEU, chrF (in [0, 1]) and exact match.

    The references are the validation targets as the vocabulary sees them (tokens joined
    by spaces for words), so BLEU compares tokens, not raw spelling. ``max_len`` defaults
    to twice the longest target plus 5."""
    if data.val is None:
        return {}
    refs = [data.tgt_vocab.decode(t) for t in data.val.targets]
    limit = max_len or 2 * max(len(t) for t in data.val.targets) + 5
    hyps: list[str] = []
    for batch in data.val_batches(batch_size):
        for ids in decode(model, batch.x, batch.lengths, beam_size, limit, alpha):
            hyps.append(data.tgt_vocab.decode(ids))
    return {"bleu": bleu(hyps, refs), "chrf": chrf(hyps, refs),
            "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)]))}


def translate(model: Seq2Seq, src_vocab: Any, tgt_vocab: Any, texts: Sequence[str], beam_size: int = 1,
              max_len: int = 50, alpha: float = 0.0, attention: bool = False) -> list[dict[str, Any]]:
    """Translate each text; with ``attention``, also the (T, S) weights of its translation
    (the translation fed back teacher-forced: the same weights the decoder used)."""
    out = []
    for text in texts:
        ids = src_vocab.encode(text)
        if not ids:
            out.append({"source": text, "translation": "", "tokens": [], "source_tokens": []})
            continue
        src = np.array([ids], dtype=np.int64)
        lengths = np.array([len(ids)])
        tokens = decode(model, src, lengths, beam_size, max_len, alpha)[0]
        item: dict[str, Any] = {"source": text, "translation": tgt_vocab.decode(tokens),
                                "tokens": [tgt_vocab.itos[i] for i in tokens] + ["<eos>"],
                                "source_tokens": [src_vocab.itos[i] for i in ids]}
        if attention and model.attention is not None:
            was = model.training
            model.eval()
            with no_grad():
                _, w = model(src, lengths, np.array([[tgt_vocab.bos_id] + tokens]), return_attention=True)
            model.train(was)
            item["attention"] = np.asarray(w.array[0], dtype=np.float64)
        out.append(item)
    return out
