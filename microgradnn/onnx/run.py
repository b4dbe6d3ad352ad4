"""``export_run``: a run folder's model as an ONNX file (what ``mgnn export RUN --format onnx`` calls).

The model is loaded as ``mgnn eval`` loads it, a fine-tune's update merged into plain
weights (a strategy that can't be merged and changes the forward, an adapter, is refused
by the exporter with its name), and exported with dynamic batch and time axes. The graph:

==========  =======================  ==========================================================
name        shape                    meaning
==========  =======================  ==========================================================
input       (batch, time) int64      token ids (or (batch, time, features) float32)
lengths     (batch,) int64           each row's real length (give ``time`` for full rows)
output      (batch, time, vocab)     lm logits per step; (batch, classes/targets) otherwise
h_n (c_n)   (layers*dirs, batch, H)  the final recurrent state
==========  =======================  ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..tensor import tensor
from .exporter import OnnxExportError, export

__all__ = ["export_run", "ONNX_FILE"]

ONNX_FILE = "model.onnx"


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, checkpoint: str = "best",
               opset_version: int | None = None) -> Path:
    """Write ``RUN_DIR/model.onnx`` (or ``out``) from the run's ``checkpoint``; returns the path."""
    from ..train.inference import load_run  # the run folder layer; the exporter itself doesn't need it

    run = load_run(run_dir, checkpoint)
    model = run.model
    if run.strategy is not None and getattr(run.strategy, "mergeable", True):
        model = run.strategy.merge(model)
    path = Path(out) if out is not None else Path(run.run_dir) / ONNX_FILE
    if not path.parent.is_dir():
        raise OnnxExportError(f"export: folder {path.parent} does not exist")
    rng = np.random.default_rng(0)
    steps, batch = 5, 2
    if getattr(model, "embedding", None) is not None:
        x = tensor(rng.integers(0, model.embedding.num_embeddings, size=(batch, steps)))
    else:
        x = tensor(rng.standard_normal((batch, steps, model.rnn.input_size)).astype(np.dtype(str(model.head.weight.dtype))))
    lengths = tensor(np.full(batch, steps, dtype=np.int64))
    lm = getattr(model, "task", "lm") == "lm"
    dynamic = {"input": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
               "output": {0: "batch", 1: "time"} if lm else {0: "batch"}, "h_n": {1: "batch"}}
    names = ["output", "h_n"] + (["c_n"] if isinstance(getattr(model.rnn, "mode", None), str)
                                 and model.rnn.mode == "LSTM" else [])
    if "c_n" in names:
        dynamic["c_n"] = {1: "batch"}
    export(model, (x, None, lengths), str(path), input_names=["input", "lengths"], output_names=names,
           dynamic_axes=dynamic, opset_version=opset_version)
    return path
