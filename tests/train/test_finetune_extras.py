"""What examples/finetune/ needs from the trainer, end to end:

* a character LM pretrained with the default ``charlm`` vocabulary (no ``<pad>`` entry)
  becomes a classifier with ``finetune.head: new`` on csv lines (padded batches);
* an AdaLoRA run reports where its rank budget ended up (``run.json`` -> finetune.ranks);
* the export of a prompt-tuned run (its virtual tokens kept as the model's ``prompt``)
  works as ``finetune.from``, as ``mgnn export`` promises.
"""

from __future__ import annotations

import csv
import json

import pytest

from microgradnn.train import Trainer, evaluate, export

from ._util import base_spec, charlm_data, with_, write_corpus


@pytest.fixture(scope="module")
def lm_base(tmp_path_factory):
    """A tiny char LM with charlm's own vocabulary: unk at id 0, no padding entry."""
    root = tmp_path_factory.mktemp("lm")
    corpus = write_corpus(root, chars=1400)
    spec = with_(base_spec(root / "runs", charlm_data(corpus), steps=4), model__num_layers=2)
    Trainer(spec, run_dir=root / "base").fit()
    vocab = json.loads((root / "base" / "vocab.json").read_text())
    assert vocab["pad"] is False  # the case this file is about
    return root / "base"


def test_an_lm_without_pad_becomes_a_classifier(tmp_path, lm_base):
    rows = [("def f(x): return x", "code"), ("a comment here", "comment"), ("x = y + 1", "code"),
            ("fix this later", "comment"), ("for i in range(3):", "code"), ("why it works", "comment")] * 4
    path = tmp_path / "lines.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    spec = base_spec(tmp_path / "runs", {"name": "csv", "path": str(path), "val_fraction": 0.25}, steps=3,
                     batch_size=5)
    spec = with_(spec, finetune={"from": str(lm_base), "strategy": {"name": "full"}, "head": "new"})
    trainer = Trainer(spec, run_dir=tmp_path / "cls")
    assert trainer.data.vocab.to_dict() == json.loads((lm_base / "vocab.json").read_text())
    assert trainer.model.embedding.padding_idx is None  # as in the base: no row is special
    assert trainer.model.head.weight.shape[0] == 2
    summary = trainer.fit()
    assert summary["status"] == "completed"
    assert 0 <= evaluate(tmp_path / "cls")["accuracy"] <= 1


def test_adalora_run_reports_final_ranks(tmp_path, lm_base):
    other = write_corpus(tmp_path, chars=1000, name="domain.txt", offset=9000)
    strategy = {"name": "adalora", "targets": ["rnn.weight_hh_l*"], "init_r": 4, "target_r": 2,
                "total_steps": 8, "tinit": 1, "tfinal": 2, "delta_t": 1}
    spec = base_spec(tmp_path / "runs", charlm_data(other), steps=8, eval_every=4)
    spec = with_(spec, finetune={"from": str(lm_base), "strategy": strategy, "head": None})
    summary = Trainer(spec, run_dir=tmp_path / "ada").fit()
    ranks = summary["finetune"]["ranks"]
    assert set(ranks) == {"rnn.weight_hh_l0", "rnn.weight_hh_l1"}
    assert sum(ranks.values()) == 2 * 2  # the budget, target_r per weight on average, after the schedule
    on_disk = json.loads((tmp_path / "ada" / "run.json").read_text())["finetune"]
    assert on_disk["ranks"] == ranks and on_disk["budget"] == 4


def test_a_prompt_tuned_export_is_a_base(tmp_path, lm_base):
    other = write_corpus(tmp_path, chars=1000, name="domain.txt", offset=9000)
    spec = base_spec(tmp_path / "runs", charlm_data(other), steps=3)
    prompt = with_(spec, finetune={"from": str(lm_base), "strategy": {"name": "prompt", "n_tokens": 3}, "head": None})
    Trainer(prompt, run_dir=tmp_path / "prompt").fit()
    path = export(tmp_path / "prompt")
    lora = with_(spec, finetune={"from": str(path), "strategy": {"name": "lora", "r": 2}, "head": None})
    trainer = Trainer(lora, run_dir=tmp_path / "again")  # was: "does not fit the model: unexpected prompt"
    assert tuple(trainer.model.prompt.shape) == (3, 8) and not trainer.model.prompt.requires_grad
    # LoRA starts as the identity: the new run's model is exactly the prompt-tuned one
    assert trainer.validate()["val_loss"] == pytest.approx(evaluate(tmp_path / "prompt")["loss"], rel=1e-6)
