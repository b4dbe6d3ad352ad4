"""Fine-tuning through the trainer: base loading, delta-only checkpoints, exact resume,
evaluate/export of a fine-tune run, a new head, and a PyTorch state_dict as the base."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import microgradnn as mg
from microgradnn.train import Trainer, TrainError, evaluate, export, load_run
from microgradnn.train.build import build_model

from ._util import assert_bit_identical, base_spec, charlm_data, weights, with_, write_corpus
from .test_trainer import StopAt


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny char-LM pretrained for a few steps on one text; its run folder."""
    root = tmp_path_factory.mktemp("pre")
    corpus = write_corpus(root, chars=1400)
    spec = base_spec(root / "runs", charlm_data(corpus), steps=6, eval_every=6)
    spec = with_(spec, model__hidden_size=10, model__num_layers=2)
    trainer = Trainer(spec, run_dir=root / "base")
    trainer.fit()
    return root / "base"


@pytest.fixture(scope="module")
def padded_base(tmp_path_factory):
    """A base whose vocabulary has a padding entry at id 0: csv/jsonl batches are padded and
    need one, and a charlm vocabulary has none unless it is given one."""
    root = tmp_path_factory.mktemp("padded")
    corpus = write_corpus(root, chars=1200)
    vocab = {"kind": "char", "pad": True, "unk": True, "chars": sorted(set(corpus.read_text()))}
    spec = base_spec(root / "runs", {**charlm_data(corpus), "vocab": vocab}, steps=3)
    Trainer(with_(spec, model__hidden_size=10), run_dir=root / "base").fit()
    return root / "base"


def ft_spec(tmp_path, base, strategy, **train):
    other = write_corpus(tmp_path, chars=1000, name="domain.txt", offset=9000)
    spec = base_spec(tmp_path / "runs", charlm_data(other), **{"steps": 8, "eval_every": 4, **train})
    # the model section is left at its defaults on purpose: a run-folder base brings its own architecture
    return with_(spec, finetune={"from": str(base), "strategy": strategy, "head": None})


LORA = {"name": "lora", "r": 2, "alpha": 4.0, "targets": ["rnn.weight_hh_l*", "head.weight"]}


def test_lora_finetune_run(tmp_path, pretrained):
    trainer = Trainer(ft_spec(tmp_path, pretrained, LORA), run_dir=tmp_path / "ft")
    # architecture and vocabulary come from the base run
    assert trainer.spec["model"]["hidden_size"] == 10 and trainer.spec["model"]["num_layers"] == 2
    base_vocab = json.loads((pretrained / "vocab.json").read_text())
    assert trainer.data.vocab.to_dict() == base_vocab
    report = trainer.finetune_report
    assert report["strategy"] == "lora" and 0 < report["share"] < 0.5
    frozen_before = {n: np.array(p.numpy(), copy=True) for n, p in trainer.model.named_parameters()
                     if not p.requires_grad}
    summary = trainer.fit()
    assert summary["status"] == "completed" and summary["finetune"]["strategy"] == "lora"
    components = json.loads((tmp_path / "ft" / "run.json").read_text())["components"]
    assert components["finetune"]["lora"]["dist"] == "microgradnn"  # resolved from there on resume/eval
    for n, p in trainer.model.named_parameters():  # frozen weights are bit-identical after training
        if n in frozen_before:
            assert np.array_equal(frozen_before[n], p.numpy()), n

    # checkpoints hold only what changed, plus a reference to the base
    state = mg.load(tmp_path / "ft" / "checkpoints" / "last.safetensors")
    assert state["model"] is None and state["finetune"]["base"] == str(pretrained.resolve())
    delta_keys = set(state["finetune"]["delta"]) | set(state["finetune"]["extra"])
    assert delta_keys and all("lora" in k for k in delta_keys)
    adapter = tmp_path / "ft" / "adapter.safetensors"
    base_ckpt = pretrained / "checkpoints" / "last.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < base_ckpt.stat().st_size

    # evaluate rebuilds base + strategy + delta: the same loss as the run's last evaluation
    assert evaluate(tmp_path / "ft")["loss"] == pytest.approx(summary["last_eval"]["val_loss"], rel=1e-6)

    # export merges LoRA into plain weights: a plain model gives the same outputs
    path = export(tmp_path / "ft")
    exported = mg.load(path)
    assert not any("lora" in k or "parametrizations" in k for k in exported["model"])
    plain = build_model(exported["model_spec"], exported["model_info"])
    plain.load_state_dict(exported["model"])
    plain.eval()
    run = load_run(tmp_path / "ft")
    x = mg.tensor(np.random.default_rng(0).integers(0, len(base_vocab["chars"]), (2, 9)))
    with mg.no_grad():
        a, _ = plain(x)
        b, _ = run.model(x)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)

    # and the export can be the base of a further fine-tune
    again = Trainer(with_(ft_spec(tmp_path, path, {"name": "bitfit"}), train__steps=2), run_dir=tmp_path / "ft2")
    assert again.fit()["status"] == "completed"


