"""The ONNX exporter: a walk over Modules, one converter per Module class.

A converter ``fn(ctx, module, path, inputs) -> outputs`` receives the graph names of the
module's forward arguments (bound to its signature, None for absent ones) and returns the
names of its outputs, in the same nesting as the module's forward returns (a name, or a
tuple such as ``(output, (h_n, c_n))``). ``ctx`` (:class:`_Graph`) adds nodes and
initializers; the ``onnx`` package's helper API builds every proto.

Recurrent layers become ONNX's own operators, one per layer (both directions in one node),
stacked as a chain. The weights are re-laid-out from PyTorch's gate order to ONNX's:

==========  ====================  ======================  ===========================
layer       PyTorch rows          ONNX rows               attributes
==========  ====================  ======================  ===========================
LSTM        i, f, g, o            i, o, f, c              -
GRU         r, z, n               z, r, h                 ``linear_before_reset=1``
RNN         (one gate)            (one gate)              ``activations=[Tanh|Relu]``
==========  ====================  ======================  ===========================

ONNX's B input is ``[W_b; R_b]`` (the input and the recurrent bias), ``sequence_lens`` takes
the lengths (int32), and the outputs past a sequence's end are zero with ``Y_h`` at each
sequence's own end, as in microgradnn's ``lengths`` path and PyTorch's packed sequences.
Batch-first layers are wrapped in Transposes around ``layout=0`` operators by default
(``recurrent_layout="transpose"``): onnxruntime does not run ``layout=1``. With
``recurrent_layout="batch"`` the operators use ONNX's ``layout=1`` attribute instead (a valid
model, for runtimes that support it).
"""

from __future__ import annotations

import inspect
import io
import os
from typing import Any, Callable

import numpy as np

from ..autograd import no_grad
from ..nn import layers as L
from ..nn.module import Module
from ..nn.rnn import Recurrent, RNNBase
from ..tensor import Tensor

__all__ = ["export", "OnnxExportError", "register_converter", "supported_modules"]

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 14, 21, 17
_INT64_MAX = np.iinfo(np.int64).max


class OnnxExportError(ValueError):
    """The model (or an argument) can't be exported; the message names the module or option."""


_CONVERTERS: dict[type, Callable] = {}


def register_converter(cls: type) -> Callable[[Callable], Callable]:
    """Register ``fn(ctx, module, path, inputs) -> outputs`` as the converter of ``cls`` (and
    its subclasses that have none of their own): how a plugin makes its layer exportable."""
    def decorate(fn: Callable) -> Callable:
        _CONVERTERS[cls] = fn
        return fn

    return decorate


def supported_modules() -> list[str]:
    """The Module classes the exporter converts, by name."""
    return sorted(c.__name__ for c in _CONVERTERS)


def _converter_for(module: Module) -> Callable | None:
    for cls in type(module).__mro__:
        if cls in _CONVERTERS:
            return _CONVERTERS[cls]
    return None


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise OnnxExportError("mg.onnx.export needs the onnx package: pip install 'microgradnn[onnx]'") from None
    return onnx


# ============================================================================ the graph


class _Graph:
    """Nodes and initializers under construction, with unique value names."""

    def __init__(self, opset: int, recurrent_layout: str) -> None:
        self.onnx = _onnx()
        self.helper = self.onnx.helper
        self.opset, self.recurrent_layout = opset, recurrent_layout
        self.nodes: list = []
        self.initializers: list = []
        self.rank: dict[str, int] = {}
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = hint.replace("/", ".") or "v"
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def const(self, array: Any, hint: str) -> str:
        """A constant (an initializer) holding ``array``."""
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d 0-d
        return name

    def ints(self, values: list[int], hint: str = "const") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def op(self, op_type: str, inputs: list, hint: str, outputs: int = 1, rank: int | None = None,
           **attrs: Any) -> Any:
        """Add a node; returns its output name (or a list of them for ``outputs > 1``)."""
        names = [self.fresh(f"{hint}.{op_type}" if outputs == 1 else f"{hint}.{op_type}.{i}") for i in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, [x if x is not None else "" for x in inputs], names,
                                                name=self.fresh(f"{hint}/{op_type}"), **attrs))
        if rank is not None:
            self.rank[names[0]] = rank
        return names[0] if outputs == 1 else names

    def reduce_mean(self, x: str, axes: list[int], hint: str) -> str:
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.ints(axes, hint + ".axes")], hint, rank=self.rank.get(x))
        return self.op("ReduceMean", [x], hint, axes=axes, rank=self.rank.get(x))

    def scalar(self, value: float, dtype: Any, hint: str) -> str:
        return self.const(np.asarray(value, dtype=dtype), hint)


