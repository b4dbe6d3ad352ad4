"""csv/jsonl with a vocabulary that has no padding entry (a pretrained character LM's).

A character LM's vocabulary has no ``<pad>``: its streams are never padded. Fine-tuning
that LM into a classifier reads csv/jsonl lines with *its* vocabulary (the embedding's rows
mean those characters), and the lines must be padded into batches. Padding then reuses
id 0, a real character; these tests show that this changes nothing, because the batches
carry ``lengths`` and the recurrent layers stop each row at its length.
"""

from __future__ import annotations

import csv as _csv

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.data import Vocab, csv, jsonl
from microgradnn.models import SequenceModel

LINES = [("x = compute(a, b)", "code"), ("the value of x", "comment"), ("return None", "code"),
         ("Return the mean.", "docstring"), ("if n > 0:", "code"), ("see the note above", "comment"),
         ("Args: a list", "docstring"), ("y += 1", "code")]


def lm_vocab() -> Vocab:
    """What ``charlm`` builds: no pad, unk at id 0."""
    return Vocab.build("".join(t for t, _ in LINES)[:-3], pad=False, unk=True)  # a few chars left unknown


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = _csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_vocab_without_pad_is_accepted_and_padding_reuses_id_0(tmp_path, fmt):
    vocab = lm_vocab()
    assert vocab.pad_id is None and vocab.unk_id == 0
    if fmt == "csv":
        dm = csv(str(write_csv(tmp_path / "l.csv", LINES)), val_fraction=0.25, vocab=vocab.to_dict())
    else:
        import json

        path = tmp_path / "l.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in LINES))
        dm = jsonl(str(path), val_fraction=0.25, vocab=vocab)
    assert dm.vocab == vocab  # the LM's ids, unchanged: the embedding rows keep their meaning
    batch = next(iter(dm.train_batches(6, epoch=0, seed=0)))
    for row, n in zip(batch.x, batch.lengths):
        assert (row[n:] == 0).all()  # padded with id 0 ...
        assert n == len(row) or n < batch.x.shape[1]
    texts = {vocab.decode(row[:n]) for row, n in zip(batch.x, batch.lengths)}
    known = {"".join(c if c in vocab.stoi else "\ufffd" for c in t) for t, _ in LINES}
    assert texts <= known  # ... and the real characters are the lines' own


def test_padding_with_a_real_character_changes_neither_outputs_nor_gradients():
    """Batches padded with id 0 (a real character here) against each line run alone, in
    float64: the same logits and the same gradient for every parameter, uni- and
    bidirectional, so training on padded batches is training on the lines."""
    vocab = lm_vocab()
    rng = np.random.default_rng(7)
    ids = [vocab.encode_array(t) for t, _ in LINES[:5]]
    lengths = [len(s) for s in ids]
    x = np.zeros((len(ids), max(lengths)), dtype=np.int64)
    for i, s in enumerate(ids):
        x[i, : len(s)] = s
    assert (x == 0).any()  # some rows are padded
    for bidirectional in (False, True):
        mg.manual_seed(int(rng.integers(1000)))
        model = SequenceModel(3, vocab_size=len(vocab), embedding_dim=6, hidden_size=7, num_layers=2,
                              task="classification", bidirectional=bidirectional).double()
        weights = rng.standard_normal((len(ids), 3))  # a random, non-uniform upstream gradient
        out, _ = model(mg.tensor(x), lengths=lengths)
        (out * mg.tensor(weights)).sum().backward()
        padded = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
        logits = out.detach().numpy()
        model.zero_grad()
        total = None
        for i, s in enumerate(ids):
            o, _ = model(mg.tensor(s[None]))
            np.testing.assert_allclose(o.detach().numpy()[0], logits[i], rtol=1e-12, atol=1e-12)
            term = (o * mg.tensor(weights[i: i + 1])).sum()
            total = term if total is None else total + term
        total.backward()
        for n, p in model.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), padded[n], rtol=1e-10, atol=1e-12, err_msg=n)