def test_finetune_stop_and_resume_is_bit_identical(tmp_path, pretrained):
    spec = ft_spec(tmp_path, pretrained, LORA, clip_grad_norm=1.0)
    full = Trainer(spec, run_dir=tmp_path / "full")
    full.fit()
    stopped = Trainer(spec, run_dir=tmp_path / "stopped", callbacks=[StopAt(3)])
    assert stopped.fit()["status"] == "stopped"
    resumed = Trainer.resume(tmp_path / "stopped")
    resumed.fit()
    assert_bit_identical(weights(full.model), weights(resumed.model))


def test_new_head_moves_an_lm_to_classification(tmp_path, padded_base):
    rows = [("def f(x): return x", "code"), ("# a comment here", "comment"), ("x = y + 1", "code"),
            ("# TODO: fix this", "comment"), ("for i in range(3):", "code"), ("# why it works", "comment")] * 4
    path = tmp_path / "lines.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    spec = base_spec(tmp_path / "runs", {"name": "csv", "path": str(path), "val_fraction": 0.25}, steps=4,
                     batch_size=6)
    spec = with_(spec, finetune={"from": str(padded_base), "strategy": {"name": "bitfit"}, "head": "new"})
    trainer = Trainer(spec, run_dir=tmp_path / "cls")
    assert trainer.model.task == "classification" and trainer.model.head.weight.shape[0] == 2
    assert trainer.model.head.weight.requires_grad  # the new head trains whatever the strategy
    summary = trainer.fit()
    assert 0 <= summary["last_eval"]["val_accuracy"] <= 1
    assert "accuracy" in evaluate(tmp_path / "cls")


def test_without_new_head_a_task_change_is_a_clear_error(tmp_path, padded_base):
    path = tmp_path / "lines.csv"
    path.write_text("text,label\n" + "".join(f"line {i},{'ab'[i % 2]}\n" for i in range(12)))
    spec = base_spec(tmp_path / "runs", {"name": "csv", "path": str(path)}, steps=2)
    spec = with_(spec, finetune={"from": str(padded_base), "strategy": {"name": "full"}, "head": None})
    with pytest.raises(TrainError, match="head.weight.*finetune.head: new"):
        Trainer(spec)


def test_finetune_from_a_pytorch_state_dict(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for loading its own state_dict")
    corpus = write_corpus(tmp_path, chars=800)
    spec = base_spec(tmp_path / "runs", charlm_data(corpus), steps=3)
    vocab_size = Trainer(spec).data.output_size

    class CharLSTM(torch.nn.Module):  # the usual PyTorch char-LM naming: encoder / lstm / fc
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(vocab_size, 6)
            self.lstm = torch.nn.LSTM(6, 7, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(7, vocab_size)

    torch.manual_seed(0)
    tm = CharLSTM()
    torch.save(tm.state_dict(), tmp_path / "lm.pt")
    spec = with_(spec, finetune={"from": str(tmp_path / "lm.pt"), "strategy": {"name": "full"}, "head": None})
    trainer = Trainer(spec, run_dir=tmp_path / "from_torch")
    # the architecture is read from the weights; they are loaded under our names
    assert trainer.spec["model"]["hidden_size"] == 7 and trainer.spec["model"]["num_layers"] == 2
    np.testing.assert_array_equal(trainer.model.rnn.weight_hh_l1.detach().numpy(), tm.lstm.weight_hh_l1.detach().numpy())
    np.testing.assert_array_equal(trainer.model.head.bias.detach().numpy(), tm.fc.bias.detach().numpy())
    # same outputs as PyTorch before any training
    x = np.random.default_rng(0).integers(0, vocab_size, (2, 5))
    with torch.no_grad():
        h, _ = tm.lstm(tm.encoder(torch.tensor(x)))
        expected = tm.fc(h).numpy()
    with mg.no_grad():
        trainer.model.eval()
        got, _ = trainer.model(mg.tensor(x))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert trainer.fit()["status"] == "completed"
