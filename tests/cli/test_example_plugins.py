"""The two example plugin distributions in plugins/, installed as the README's test command
installs them, are discovered through their entry points and train from specs."""

from __future__ import annotations

from importlib import metadata

import pytest

from .test_cli import REPO, mgnn


def _require(dist: str) -> None:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"the example plugin {dist} is not installed: the README's test command installs it "
                    f"(pip install -e plugins/{dist})")


def test_plugins_lists_the_example_plugins_with_their_distributions(tmp_path):
    _require("mgnn-indrnn")
    _require("mgnn-reverse")
    proc = mgnn("plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for fragment in ("indrnn", "mgnn-indrnn", "reverse", "cer", "mgnn-reverse", "0.1.0"):
        assert fragment in proc.stdout, fragment


def test_contract_check_passes_the_indrnn_cell(tmp_path):
    _require("mgnn-indrnn")
    proc = mgnn("plugins", "check", "indrnn", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "keeps the cell contract" in proc.stdout


def test_train_a_bidirectional_two_layer_indrnn_classifier_from_a_spec(tmp_path):
    _require("mgnn-indrnn")
    spec = tmp_path / "parity.yaml"
    spec.write_text(
        "model: {cell: {name: indrnn, recurrent_max_abs: 1.0}, hidden_size: 16, num_layers: 2, bidirectional: true}\n"
        "data: {name: parity, seq_len: 12, train_size: 256, val_size: 64}\n"
        f"train: {{steps: 8, batch_size: 32, eval_every: 4}}\noutput: {{dir: {tmp_path / 'runs'}}}\n")
    proc = mgnn("train", str(spec), "--plain", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "runs" / "parity"
    assert (run / "checkpoints" / "last.safetensors").is_file()
    weights = [line for line in (run / "spec.yaml").read_text().splitlines() if "indrnn" in line]
    assert weights, "the resolved spec names the plugin cell"


def test_train_the_reverse_dataset_with_the_cer_metric(tmp_path):
    _require("mgnn-reverse")
    proc = mgnn("train", str(REPO / "examples" / "reverse_cer.yaml"), "train.steps=6", "~train.epochs",
                "train.eval_every=3", f"output.dir={tmp_path / 'runs'}", "data.train_size=256",
                "data.val_size=64", "--plain", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = (tmp_path / "runs" / "reverse_cer" / "metrics.jsonl").read_text()
    assert "cer" in metrics