class _Context:
    """What converters see: the graph plus the dtype of the model's floats and the walk."""

    def __init__(self, graph: _Graph, dtype: Any) -> None:
        self.graph, self.dtype = graph, dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    def call(self, module: Module, path: str, *args: Any, **kwargs: Any) -> Any:
        """Convert ``module`` called with graph names ``args``/``kwargs`` (its forward's)."""
        label = path or "model"
        if module.__dict__.get("_forward_hooks") or module.__dict__.get("_forward_pre_hooks"):
            raise OnnxExportError(f"mg.onnx.export: can't export {label} ({type(module).__name__}): it has forward "
                                  "hooks (an adapter?), which the exporter can't see into; merge or remove them first")
        fn = _converter_for(module)
        if fn is None:
            raise OnnxExportError(f"mg.onnx.export: can't export {label} ({type(module).__qualname__}): there is no "
                                  f"ONNX converter for it; supported modules: {', '.join(supported_modules())} "
                                  "(mg.onnx.register_converter adds one)")
        try:
            bound = inspect.signature(module.forward).bind(*args, **kwargs)
        except TypeError as exc:
            raise OnnxExportError(f"mg.onnx.export: {label} ({type(module).__name__}): {exc}") from None
        bound.apply_defaults()
        return fn(self, module, path, dict(bound.arguments))


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _array(t: Any) -> np.ndarray:
    """A parameter's (effective: parametrizations applied) value as a host numpy array."""
    return np.asarray(t.detach().numpy())


def _the_input(module: Module, inputs: dict) -> str:
    for key in ("input", "x"):
        if key in inputs:
            return inputs[key]
    raise OnnxExportError(f"mg.onnx.export: {type(module).__name__}.forward has no 'input' argument")


# ============================================================================ simple layers


@register_converter(L.Identity)
@register_converter(L.Dropout)
def _identity(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    return ctx.op("Identity", [x], path or "identity", rank=ctx.rank.get(x))  # dropout: eval mode


@register_converter(L.Linear)
def _linear(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = inputs["input"]
    weight = ctx.const(_array(m.weight).T, _child(path, "weight_T"))
    y = ctx.op("MatMul", [x, weight], path, rank=ctx.rank.get(x))
    if m.bias is not None:
        y = ctx.op("Add", [y, ctx.const(_array(m.bias), _child(path, "bias"))], path, rank=ctx.rank.get(x))
    return y


@register_converter(L.Embedding)
def _embedding(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    if m.max_norm is not None:
        raise OnnxExportError(f"mg.onnx.export: can't export {path or 'model'} (Embedding with max_norm): "
                              "the renormalisation rewrites the table at run time")
    x = inputs["input"]
    table = ctx.const(_array(m.weight), _child(path, "weight"))
    return ctx.op("Gather", [table, x], path, axis=0, rank=ctx.rank.get(x, 1) + 1)


def _norm_axes(ctx: _Context, x: str, count: int) -> list[int]:
    return list(range(-count, 0))


@register_converter(L.LayerNorm)
def _layer_norm(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = inputs["input"]
    count = len(m.normalized_shape)
    weight = _array(m.weight) if m.weight is not None else np.ones(m.normalized_shape, dtype=ctx.dtype)
    bias = _array(m.bias) if getattr(m, "bias", None) is not None else None
    if ctx.opset >= 17:
        args = [x, ctx.const(weight, _child(path, "weight"))]
        if bias is not None:
            args.append(ctx.const(bias, _child(path, "bias")))
        return ctx.op("LayerNormalization", args, path, axis=-count, epsilon=float(m.eps), rank=ctx.rank.get(x))
    axes = _norm_axes(ctx, x, count)  # before opset 17: (x - mean) / sqrt(var + eps) * w + b
    centred = ctx.op("Sub", [x, ctx.reduce_mean(x, axes, path + ".mean")], path)
    var = ctx.reduce_mean(ctx.op("Mul", [centred, centred], path), axes, path + ".var")
    std = ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(m.eps, ctx.dtype, path + ".eps")], path)], path)
    y = ctx.op("Mul", [ctx.op("Div", [centred, std], path), ctx.const(weight, _child(path, "weight"))], path)
    if bias is not None:
        y = ctx.op("Add", [y, ctx.const(bias, _child(path, "bias"))], path)
    ctx.rank[y] = ctx.rank.get(x)
    return y


