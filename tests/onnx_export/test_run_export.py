"""export_run: a trained run folder (and a LoRA fine-tune of it) as an ONNX file whose
outputs, in onnxruntime, equal the loaded model's at other batch sizes and lengths."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

import microgradnn as mg
from microgradnn.onnx import export_run
from microgradnn.train import Trainer
from microgradnn.train.inference import load_run
from tests.train._util import base_spec, charlm_data, with_, write_corpus


def _compare(run_dir, path):
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    run = load_run(run_dir)
    model = run.model
    if run.strategy is not None:
        model = run.strategy.merge(model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, model.embedding.num_embeddings, size=(3, 9))
    lengths = np.array([9, 4, 6])
    got = session.run(None, {"input": tokens, "lengths": lengths})
    with mg.no_grad():
        out, (h, c) = model(mg.tensor(tokens), lengths=mg.tensor(lengths))
    for g, w in zip(got, (out, h, c)):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)


def test_a_run_and_its_lora_fine_tune_export_to_onnx(tmp_path):
    corpus = write_corpus(tmp_path)
    spec = base_spec(tmp_path / "runs", charlm_data(corpus), steps=4)
    Trainer(spec, run_dir=tmp_path / "base").fit()
    path = export_run(tmp_path / "base")
    assert path == tmp_path / "base" / "model.onnx"
    _compare(tmp_path / "base", path)
    tuned = with_(spec, finetune={"strategy": "lora", "from": str(tmp_path / "base"), "r": 2,
                                  "targets": ["rnn.weight_*"]})
    Trainer(tuned, run_dir=tmp_path / "tuned").fit()
    assert type(load_run(tmp_path / "tuned").strategy).__name__ == "LoRA"
    out = export_run(tmp_path / "tuned", out=tmp_path / "tuned.onnx", checkpoint="last")
    _compare(tmp_path / "tuned", out)
