"""A seq2seq training step with attention, microgradnn against the same model in PyTorch CPU.

    python benchmarks/bench_seq2seq.py            # about a minute
    python benchmarks/bench_seq2seq.py --quick    # fewer repeats

Workload (float32): source and target vocabularies of 500, embeddings 128, a
bidirectional LSTM encoder of 256 per direction, an LSTM-cell decoder of 256 with input
feeding, additive (Bahdanau) attention of 256, T 30 -> 30, B 64, the source padded to
random lengths 20..30; cross-entropy over every target position, ``loss.backward()``,
one Adam step. The PyTorch model below is written out by hand with the same layout and
parameter names as :class:`microgradnn.nn.seq2seq.Seq2Seq` (Luong et al. 2015's
attentional decoder with Bahdanau's score), its state_dict is loaded into microgradnn,
and the first two losses must agree before anything is timed.

Timing as in ``bench_train_step.py``: ``torch.set_num_threads(2)``, each side in its own
blocks of repeats, the blocks alternating, medians; ratio = microgradnn / torch. The
machine is shared and noisy: compare the ratio of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train_step import blocks, check_losses  # noqa: E402

V, E, H, A, T, S, B = 500, 128, 256, 256, 30, 30, 64
TARGET = 1.2


def torch_model():
    import torch
    from torch import nn

    class Additive(nn.Module):
        def __init__(self):
            super().__init__()
            self.query_proj = nn.Linear(H, A, bias=False)
            self.key_proj = nn.Linear(2 * H, A)
            self.v = nn.Parameter(torch.empty(A).uniform_(-A ** -0.5, A ** -0.5))

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embedding = nn.Embedding(V, E, padding_idx=0)
            self.encoder = nn.LSTM(E, H, bidirectional=True, batch_first=True)
            self.tgt_embedding = nn.Embedding(V, E, padding_idx=0)
            self.decoder = nn.ModuleList([nn.LSTMCell(E + H, H)])
            self.bridge = nn.ModuleList([nn.Linear(2 * H, H), nn.Linear(2 * H, H)])
            self.attention = Additive()
            self.combine = nn.Linear(H + 2 * H, H, bias=False)
            self.out = nn.Linear(H, V)

        def forward(self, src, lengths, tgt_in):
            emb = self.src_embedding(src)
            packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
            out, (h_n, c_n) = self.encoder(packed)
            keys, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
            mask = torch.arange(src.shape[1])[None, :] < lengths[:, None]
            projected = self.attention.key_proj(keys)
            h = torch.tanh(self.bridge[0](torch.cat([h_n[-2], h_n[-1]], 1)))
            c = torch.tanh(self.bridge[1](torch.cat([c_n[-2], c_n[-1]], 1)))
            feed = keys.new_zeros(src.shape[0], H)
            embedded = self.tgt_embedding(tgt_in)
            hiddens = []
            for t in range(tgt_in.shape[1]):
                h, c = self.decoder[0](torch.cat([embedded[:, t], feed], 1), (h, c))
                scores = torch.tanh(projected + self.attention.query_proj(h)[:, None]) @ self.attention.v
                weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
                context = (weights[:, None] @ keys)[:, 0]
                feed = torch.tanh(self.combine(torch.cat([h, context], 1)))
                hiddens.append(feed)
            return self.out(torch.stack(hiddens, 1))

    torch.manual_seed(0)
    return Seq2Seq()


def build_steps() -> dict:
    import torch

    import microgradnn as mg
    from microgradnn.nn.attention import AdditiveAttention
    from microgradnn.nn.seq2seq import Seq2Seq

    rng = np.random.default_rng(0)
    lengths = rng.integers(20, S + 1, size=B)
    lengths[0] = S
    src = rng.integers(3, V, size=(B, S))
    for b, n in enumerate(lengths):
        src[b, n:] = 0
    tgt_in = rng.integers(3, V, size=(B, T))
    tgt_in[:, 0] = 1
    y = rng.integers(3, V, size=(B, T)).reshape(-1)

    t_model = torch_model()
    t_opt = torch.optim.Adam(t_model.parameters(), lr=1e-3)
    t_src, t_len, t_tgt, t_y = (torch.from_numpy(a) for a in (src, lengths, tgt_in, y))

    def torch_step():
        t_opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(t_model(t_src, t_len, t_tgt).reshape(-1, V), t_y)
        loss.backward()
        t_opt.step()
        return loss

    m_model = Seq2Seq(V, V, mg.nn.LSTM(E, H, bidirectional=True, batch_first=True), mg.nn.LSTMCell,
                      hidden_size=H, embedding_dim=E, attention=AdditiveAttention,
                      attention_options={"attention_size": A})
    m_model.load_state_dict(t_model.state_dict())
    m_opt = mg.optim.Adam(m_model.parameters(), lr=1e-3)
    m_y = mg.tensor(y)
    ce = mg.nn.functional.cross_entropy

    def mg_step():
        m_opt.zero_grad()
        loss = ce(m_model(src, lengths, tgt_in).reshape(-1, V), m_y)
        loss.backward()
        m_opt.step()
        return loss

    return {"mg": mg_step, "torch": torch_step}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    import torch

    import microgradnn as mg

    torch.set_num_threads(2)
    repeat = 2 if args.quick else 5
    print(f"microgradnn {mg.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}; medians over 4 alternating blocks of {repeat} steps per side")
    steps = build_steps()
    check_losses(steps, "seq2seq")
    r = blocks(steps, repeat)
    mg_ms, t_ms = r["mg"]["median"] * 1e3, r["torch"]["median"] * 1e3
    ratio = mg_ms / t_ms
    print(f"{'seq2seq biLSTM256 > LSTMCell256 + additive attn, T30>30 B64, Adam':66} "
          f"{mg_ms:8.1f} ms {t_ms:8.1f} ms {ratio:6.2f}x   target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}")
    print(f"{'':66} best-of: {r['mg']['best'] * 1e3:.1f} ms vs {r['torch']['best'] * 1e3:.1f} ms")
    return {"microgradnn_ms": mg_ms, "torch_ms": t_ms, "ratio": ratio}


if __name__ == "__main__":
    main()
