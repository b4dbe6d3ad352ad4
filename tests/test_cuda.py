"""The CUDA backend.

Without a GPU (most machines, and CI) the GPU tests skip, and the summary prints why
(``pytest -ra``, on by default in pyproject.toml): "no CUDA device: install the cuda
extra ...". What can be checked without one still runs:

* ``.to("cuda")`` without CuPy, and with CuPy but no GPU (both simulated), raises
  ``mg.DeviceError`` naming the ``cuda`` extra; ``mg.cuda_is_available()`` is False;
* an op given tensors on two devices names both devices (a fake second backend stands
  in for the GPU);
* the CUDA backend finds its kernels by name, and names a missing one.

On a GPU machine (CuPy installed) the rest compares the cuda backend with the CPU:
every fused kernel variant in tests/kernel_cases.py, ops forward and backward, LSTM/GRU/RNN
layers forward and backward (with padding lengths), optimizer steps, and a tiny
training loop.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import microgradnn as mg
from kernel_cases import VARIANTS, make_args, run, tolerances
from microgradnn import backend as backend_module
from microgradnn.backend import Backend, DeviceError, kernels_cpu


def _cuda_status() -> tuple[bool, str]:
    try:
        backend_module.get_backend("cuda")
    except DeviceError as exc:
        return False, f"no CUDA device: {exc}"
    return True, ""


HAS_CUDA, NO_CUDA_REASON = _cuda_status()
needs_cuda = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)]


def cuda_test(fn):
    for mark in needs_cuda:
        fn = mark(fn)
    return fn


# ----------------------------------------------------------------- without a GPU


@pytest.fixture
def fresh_backends(monkeypatch):
    """Forget the cached backends, so get_backend("cuda") looks for CuPy again."""
    monkeypatch.setattr(backend_module, "_BACKENDS", {})


def test_to_cuda_without_cupy_names_the_cuda_extra(monkeypatch, fresh_backends):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    x = mg.randn(2, 3)
    with pytest.raises(DeviceError) as info:
        x.to("cuda")
    message = str(info.value)
    assert 'pip install -e ".[cuda]"' in message and "CuPy" in message, message
    assert not mg.cuda_is_available()
    with pytest.raises(DeviceError, match=r"\.\[cuda\]"):
        mg.zeros(3, device="cuda")
    with pytest.raises(DeviceError, match=r"\.\[cuda\]"):
        mg.nn.Linear(2, 2).to("cuda")


def _fake_cupy(device_count):
    runtime = types.SimpleNamespace(getDeviceCount=device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_to_cuda_with_cupy_but_no_gpu_names_the_cuda_extra(monkeypatch, fresh_backends):
    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(no_driver))
    with pytest.raises(DeviceError) as info:
        mg.randn(2).to("cuda")
    assert "no CUDA-capable device" in str(info.value) and ".[cuda]" in str(info.value)

    monkeypatch.setattr(backend_module, "_BACKENDS", {})
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(DeviceError, match=r"no GPU.*\.\[cuda\]"):
        mg.randn(2).cuda()
    assert not mg.cuda_is_available()


def test_unknown_device_is_a_device_error():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        mg.randn(2).to("tpu")


def _fake_device_tensor(data):
    """A tensor on a second backend named "fake" (numpy underneath): mixing it with a CPU
    tensor is what mixing a CPU and a GPU tensor looks like to an op."""
    fake = Backend("fake", np, kernels_cpu.__dict__.__getitem__)
    return mg.Tensor(np.asarray(data, dtype=np.float32), fake)


def test_mixing_devices_names_both_devices():
    cpu = mg.randn(3)
    other = _fake_device_tensor([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError) as info:
        cpu + other
    message = str(info.value)
    assert "same device" in message and "cpu" in message and "fake" in message, message
    assert "input 0" in message and "input 1" in message, message
    with pytest.raises(RuntimeError, match="input 0 is on fake and input 1 is on cpu"):
        other * cpu


def test_cuda_backend_finds_kernels_by_name():
    from microgradnn.backend import cuda, kernels_cuda

    for name in kernels_cuda.__all__:
        assert cuda._load_cuda_kernel(name) is getattr(kernels_cuda, name)
    with pytest.raises(KeyError, match="no kernel 'nope'"):
        cuda._load_cuda_kernel("nope")
    with pytest.raises(KeyError):  # module attributes are not kernels
        cuda._load_cuda_kernel("functools")


# ----------------------------------------------------------------- on a GPU


def _to_gpu(array):
    import cupy

    return cupy.array(array, copy=True)


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


@cuda_test
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,variant", VARIANTS, ids=[f"{n}-{i}" for n, i in VARIANTS])
def test_cuda_kernel_matches_cpu(name, variant, dtype):
    from microgradnn.backend import kernels_cuda

    for seed in range(6):
        args = make_args(name, variant, dtype, seed)
        expected = run(getattr(kernels_cpu, name), args)
        got = run(getattr(kernels_cuda, name), args, to_device=_to_gpu)
        assert len(got) == len(expected)
        for k, (g, e) in enumerate(zip(got, expected)):
            g = _host(g)
            assert g.shape == e.shape and g.dtype == e.dtype, (name, k, g.shape, e.shape, g.dtype, e.dtype)
            np.testing.assert_allclose(g, e, err_msg=f"{name} variant {variant} seed {seed} output {k}",
                                       **tolerances(dtype))


@cuda_test
def test_cuda_kernels_fall_back_to_the_reference_for_other_dtypes():
    import cupy

    from microgradnn.backend import kernels_cuda

    a = np.linspace(-3, 3, 7).astype(np.float16)
    np.testing.assert_allclose(_host(kernels_cuda.sigmoid_forward(cupy.asarray(a))),
                               1 / (1 + np.exp(-a.astype(np.float64))), rtol=2e-3)
    grad = np.ones(7, np.float64)  # mixed dtypes: the reference's numpy promotion
    out = kernels_cuda.relu_backward(cupy.asarray(a), cupy.asarray(grad))
    np.testing.assert_array_equal(_host(out), (a > 0).astype(np.float64))


def _both(fn, *arrays, dtype=np.float64):
    """Run ``fn`` on CPU and CUDA tensors made from ``arrays``; compare outputs and grads."""
    results = {}
    for device in ("cpu", "cuda"):
        leaves = [mg.tensor(a.astype(dtype) if a.dtype.kind == "f" else a, device=device,
                            requires_grad=a.dtype.kind == "f") for a in arrays]
        out = fn(*leaves)
        assert out.device == device
        out.backward(mg.ones_like(out) * 0.5 if out.ndim else None)
        results[device] = [_host(out.array)] + [_host(t.grad.array) for t in leaves if t.requires_grad]
    tol = tolerances(dtype) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for c, g in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(g, c, **tol)


OPS = {
    "add_broadcast": (lambda a, b: a + b, [(3, 1, 4), (5, 4)]),
    "sub_mul_div": (lambda a, b: (a - b) * a / (b.abs() + 1), [(4, 5), (5,)]),
    "pow_exp_log_sqrt": (lambda a, b: (a.abs() + 0.5).log() + (b.abs() + 0.1).sqrt() + (a * 0.3).exp() ** 2,
                         [(3, 4), (3, 4)]),
    "activations": (lambda a, b: a.tanh() + a.sigmoid() * b.relu() + a.gelu() + b.gelu(approximate="tanh"),
                    [(6, 7), (6, 7)]),
    "clamp_max_min": (lambda a, b: a.clamp(-0.5, 0.5) + mg.maximum(a, b) - mg.minimum(a, b), [(4, 4), (4, 4)]),
    "matmul_batched": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    "reductions": (lambda a, b: a.sum(dim=1, keepdim=True) * b.mean(0) + a.max(dim=1).values.unsqueeze(1)
                   + a.var(dim=1, keepdim=True), [(3, 5), (5,)]),
    "softmax_family": (lambda a, b: a.softmax(dim=-1) * b + a.log_softmax(dim=0) + a.logsumexp(dim=1, keepdim=True),
                       [(4, 6), (6,)]),
    "shape_ops": (lambda a, b: mg.cat([a.transpose(0, 1), b.reshape(4, 3)], dim=0).permute(1, 0).unsqueeze(0)
                  .expand(2, 3, 8), [(3, 4), (12,)]),
    "getitem_scatter": (lambda a, b: a[np.array([0, 2, 0, 1])] * b[1:3].sum() + a[:, 1:].sum(), [(3, 4), (5,)]),
    "stack_where_split": (lambda a, b: mg.where(a > b, a, b * 2) + mg.stack(a.split(1, dim=0), dim=0).squeeze(1),
                          [(2, 3), (2, 3)]),
}


@cuda_test
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_op_on_cuda_matches_cpu(op, dtype):
    fn, shapes = OPS[op]
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(0.2, 2.0, s) * rng.choice([-1.0, 1.0], s) for s in shapes]
    _both(lambda *t: fn(*t).sum() if op == "shape_ops" else fn(*t), *arrays, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True)])
def test_cross_entropy_and_embedding_on_cuda_match_cpu(smoothing, weighted):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((7, 11))
    target = rng.integers(0, 11, 7)
    target[2] = -100
    weight = rng.uniform(0.5, 2.0, 11) if weighted else None
    tokens = rng.integers(0, 9, (4, 5))

    def loss(x, t):
        w = None if weight is None else mg.tensor(weight, device=x.device)
        return mg.cross_entropy(x, t, weight=w, label_smoothing=smoothing)

    _both(loss, logits, target)
    results = {}
    for device in ("cpu", "cuda"):
        mg.manual_seed(0)
        emb = mg.nn.Embedding(9, 3, padding_idx=0, dtype=mg.float64).to(device)
        out = emb(mg.tensor(tokens, device=device))
        (out * out).sum().backward()
        results[device] = (_host(out.array), _host(emb.weight.grad.array))
    for c, g in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)
    assert not results["cuda"][1][0].any()  # the padding row gets no gradient


def _layer(kind: str, device: str, state: dict | None = None):
    mg.manual_seed(0)
    cls = {"lstm": mg.nn.LSTM, "gru": mg.nn.GRU, "rnn": mg.nn.RNN}[kind]
    layer = cls(5, 6, num_layers=2, batch_first=True, bidirectional=True)
    if state is not None:
        layer.load_state_dict(state)
    return layer.to(device)


@cuda_test
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_recurrent_layer_forward_backward_on_cuda_matches_cpu(kind):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    lengths = [7, 4, 2]
    results = {}
    cpu_layer = _layer(kind, "cpu")
    for device, layer in (("cpu", cpu_layer), ("cuda", _layer(kind, "cuda", cpu_layer.state_dict()))):
        inp = mg.tensor(x, device=device, requires_grad=True)
        out, state = layer(inp, lengths=lengths)
        h = state[0] if kind == "lstm" else state
        (out.sum() + (h * h).sum()).backward()
        grads = [_host(p.grad.array) for _, p in sorted(layer.named_parameters())]
        results[device] = [_host(out.array), _host(h.array), _host(inp.grad.array)] + grads
    for k, (c, g) in enumerate(zip(results["cpu"], results["cuda"])):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-5, err_msg=f"{kind} output {k}")


OPTIMIZERS = {
    "sgd": lambda p: mg.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda p: mg.optim.Adam(p, lr=0.01, amsgrad=True),
    "adamw": lambda p: mg.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: mg.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda p: mg.optim.Adagrad(p, lr=0.1, lr_decay=0.01),
}


@cuda_test
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_on_cuda_match_cpu(name):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    results = {}
    for device in ("cpu", "cuda"):
        mg.manual_seed(0)
        model = mg.nn.Sequential(mg.nn.Linear(4, 8), mg.nn.Tanh(), mg.nn.Linear(8, 3)).to(device)
        opt = OPTIMIZERS[name](model.parameters())
        xs, ys = mg.tensor(x, device=device), mg.tensor(y, device=device)
        for _ in range(4):
            opt.zero_grad()
            loss = mg.cross_entropy(model(xs), ys)
            loss.backward()
            opt.step()
        results[device] = [_host(p.array) for p in model.parameters()] + [loss.item()]
    for c, g in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-5)


@cuda_test
def test_gradient_moves_back_across_devices():
    x = mg.randn(3, 4, requires_grad=True)
    y = (x.to("cuda").tanh() * 2).sum()
    y.backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2 * (1 - np.tanh(x.detach().numpy()) ** 2), rtol=1e-5)
    with pytest.raises(RuntimeError, match="input 0 is on cuda and input 1 is on cpu"):
        x.to("cuda") + x


@cuda_test
@pytest.mark.parametrize("cell,task", [("lstm", "lm"), ("gru", "classification")])
def test_sequence_model_training_on_cuda_matches_cpu(cell, task):
    """Embedding -> recurrent layer -> head -> cross-entropy -> Adam, end to end."""
    from microgradnn.models import SequenceModel

    rng = np.random.default_rng(4)
    tokens = rng.integers(1, 13, (4, 9))
    lengths = [9, 7, 5, 2]
    target = rng.integers(0, 13, (4, 9)) if task == "lm" else rng.integers(0, 3, 4)
    losses = {}
    for device in ("cpu", "cuda"):
        mg.manual_seed(0)
        model = SequenceModel(13 if task == "lm" else 3, vocab_size=13, embedding_dim=8, padding_idx=0, cell=cell,
                              hidden_size=10, num_layers=2, bidirectional=task != "lm", task=task).to(device)
        opt = mg.optim.Adam(model.parameters(), lr=0.01)
        x, y = mg.tensor(tokens, device=device), mg.tensor(target, device=device)
        history = []
        for _ in range(3):
            opt.zero_grad()
            out, _ = model(x, lengths=None if task == "lm" else lengths)
            loss = mg.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            loss.backward()
            opt.step()
            history.append(loss.item())
        losses[device] = history
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)
    assert losses["cpu"][-1] < losses["cpu"][0]
