"""mg.onnx.export: every exported graph passes onnx.checker and, run in onnxruntime, gives
our forward's outputs within 1e-5 (float32) on random inputs and random variable lengths."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import microgradnn as mg
from microgradnn.finetune import IA3, LoRA, Adapter, Prefix, Prompt
from microgradnn.models import SequenceModel

TOL = 1e-5


def _leaves(value):
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [] if value is None else [value]


def _ours(model, args):
    """Our forward in eval mode (the mode the export uses); the training flag is kept."""
    was_training = model.training
    model.eval()
    with mg.no_grad():
        out = [t.numpy() for t in _leaves(model(*args))]
    model.train(was_training)
    return out


def _onnxruntime(proto_or_bytes, feeds):
    data = proto_or_bytes if isinstance(proto_or_bytes, bytes) else proto_or_bytes.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds)))


def _check(model, args, run_args=None, **kwargs):
    """Export with ``args``; run onnxruntime on ``run_args`` (default: the same) and compare."""
    buffer = io.BytesIO()
    proto = mg.onnx.export(model, args, buffer, **kwargs)
    loaded = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(loaded, full_check=True)
    run_args = args if run_args is None else run_args
    got = _onnxruntime(buffer.getvalue(), [t.numpy() for t in _leaves(run_args)])
    want = _ours(model, run_args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=TOL, rtol=0)
    return proto


def _random_lengths(rng, batch, steps):
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[rng.integers(batch)] = steps
    return mg.tensor(lengths)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_recurrent_layers_match_onnxruntime(mode, batch_first, bidirectional, num_layers):
    rng = np.random.default_rng(hash((mode, batch_first, bidirectional, num_layers)) % 2**32)
    mg.manual_seed(int(rng.integers(1000)))
    kw = {"nonlinearity": "relu"} if mode == "RNN" and num_layers == 3 else {}
    layer = getattr(mg.nn, mode)(4, 6, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional,
                                 dropout=0.5 if num_layers > 1 else 0.0, **kw)
    batch, steps = 5, 7
    shape = (batch, steps, 4) if batch_first else (steps, batch, 4)
    x = mg.tensor(rng.standard_normal(shape).astype(np.float32))
    states = num_layers * (2 if bidirectional else 1)
    h0 = mg.tensor(rng.standard_normal((states, batch, 6)).astype(np.float32))
    hx = (h0, mg.tensor(rng.standard_normal((states, batch, 6)).astype(np.float32))) if mode == "LSTM" else h0
    lengths = _random_lengths(rng, batch, steps)
    proto = _check(layer, (x,))
    _check(layer, (x, hx, lengths))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count({"RNN": "RNN"}.get(mode, mode)) == num_layers  # ONNX's own operator, one per layer
    node = next(n for n in proto.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == (b"bidirectional" if bidirectional else b"forward")
    if mode == "GRU":
        assert attrs["linear_before_reset"] == 1
    assert layer.training  # the export ran in eval mode and put the flag back


def test_dynamic_axes_let_batch_and_time_change():
    rng = np.random.default_rng(7)
    lstm = mg.nn.LSTM(3, 5, num_layers=2, batch_first=True)
    x = mg.tensor(rng.standard_normal((4, 6, 3)).astype(np.float32))
    lengths = _random_lengths(rng, 4, 6)
    dyn = {"input": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "output": {0: "batch", 1: "time"},
           "h_n": {1: "batch"}, "c_n": {1: "batch"}}
    other = mg.tensor(rng.standard_normal((3, 11, 3)).astype(np.float32))
    proto = _check(lstm, (x, None, lengths), (other, None, _random_lengths(rng, 3, 11)), dynamic_axes=dyn)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["batch", "time"]
    assert [i.name for i in proto.graph.input] == ["input", "lengths"]
    assert [o.name for o in proto.graph.output] == ["output", "h_n", "c_n"]


def test_names_opset_and_files(tmp_path):
    gru = mg.nn.GRU(2, 3)
    x = mg.randn(5, 2, 2)
    path = tmp_path / "gru.onnx"
    proto = mg.onnx.export(gru, (x,), str(path), input_names=["seq"], output_names=["y", "state"], opset_version=14)
    loaded = onnx.load(str(path))
    assert [i.name for i in loaded.graph.input] == ["seq"] and [o.name for o in loaded.graph.output] == ["y", "state"]
    assert loaded.opset_import[0].version == 14 and loaded == proto
    with pytest.raises(mg.onnx.OnnxExportError, match="opset_version"):
        mg.onnx.export(gru, (x,), None, opset_version=9)
    with pytest.raises(mg.onnx.OnnxExportError, match="dynamic_axes names 'nope'"):
        mg.onnx.export(gru, (x,), None, dynamic_axes={"nope": [0]})
    with pytest.raises(mg.onnx.OnnxExportError, match="input_names has 2 names for 1 inputs"):
        mg.onnx.export(gru, (x,), None, input_names=["a", "b"])


@pytest.mark.parametrize("opset", [14, 17, 18])
def test_feed_forward_layers(opset):
    rng = np.random.default_rng(opset)
    mg.manual_seed(opset)
    model = mg.nn.Sequential(
        mg.nn.Linear(6, 8), mg.nn.GELU(), mg.nn.LayerNorm(8), mg.nn.Tanh(), mg.nn.Dropout(0.4),
        mg.nn.Linear(8, 8, bias=False), mg.nn.GELU(approximate="tanh"), mg.nn.RMSNorm(8, eps=1e-5), mg.nn.ReLU(),
        mg.nn.Linear(8, 8), mg.nn.LeakyReLU(0.1), mg.nn.ELU(0.7), mg.nn.SiLU(), mg.nn.Softplus(beta=2.0, threshold=3.0),
        mg.nn.LogSigmoid(), mg.nn.Hardtanh(-0.5, 0.25), mg.nn.Identity(), mg.nn.Sigmoid(), mg.nn.Linear(8, 4),
        mg.nn.Softmax(dim=-1),
    )
    with mg.no_grad():
        for p in model.parameters():  # LayerNorm/RMSNorm weights away from their all-ones init
            p.copy_(mg.tensor(rng.standard_normal(p.shape).astype(np.float32)))
    _check(model, (mg.tensor(rng.standard_normal((3, 5, 6)).astype(np.float32) * 3),), opset_version=opset)
    _check(mg.nn.Sequential(mg.nn.Flatten(), mg.nn.Linear(12, 2), mg.nn.LogSoftmax(dim=1)),
           (mg.tensor(rng.standard_normal((4, 3, 4)).astype(np.float32)),), opset_version=opset)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
@pytest.mark.parametrize("task", ["lm", "classification", "regression"])
def test_sequence_models(cell, task):
    rng = np.random.default_rng(len(cell) * 10 + len(task))
    mg.manual_seed(3)
    model = SequenceModel(9, vocab_size=30, embedding_dim=5, hidden_size=7, num_layers=2, cell=cell, task=task,
                          bidirectional=task != "lm", dropout=0.2, padding_idx=0)
    tokens = mg.tensor(rng.integers(1, 30, size=(4, 8)))
    lengths = _random_lengths(rng, 4, 8)
    _check(model, (tokens,))
    _check(model, (tokens, None, lengths), dynamic_axes={"input": {0: "b", 1: "t"}, "lengths": {0: "b"}})


def test_float_inputs_and_a_given_state():
    rng = np.random.default_rng(5)
    model = SequenceModel(2, input_size=3, hidden_size=6, task="regression", cell="gru")
    x = mg.tensor(rng.standard_normal((5, 9, 3)).astype(np.float32))
    state = mg.tensor(rng.standard_normal((1, 5, 6)).astype(np.float32))
    _check(model, (x, state, _random_lengths(rng, 5, 9)))


def _perturb(model, rng, names):
    with mg.no_grad():
        for name, p in model.named_parameters():
            if any(key in name for key in names):
                p.copy_(mg.tensor((rng.standard_normal(p.shape) * 0.3).astype(np.float32)) + p.detach())


@pytest.mark.parametrize("strategy", ["lora", "ia3", "prefix", "prompt"])
def test_fine_tuned_models_export_merged_or_not(strategy):
    rng = np.random.default_rng(11)
    mg.manual_seed(4)
    model = SequenceModel(6, vocab_size=20, embedding_dim=5, hidden_size=7, num_layers=2, cell="lstm", task="lm")
    tokens = mg.tensor(rng.integers(0, 20, size=(3, 6)))
    lengths = _random_lengths(rng, 3, 6)
    plain = _ours(model, (tokens, None, lengths))
    s = {"lora": lambda: LoRA(targets=["rnn.weight_*", "head.weight"], r=2), "ia3": lambda: IA3(),
         "prefix": lambda: Prefix(), "prompt": lambda: Prompt(n_tokens=3)}[strategy]()
    s.apply(model)
    _perturb(model, rng, ["lora", "scale", "h0", "c0", "prompt"])
    tuned = _ours(model, (tokens, None, lengths))
    assert np.abs(tuned[0] - plain[0]).max() > 1e-3  # the fine-tune changes the function
    _check(model, (tokens, None, lengths))
    if s.mergeable:
        s.merge(model)
        np.testing.assert_allclose(_ours(model, (tokens, None, lengths))[0], tuned[0], atol=1e-5)
        _check(model, (tokens, None, lengths))


def test_unsupported_modules_get_one_clear_error():
    class Mine(mg.nn.Module):
        def forward(self, input):
            return input * 2

    with pytest.raises(mg.onnx.OnnxExportError, match=r"can't export 1 \(.*Mine\): there is no ONNX converter"):
        mg.onnx.export(mg.nn.Sequential(mg.nn.Linear(2, 2), Mine()), (mg.randn(3, 2),), None)
    with pytest.raises(mg.onnx.OnnxExportError, match=r"rnn \(Recurrent over LSTMCell\)"):
        mg.onnx.export(SequenceModel(3, input_size=2, hidden_size=4, cell=mg.nn.LSTMCell, task="classification"),
                       (mg.randn(2, 5, 2),), None)
    with pytest.raises(mg.onnx.OnnxExportError, match="proj_size"):
        mg.onnx.export(mg.nn.LSTM(2, 4, proj_size=2), (mg.randn(3, 1, 2),), None)
    adapted = SequenceModel(3, vocab_size=10, hidden_size=4, task="lm")
    Adapter(after=["rnn"]).apply(adapted)
    with pytest.raises(mg.onnx.OnnxExportError, match=r"can't export rnn \(LSTM\): it has forward hooks"):
        mg.onnx.export(adapted, (mg.tensor([[1, 2, 3]]),), None)


def test_batch_layout_attribute_is_a_valid_model():
    """``recurrent_layout="batch"`` emits ONNX's layout=1; onnxruntime refuses layout=1 on
    its CPU kernels, so this test checks the model (checker, shape inference), not its run."""
    lstm = mg.nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
    proto = mg.onnx.export(lstm, (mg.randn(2, 5, 3), None, mg.tensor([5, 2])), None, recurrent_layout="batch")
    nodes = [n for n in proto.graph.node if n.op_type == "LSTM"]
    assert len(nodes) == 2 and all(onnx.helper.get_attribute_value(a) == 1 for n in nodes for a in n.attribute
                                   if a.name == "layout")
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    out = next(o for o in inferred.graph.output if o.name == "output")
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [2, 5, 8]