@register_converter(L.RMSNorm)
def _rms_norm(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = inputs["input"]
    eps = m.eps if m.eps is not None else float(np.finfo(ctx.dtype).eps)  # torch's default eps
    axes = _norm_axes(ctx, x, len(m.normalized_shape))
    ms = ctx.reduce_mean(ctx.op("Mul", [x, x], path), axes, path + ".ms")
    rms = ctx.op("Sqrt", [ctx.op("Add", [ms, ctx.scalar(eps, ctx.dtype, path + ".eps")], path)], path)
    y = ctx.op("Div", [x, rms], path)
    if m.weight is not None:
        y = ctx.op("Mul", [y, ctx.const(_array(m.weight), _child(path, "weight"))], path)
    ctx.rank[y] = ctx.rank.get(x)
    return y


def _unary(op_type: str) -> Callable:
    def convert(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
        x = _the_input(m, inputs)
        return ctx.op(op_type, [x], path, rank=ctx.rank.get(x))

    return convert


register_converter(L.Tanh)(_unary("Tanh"))
register_converter(L.Sigmoid)(_unary("Sigmoid"))
register_converter(L.ReLU)(_unary("Relu"))


@register_converter(L.LeakyReLU)
def _leaky_relu(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    return ctx.op("LeakyRelu", [x], path, alpha=float(m.negative_slope), rank=ctx.rank.get(x))


@register_converter(L.ELU)
def _elu(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    return ctx.op("Elu", [x], path, alpha=float(m.alpha), rank=ctx.rank.get(x))


@register_converter(L.SiLU)
def _silu(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    return ctx.op("Mul", [x, ctx.op("Sigmoid", [x], path)], path, rank=ctx.rank.get(x))


def _softplus_of(ctx: _Context, x: str, beta: float, threshold: float, path: str) -> str:
    """torch's softplus: log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    bx = x if beta == 1 else ctx.op("Mul", [x, ctx.scalar(beta, ctx.dtype, path + ".beta")], path)
    soft = ctx.op("Softplus", [bx], path)
    if beta != 1:
        soft = ctx.op("Div", [soft, ctx.scalar(beta, ctx.dtype, path + ".beta")], path)
    above = ctx.op("Greater", [bx, ctx.scalar(threshold, ctx.dtype, path + ".threshold")], path)
    return ctx.op("Where", [above, x, soft], path, rank=ctx.rank.get(x))


@register_converter(L.Softplus)
def _softplus(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    return _softplus_of(ctx, _the_input(m, inputs), float(m.beta), float(m.threshold), path)


@register_converter(L.LogSigmoid)
def _log_sigmoid(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    return ctx.op("Neg", [_softplus_of(ctx, ctx.op("Neg", [x], path), 1.0, 20.0, path)], path, rank=ctx.rank.get(x))


@register_converter(L.Hardtanh)
def _hardtanh(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    lo, hi = ctx.scalar(m.min_val, ctx.dtype, path + ".min"), ctx.scalar(m.max_val, ctx.dtype, path + ".max")
    return ctx.op("Clip", [x, lo, hi], path, rank=ctx.rank.get(x))


@register_converter(L.GELU)
def _gelu(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    half = ctx.op("Mul", [x, ctx.scalar(0.5, ctx.dtype, path + ".half")], path)
    if m.approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = ctx.op("Mul", [ctx.op("Mul", [x, x], path), x], path)
        inner = ctx.op("Add", [x, ctx.op("Mul", [cube, ctx.scalar(0.044715, ctx.dtype, path + ".c")], path)], path)
        inner = ctx.op("Mul", [inner, ctx.scalar(np.sqrt(2 / np.pi), ctx.dtype, path + ".k")], path)
        shape = ctx.op("Tanh", [inner], path)
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        shape = ctx.op("Erf", [ctx.op("Div", [x, ctx.scalar(np.sqrt(2.0), ctx.dtype, path + ".sqrt2")], path)], path)
    one = ctx.op("Add", [shape, ctx.scalar(1.0, ctx.dtype, path + ".one")], path)
    return ctx.op("Mul", [half, one], path, rank=ctx.rank.get(x))


def _softmax_like(op_type: str) -> Callable:
    def convert(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
        if m.dim is None:
            raise OnnxExportError(f"mg.onnx.export: {path or 'model'} ({type(m).__name__}): give dim explicitly")
        x = _the_input(m, inputs)
        return ctx.op(op_type, [x], path, axis=int(m.dim), rank=ctx.rank.get(x))

    return convert


register_converter(L.Softmax)(_softmax_like("Softmax"))
register_converter(L.LogSoftmax)(_softmax_like("LogSoftmax"))


@register_converter(L.Flatten)
def _flatten(ctx: _Context, m: Module, path: str, inputs: dict) -> str:
    x = _the_input(m, inputs)
    rank = ctx.rank.get(x)
    start = m.start_dim % rank if rank else m.start_dim
    end = m.end_dim % rank if rank else m.end_dim
    if rank is None or end != rank - 1:
        raise OnnxExportError(f"mg.onnx.export: {path or 'model'} (Flatten): only end_dim=-1 is supported")
    if start == end:
        return ctx.op("Identity", [x], path, rank=rank)
    shape = ctx.op("Shape", [x], path)
    keep = ctx.op("Slice", [shape, ctx.ints([0]), ctx.ints([start]), ctx.ints([0])], path)
    target = ctx.op("Concat", [keep, ctx.ints([-1])], path, axis=0)
    return ctx.op("Reshape", [x, target], path, rank=start + 1)


@register_converter(L.Sequential)
def _sequential(ctx: _Context, m: Module, path: str, inputs: dict) -> Any:
    x = inputs["input"]
    for name, child in m._modules.items():
        x = ctx.call(child, _child(path, name), x)
    return x


# ============================================================================ recurrent layers

_GATE_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}
_OP_TYPE = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def _reorder(array: np.ndarray, mode: str) -> np.ndarray:
    """PyTorch's gate blocks (stacked on axis 0) in ONNX's order."""
    blocks = np.split(array, len(_GATE_ORDER[mode]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[mode]], axis=0)


def _layer_weights(m: RNNBase, layer: int) -> tuple:
    """W (D, G*H, in), R (D, G*H, H), B (D, 2*G*H) or None for one layer, ONNX's layout."""
    ws, rs, bs = [], [], []
    for direction in range(m.num_directions):
        w_ih, w_hh, b_ih, b_hh, _ = m._weights(layer * m.num_directions + direction)
        ws.append(_reorder(_array(w_ih), m.mode))
        rs.append(_reorder(_array(w_hh), m.mode))
        if b_ih is not None:
            bs.append(np.concatenate([_reorder(_array(b_ih), m.mode), _reorder(_array(b_hh), m.mode)]))
    return np.stack(ws), np.stack(rs), (np.stack(bs) if bs else None)


def _initial(ctx: _Context, m: RNNBase, path: str, which: int, hx: Any, x_tm: str, layer: int) -> str | None:
    """Layer ``layer``'s slice (D, B, H) of the given state, of the learned one, or None (zeros)."""
    d = m.num_directions
    if hx is not None:
        part = hx[which] if isinstance(hx, (tuple, list)) else hx
        return ctx.op("Slice", [part, ctx.ints([layer * d]), ctx.ints([(layer + 1) * d]), ctx.ints([0])],
                      _child(path, f"h0_l{layer}"), rank=3)
    if m.init_state == "learned":
        learned = _array(getattr(m, ("h0", "c0")[which]))[layer * d:(layer + 1) * d]  # (D, 1, size)
        batch = ctx.op("Gather", [ctx.op("Shape", [x_tm], path), ctx.ints([1])], path, axis=0)
        shape = ctx.op("Concat", [ctx.ints([d]), batch, ctx.ints([learned.shape[-1]])], path, axis=0)
        return ctx.op("Expand", [ctx.const(learned, _child(path, f"{('h0', 'c0')[which]}_l{layer}")), shape], path,
                      rank=3)
    return None


def _to_layout(ctx: _Context, state: str | None, path: str) -> str | None:
    """(D, B, H) -> (B, D, H), the state layout of ``layout=1`` operators."""
    return None if state is None else ctx.op("Transpose", [state], path, perm=[1, 0, 2], rank=3)


@register_converter(RNNBase)
def _recurrent(ctx: _Context, m: RNNBase, path: str, inputs: dict) -> tuple:
    if m.proj_size:
        raise OnnxExportError(f"mg.onnx.export: can't export {path or 'model'} (LSTM with proj_size="
                              f"{m.proj_size}): ONNX's LSTM has no projection")
    x, hx, lengths = inputs["input"], inputs.get("hx"), inputs.get("lengths")
    label = path or "rnn"
    if ctx.rank.get(x) != 3:
        raise OnnxExportError(f"mg.onnx.export: {label} ({type(m).__name__}): export needs a batched (3-D) input")
    batch_layout = ctx.recurrent_layout == "batch" and m.batch_first
    if m.batch_first and not batch_layout:
        x = ctx.op("Transpose", [x], label + ".to_time_major", perm=[1, 0, 2], rank=3)
    seq_lens = None
    if lengths is not None:
        seq_lens = ctx.op("Cast", [lengths], label + ".lengths", to=ctx.onnx.TensorProto.INT32)
    op_type, d, hidden = _OP_TYPE[m.mode], m.num_directions, m.hidden_size
    attrs: dict[str, Any] = {"hidden_size": hidden, "direction": "bidirectional" if d == 2 else "forward"}
    if batch_layout:
        attrs["layout"] = 1
    if m.mode == "GRU":
        attrs["linear_before_reset"] = 1
    elif m.mode in ("RNN_TANH", "RNN_RELU"):
        attrs["activations"] = ["Tanh" if m.mode == "RNN_TANH" else "Relu"] * d
    h_finals, c_finals = [], []
    layer_input = x
    for layer in range(m.num_layers):
        here = _child(path, f"l{layer}")
        w, r, b = _layer_weights(m, layer)
        h0 = _initial(ctx, m, here, 0, hx, layer_input if not batch_layout else x, layer)
        args = [layer_input, ctx.const(w, here + ".W"), ctx.const(r, here + ".R"),
                ctx.const(b, here + ".B") if b is not None else None, seq_lens,
                _to_layout(ctx, h0, here) if batch_layout else h0]
        if m.mode == "LSTM":
            c0 = _initial(ctx, m, here, 1, hx, layer_input, layer)
            args.append(_to_layout(ctx, c0, here) if batch_layout else c0)
        while args[-1] is None:
            args.pop()
        outs = ctx.op(op_type, args, here, outputs=3 if m.mode == "LSTM" else 2, **attrs)
        y, y_h = outs[0], outs[1]
        if batch_layout:  # Y (B, T, D, H) -> (B, T, D*H); Y_h (B, D, H) -> (D, B, H)
            layer_input = ctx.op("Reshape", [y, ctx.ints([0, 0, -1])], here, rank=3)
            h_finals.append(_to_layout(ctx, y_h, here))
            if m.mode == "LSTM":
                c_finals.append(_to_layout(ctx, outs[2], here))
        else:  # Y (T, D, B, H) -> (T, B, D*H)
            y = ctx.op("Transpose", [y], here, perm=[0, 2, 1, 3])
            layer_input = ctx.op("Reshape", [y, ctx.ints([0, 0, -1])], here, rank=3)
            h_finals.append(y_h)
            if m.mode == "LSTM":
                c_finals.append(outs[2])
    out = layer_input
    if m.batch_first and not batch_layout:
        out = ctx.op("Transpose", [out], label + ".to_batch_first", perm=[1, 0, 2], rank=3)

    def stacked(parts: list, name: str) -> str:
        return parts[0] if len(parts) == 1 else ctx.op("Concat", parts, _child(path, name), axis=0, rank=3)

    h_n = stacked(h_finals, "h_n")
    ctx.rank[h_n] = 3
    if m.mode == "LSTM":
        c_n = stacked(c_finals, "c_n")
        ctx.rank[c_n] = 3
        return out, (h_n, c_n)
    return out, h_n


@register_converter(Recurrent)
def _generic_recurrent(ctx: _Context, m: Recurrent, path: str, inputs: dict) -> Any:
    cell = type(m.cells[0]).__name__
    raise OnnxExportError(f"mg.onnx.export: can't export {path or 'model'} (Recurrent over {cell}): ONNX has "
                          "operators for the built-in LSTM, GRU and RNN layers only")


# ============================================================================ the spec's models


def _register_models() -> None:
    from ..models import SequenceModel

    @register_converter(SequenceModel)
    def _sequence_model(ctx: _Context, m: SequenceModel, path: str, inputs: dict) -> tuple:
        x, state, lengths = inputs["x"], inputs.get("state"), inputs.get("lengths")
        h = ctx.call(m.embedding, _child(path, "embedding"), x) if m.embedding is not None else x
        prompt_len = 0
        if m.prompt is not None:  # prompt tuning: the learned vectors before every sequence
            prompt = _array(m.prompt)
            prompt_len = prompt.shape[0]
            batch = ctx.op("Gather", [ctx.op("Shape", [h], "prompt"), ctx.ints([0])], "prompt", axis=0)
            shape = ctx.op("Concat", [batch, ctx.ints(list(prompt.shape))], "prompt", axis=0)
            prefix = ctx.op("Expand", [ctx.const(prompt[None], _child(path, "prompt")), shape], "prompt")
            h = ctx.op("Concat", [prefix, h], "prompt", axis=1, rank=3)
            if lengths is not None:
                lengths = ctx.op("Add", [lengths, ctx.const(np.asarray(prompt_len, dtype=np.int64), "prompt.len")],
                                 "prompt", rank=1)
        outputs, state = ctx.call(m.rnn, _child(path, "rnn"), h, state, lengths=lengths)
        if m.task == "lm":
            if prompt_len:
                outputs = ctx.op("Slice", [outputs, ctx.ints([prompt_len]), ctx.ints([_INT64_MAX]), ctx.ints([1])],
                                 "prompt.drop", rank=3)
            features = outputs
        else:
            h_n = state[0] if isinstance(state, tuple) else state
            last = [ctx.op("Gather", [h_n, ctx.const(np.asarray(i, dtype=np.int64), "top")], "final_hidden", axis=0)
                    for i in ((-2, -1) if m.rnn.bidirectional else (-1,))]
            features = last[0] if len(last) == 1 else ctx.op("Concat", last, "final_hidden", axis=1)
            ctx.rank[features] = 2
        features = ctx.call(m.drop, _child(path, "drop"), features)
        return ctx.call(m.head, _child(path, "head"), features), state


_register_models()


# ============================================================================ export


def _flatten_io(value: Any) -> list:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _flatten_io(v)]
    return [value]


def _structure(value: Any, names: Any) -> Any:
    """``value``'s nesting with each tensor replaced by the next of ``names`` (an iterator)."""
    if isinstance(value, (tuple, list)):
        return tuple(_structure(v, names) for v in value)
    return None if value is None else next(names)


def _default_names(param: str, value: Any, count: int) -> list[str]:
    if param in ("hx", "state") or count > 1:
        base = {"hx": "h0", "state": "h0"}.get(param, param)
        return (["h0", "c0"] + [f"s{i}_0" for i in range(2, count)])[:count] if base == "h0" else \
            [f"{base}_{i}" for i in range(count)]
    return ["input" if param in ("input", "x") else param]


def _as_tensor(value: Any, param: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (list, np.ndarray)) and param == "lengths":
        from ..tensor import tensor

        return tensor(np.asarray(value, dtype=np.int64))
    raise OnnxExportError(f"mg.onnx.export: example input {param!r} must be a Tensor (or None), "
                          f"got {type(value).__name__}")


def _value_info(helper: Any, name: str, array: np.ndarray, dynamic: dict) -> Any:
    dims = [dynamic.get(axis, size) for axis, size in enumerate(array.shape)]
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), dims)


def _dynamic(dynamic_axes: Any, names: list[str]) -> dict:
    """``dynamic_axes`` as {value name: {axis: dim name}} (a list of axes gets torch's names)."""
    if dynamic_axes is None:
        return {}
    if not isinstance(dynamic_axes, dict):
        raise OnnxExportError(f"mg.onnx.export: dynamic_axes must be a dict, got {type(dynamic_axes).__name__}")
    out = {}
    for name, axes in dynamic_axes.items():
        if name not in names:
            raise OnnxExportError(f"mg.onnx.export: dynamic_axes names {name!r}, which is not an input or output "
                                  f"name; the names are {names}")
        if isinstance(axes, dict):
            out[name] = {int(a): str(n) for a, n in axes.items()}
        elif isinstance(axes, (list, tuple)):
            out[name] = {int(a): f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(axes)}
        else:
            raise OnnxExportError(f"mg.onnx.export: dynamic_axes[{name!r}] must be a dict or list of axes, got {axes!r}")
    return out


def export(model: Module, args: Any, f: str | os.PathLike | io.IOBase | None = None, *,
           input_names: list[str] | None = None, output_names: list[str] | None = None,
           dynamic_axes: dict | None = None, opset_version: int | None = None,
           recurrent_layout: str = "transpose", check: bool = True) -> Any:
    """Export ``model`` to ONNX, as ``torch.onnx.export``; returns the ``onnx.ModelProto``.

    Args:
        model: a Module the exporter knows (see :func:`supported_modules`); exported in
            eval mode (dropout is the identity), its training flag restored afterwards.
        args: the example inputs of ``model.forward``: a Tensor, or a tuple of them where
            None means "not given" (``(x, None, lengths)`` for a layer or SequenceModel);
            a trailing dict holds keyword arguments. ``hx`` for an LSTM is an ``(h0, c0)``
            pair. They fix the graph inputs and their shapes (except ``dynamic_axes``).
        f: a path or a writable binary file; None to only return the model.
        input_names / output_names: the graph's names, in the order of the flattened
            inputs / outputs (defaults: ``input``, ``h0``, ``c0``, ``lengths`` / ``output``,
            ``h_n``, ``c_n``).
        dynamic_axes: ``{name: {axis: "dim name"}}`` (or ``{name: [axes]}``), as torch's.
        opset_version: 14..21 (default 17).
        recurrent_layout: "transpose" (default: batch-first layers get Transposes around
            time-major operators, which every runtime runs) or "batch" (ONNX's ``layout=1``).
        check: run ``onnx.checker.check_model`` on the result.
    """
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset_version is None else opset_version
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxExportError(f"mg.onnx.export: opset_version must be an int in {MIN_OPSET}..{MAX_OPSET}, got {opset!r}")
    if recurrent_layout not in ("transpose", "batch"):
        raise OnnxExportError(f"mg.onnx.export: recurrent_layout must be 'transpose' or 'batch', got {recurrent_layout!r}")
    if not isinstance(model, Module):
        raise OnnxExportError(f"mg.onnx.export: model must be a Module, got {type(model).__name__}")
    args = args if isinstance(args, tuple) else (args,)
    kwargs: dict = {}
    if args and isinstance(args[-1], dict):
        args, kwargs = args[:-1], dict(args[-1])
    try:
        bound = inspect.signature(model.forward).bind(*args, **kwargs)
    except TypeError as exc:
        raise OnnxExportError(f"mg.onnx.export: the example inputs don't fit {type(model).__name__}.forward: {exc}") from None

    first = next(iter(model.parameters()), None)
    dtype = np.dtype(first.dtype) if first is not None else np.dtype(np.float32)
    graph = _Graph(opset, recurrent_layout)
    ctx = _Context(graph, dtype)

    # graph inputs: every tensor among the example inputs, flattened in argument order
    feeds: dict[str, np.ndarray] = {}
    call_args: dict[str, Any] = {}
    example: dict[str, Any] = {}
    for param, value in bound.arguments.items():
        if value is None:
            continue
        leaves = [_as_tensor(v, param) for v in _flatten_io(value)]
        names = _default_names(param, value, len(leaves))
        example[param] = (tuple(leaves) if isinstance(value, (tuple, list)) else leaves[0])
        call_args[param] = names if isinstance(value, (tuple, list)) else names[0]
        for name, leaf in zip(names, leaves):
            feeds[name] = leaf.detach().numpy()
    default_inputs = list(feeds)
    if input_names is not None:
        if len(input_names) != len(default_inputs):
            raise OnnxExportError(f"mg.onnx.export: input_names has {len(input_names)} names for "
                                  f"{len(default_inputs)} inputs ({', '.join(default_inputs)})")
        rename = dict(zip(default_inputs, input_names))
        call_args = {k: (tuple(rename[n] for n in v) if isinstance(v, list) else rename[v]) for k, v in call_args.items()}
        feeds = {rename[k]: v for k, v in feeds.items()}
    else:
        call_args = {k: tuple(v) if isinstance(v, list) else v for k, v in call_args.items()}
    for name in list(output_names or []) + ["output", "h_n", "c_n"]:
        graph.fresh(name)  # reserve: no inner value may take an output's name
    for name, array in feeds.items():
        graph.fresh(name)  # reserve: no node output may take an input's name
        graph.rank[name] = array.ndim

    was_training = model.training
    model.eval()
    try:
        with no_grad():
            reference = model(**example)
        produced = ctx.call(model, "", **call_args)
    finally:
        model.train(was_training)

    ref_leaves = [t for t in _flatten_io(reference) if t is not None]
    out_leaves = [n for n in _flatten_io(produced) if n is not None]
    if len(ref_leaves) != len(out_leaves):  # a converter's bug, not the user's
        raise OnnxExportError(f"mg.onnx.export: internal mismatch: forward returns {len(ref_leaves)} tensors, "
                              f"the graph {len(out_leaves)}")
    if output_names is None:
        output_names = ["output"] + (["h_n", "c_n"] if len(out_leaves) == 3 else ["h_n"] if len(out_leaves) == 2
                                     else [f"output_{i}" for i in range(1, len(out_leaves))])
    if len(output_names) != len(out_leaves):
        raise OnnxExportError(f"mg.onnx.export: output_names has {len(output_names)} names for {len(out_leaves)} outputs")
    dyn = _dynamic(dynamic_axes, list(feeds) + list(output_names))
    for produced_name, name in zip(out_leaves, output_names):
        graph.nodes.append(graph.helper.make_node("Identity", [produced_name], [name], name=graph.fresh(f"{name}/out")))
    inputs_info = [_value_info(graph.helper, n, a, dyn.get(n, {})) for n, a in feeds.items()]
    outputs_info = [_value_info(graph.helper, n, t.detach().numpy(), dyn.get(n, {}))
                    for n, t in zip(output_names, ref_leaves)]
    onnx_graph = graph.helper.make_graph(graph.nodes, type(model).__name__, inputs_info, outputs_info,
                                         graph.initializers)
    proto = graph.helper.make_model(onnx_graph, opset_imports=[graph.helper.make_opsetid("", opset)],
                                    producer_name="microgradnn",
                                    ir_version=onnx.helper.find_min_ir_version_for(
                                        [graph.helper.make_opsetid("", opset)]))
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if f is not None:
        data = proto.SerializeToString()
        if hasattr(f, "write"):
            f.write(data)
        else:
            _write_atomically(os.fspath(f), data)
    return proto


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
