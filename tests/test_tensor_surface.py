"""The Tensor surface PyTorch programs use (issue 13): ``.data`` written through in place,
``(values, indices)`` results, ``mg.Size`` / ``mg.device`` / ``mg.Generator``, copying and
pickling, and ``mg.save`` / ``mg.load`` with open files. Numerics of the ops themselves are
in ``tests/oracle/test_tensor_surface_torch.py`` and ``tests/test_gradcheck_ops.py``."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import microgradnn as mg

# ----------------------------------------------------------------------------- .data in place


def _pair(seed: int = 0, shape=(3, 4)):
    """The same parameter, with a gradient, in microgradnn and in torch."""
    rng = np.random.default_rng(seed)
    w, g = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    p = mg.nn.Parameter(mg.tensor(w))
    p.grad = mg.tensor(g)
    t = torch.nn.Parameter(torch.tensor(w))
    t.grad = torch.tensor(g)
    return p, t


# each: the same statement on microgradnn's p and torch's p (the module passed as L)
INPLACE_THROUGH_DATA = {
    "manual_sgd": lambda L, p: p.data.add_(p.grad, alpha=-0.1),  # word_language_model's update
    "sub_alpha": lambda L, p: p.data.sub_(p.grad, alpha=0.5),
    "add_scalar": lambda L, p: p.data.add_(2.0),
    "mul": lambda L, p: p.data.mul_(0.9),
    "mul_tensor": lambda L, p: p.data.mul_(p.grad),
    "div": lambda L, p: p.data.div_(p.grad.abs() + 1),
    "clamp": lambda L, p: p.data.clamp_(-0.5, 0.5),
    "clamp_min": lambda L, p: p.data.clamp_(min=0.1),
    "clamp_min_": lambda L, p: p.data.clamp_min_(0.0),
    "fill": lambda L, p: p.data.fill_(0.25),
    "zero": lambda L, p: p.data.zero_(),
    "copy": lambda L, p: p.data.copy_(p.grad * 2),
    "copy_broadcast": lambda L, p: p.data.copy_(L.ones(4)),
    "pow": lambda L, p: p.data.pow_(2),
    "addcmul": lambda L, p: p.data.addcmul_(p.grad, p.grad, value=-0.5),
    "addcdiv": lambda L, p: p.data.addcdiv_(p.grad, p.grad.abs() + 1, value=0.1),
    "lerp": lambda L, p: p.data.lerp_(p.grad, 0.3),
    "masked_fill": lambda L, p: p.data.masked_fill_(p.grad > 0, 0.0),
    "abs": lambda L, p: p.data.abs_(),
    "neg": lambda L, p: p.data.neg_(),
    "exp": lambda L, p: p.data.exp_(),
    "sign": lambda L, p: p.data.sign_(),
    "round": lambda L, p: p.data.mul_(10).round_(),
    "tanh": lambda L, p: p.data.tanh_(),
    "sigmoid": lambda L, p: p.data.sigmoid_(),
    "setitem": lambda L, p: p.data.__setitem__((0, slice(None)), 7.0),
    "chained": lambda L, p: p.data.mul_(2).add_(1).clamp_(max=2.0),
    "no_grad_param": lambda L, p: L.no_grad()(lambda: p.mul_(0.5))(),
    "grad_zero": lambda L, p: p.grad.data.zero_(),
    "grad_mul": lambda L, p: p.grad.data.mul_(0.5),
    "grad_clamp": lambda L, p: p.grad.clamp_(-0.1, 0.1),
}


@pytest.mark.parametrize("case", list(INPLACE_THROUGH_DATA))
def test_in_place_through_data_changes_the_parameter_as_in_torch(case):
    p, t = _pair(1)
    before = p.detach().numpy().copy()
    out_m = INPLACE_THROUGH_DATA[case](mg, p)
    out_t = INPLACE_THROUGH_DATA[case](torch, t)
    np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert p.requires_grad and p.is_leaf and p.dtype == mg.float32
    if not case.startswith("grad"):
        assert not np.array_equal(p.detach().numpy(), before), "the statement changed nothing"
    if isinstance(out_t, torch.Tensor):  # x.op_() returns x itself (for chaining)
        assert isinstance(out_m, mg.Tensor) and out_m.shape == tuple(out_t.shape)


def test_in_place_random_fills_write_through_data():
    p = mg.nn.Parameter(mg.zeros(200))
    p.data.normal_(1.0, 0.1)
    assert abs(float(p.detach().mean()) - 1.0) < 0.05 and float(p.detach().std()) > 0.05
    p.data.uniform_(-2.0, -1.0)
    values = p.detach().numpy()
    assert values.min() >= -2.0 and values.max() < -1.0 and values.std() > 0.1
    p.data.bernoulli_(0.5)
    assert set(np.unique(p.detach().numpy())) == {0.0, 1.0}
    q = mg.zeros(100, dtype=mg.int64)
    q.random_(3, 7)
    assert set(np.unique(q.numpy())) <= {3, 4, 5, 6} and len(np.unique(q.numpy())) > 1


def test_in_place_errors_as_torch():
    p, t = _pair(2)
    for L, x in ((mg, p), (torch, t)):
        with pytest.raises(RuntimeError, match="leaf|in place|in-place"):
            x.add_(1.0)  # a leaf that requires grad, grad mode on
        with pytest.raises(RuntimeError):
            L.zeros(3, dtype=L.int64).add_(L.ones(3) * 0.5)  # a float result into an int tensor
        with pytest.raises(RuntimeError):
            L.zeros(3).add_(L.ones(2, 3))  # the result would not fit


def test_the_manual_sgd_loop_of_word_language_model_trains():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 5)).astype(np.float32), rng.standard_normal((32, 1)).astype(np.float32)
    losses = {}
    for L in (mg, torch):
        L.manual_seed(0)
        model = L.nn.Linear(5, 1)
        with L.no_grad():
            model.weight.copy_(L.tensor(np.full((1, 5), 0.1, np.float32)))
            model.bias.fill_(0.0)
        history = []
        for _ in range(20):
            model.zero_grad()
            loss = ((model(L.tensor(x)) - L.tensor(y)) ** 2).mean()
            loss.backward()
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-0.1)
            history.append(loss.item())
        losses[L.__name__] = history
    np.testing.assert_allclose(losses["microgradnn"], losses["torch"], rtol=1e-5)
    assert losses["torch"][-1] < losses["torch"][0] * 0.9


# ----------------------------------------------------------------------------- (values, indices)


def test_max_of_data_unpacks_into_values_and_indices_as_torch():
    out = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    m = mg.tensor(out, requires_grad=True)
    values, predicted = mg.max(m.data, 1)  # the classifier tutorials' idiom
    t_values, t_predicted = torch.max(torch.tensor(out), 1)
    np.testing.assert_array_equal(predicted.numpy(), t_predicted.numpy())
    np.testing.assert_array_equal(values.numpy(), t_values.numpy())
    assert (predicted == mg.tensor(t_predicted.numpy())).sum().item() == 6
    assert mg.max(m, 1).indices.dtype == mg.int64 and mg.max(m, dim=0).values.requires_grad


def test_data_assignment_as_torch():
    p = mg.nn.Parameter(mg.randn(3))
    new = mg.zeros(2, dtype=mg.float64)
    p.data = new  # another shape and dtype: allowed, and p now shares new's storage (as torch)
    assert p.shape == (2,) and p.dtype == mg.float64 and p.requires_grad and isinstance(p.array, np.ndarray)
    new[0] = 5.0
    assert p.detach().numpy()[0] == 5.0
    t = torch.nn.Parameter(torch.randn(3))
    t.data = torch.zeros(2, dtype=torch.float64)
    assert tuple(t.shape) == p.shape and t.requires_grad
    with pytest.raises(TypeError, match="has to be a tensor"):
        p.data = [1.0, 2.0]


# ----------------------------------------------------------------------------- Size, device


def test_size_is_a_tuple_with_torch_methods():
    x = mg.zeros(2, 3, 4)
    t = torch.zeros(2, 3, 4)
    assert isinstance(x.shape, mg.Size) and isinstance(x.size(), mg.Size) and isinstance(x.shape, tuple)
    assert x.shape == (2, 3, 4) == tuple(t.shape) and x.shape.numel() == t.shape.numel() == 24
    assert isinstance(x.shape[1:], mg.Size) and x.shape[1:] == (3, 4) and x.shape[-1] == 4
    assert x.size(-2) == t.size(-2) == 3 and mg.zeros(()).size() == ()
    assert repr(x.shape) == "mg.Size([2, 3, 4])" and str(x.shape) == "(2, 3, 4)"
    assert pickle.loads(pickle.dumps(x.shape)) == x.shape
    assert mg.zeros(x.shape[:2]).shape == (2, 3)


def test_device_as_torch():
    for name in ("cpu", "cuda", "cuda:1"):
        assert str(mg.device(name)) == str(torch.device(name))
        assert mg.device(name).type == torch.device(name).type and mg.device(name).index == torch.device(name).index
        assert repr(mg.device(name)) == repr(torch.device(name))
    assert mg.device("cuda", 0) == mg.device("cuda:0") and mg.device("cpu") != mg.device("cuda")
    x = mg.zeros(2)
    assert x.device == mg.device("cpu") and x.device == "cpu" and x.device.type == "cpu"
    assert x.to(mg.device("cpu")) is x and mg.zeros(2, device=mg.device("cpu")).device == x.device
    assert x.new_ones(3, device=x.device).device.type == "cpu"
    with pytest.raises(RuntimeError, match="device type"):
        mg.device("tpu")
    assert len({mg.device("cpu"), mg.device("cpu")}) == 1


# ----------------------------------------------------------------------------- Generator


def test_generator_streams_are_reproducible_and_independent_of_the_global_one():
    g = mg.Generator().manual_seed(42)
    first = (mg.randn(5, generator=g), mg.rand(3, generator=g), mg.randint(0, 10, (4,), generator=g),
             mg.randperm(6, generator=g), mg.zeros(4).normal_(generator=g), mg.zeros(4).uniform_(-1, 1, generator=g))
    g.manual_seed(42)
    mg.manual_seed(0)
    mg.randn(10)  # the global generator moving changes nothing for g
    second = (mg.randn(5, generator=g), mg.rand(3, generator=g), mg.randint(0, 10, (4,), generator=g),
              mg.randperm(6, generator=g), mg.zeros(4).normal_(generator=g), mg.zeros(4).uniform_(-1, 1, generator=g))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert sorted(first[3].tolist()) == list(range(6)) and g.initial_seed() == 42
    assert not np.array_equal(mg.randn(5, generator=mg.Generator().manual_seed(1)).numpy(), first[0].numpy())


def test_generator_state_round_trips_through_a_checkpoint(tmp_path):
    g = mg.Generator().manual_seed(7)
    mg.randn(3, generator=g)
    state = g.get_state()
    assert isinstance(state, mg.Tensor) and state.dtype == mg.uint8  # as torch: a ByteTensor
    expected = mg.randn(4, generator=g)
    mg.save({"rng": state}, tmp_path / "rng.safetensors")
    h = mg.Generator().set_state(mg.load(tmp_path / "rng.safetensors")["rng"])
    np.testing.assert_array_equal(mg.randn(4, generator=h).numpy(), expected.numpy())
    assert h.initial_seed() == 7
    with pytest.raises(RuntimeError, match="not a state"):
        h.set_state(mg.tensor([1, 2, 3], dtype=mg.uint8))
    seeded = mg.Generator()
    assert isinstance(seeded.seed(), int) and seeded.device == "cpu"


# ----------------------------------------------------------------------------- copy, pickle, save/load


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        np.testing.assert_array_equal(np.asarray(sa[key].numpy() if hasattr(sa[key], "numpy") else sa[key]),
                                      np.asarray(sb[key].numpy() if hasattr(sb[key], "numpy") else sb[key]))


@pytest.mark.parametrize("make", [
    lambda: mg.nn.Linear(3, 2),
    lambda: mg.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
    lambda: mg.nn.GRU(2, 3),
    lambda: mg.nn.Sequential(mg.nn.Embedding(5, 3), mg.nn.LayerNorm(3), mg.nn.Linear(3, 5)),
], ids=["linear", "lstm", "gru", "sequential"])
def test_deepcopy_of_a_module_is_independent(make):
    model = make()
    twin = copy.deepcopy(model)
    _same_state(model, twin)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert p is not q and isinstance(q, mg.nn.Parameter) and q.requires_grad
        assert not np.shares_memory(p.array, q.array)
    with mg.no_grad():
        next(iter(twin.parameters())).add_(1.0)
    assert not np.array_equal(next(iter(twin.parameters())).detach().numpy(), next(iter(model.parameters())).detach().numpy())
    restored = pickle.loads(pickle.dumps(model))
    _same_state(model, restored)


def test_deepcopy_and_pickle_of_tensors():
    x = mg.randn(3, 2, requires_grad=True)
    (x * 3).sum().backward()
    y = copy.deepcopy(x)
    assert y.requires_grad and y.is_leaf and y.grad is not None
    np.testing.assert_array_equal(y.grad.numpy(), x.grad.numpy())
    np.testing.assert_array_equal(y.detach().numpy(), x.detach().numpy())
    assert not np.shares_memory(y.array, x.array)
    pair = copy.deepcopy([x, x])
    assert pair[0] is pair[1]  # the memo keeps one object one object
    z = pickle.loads(pickle.dumps(x))
    assert z.requires_grad and z.grad is None and z.dtype == x.dtype  # as torch: a pickled tensor has no grad
    np.testing.assert_array_equal(z.detach().numpy(), x.detach().numpy())
    n = pickle.loads(pickle.dumps(mg.tensor([1, 2], dtype=mg.int32)))
    assert n.dtype == mg.int32 and n.tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(x * 2)
    assert copy.copy(x) is not x


def test_save_and_load_with_open_files(tmp_path):
    model = mg.nn.LSTM(3, 4)
    checkpoint = {"model": model.state_dict(), "step": 3, "nested": [mg.ones(2), (mg.zeros(1), {"a": 1.5})]}
    buffer = io.BytesIO()
    mg.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = mg.load(buffer)
    assert loaded["step"] == 3 and loaded["nested"][1][1] == {"a": 1.5}
    np.testing.assert_array_equal(loaded["nested"][0].numpy(), [1.0, 1.0])
    twin = mg.nn.LSTM(3, 4)
    twin.load_state_dict(loaded["model"])
    _same_state(model, twin)
    with open(tmp_path / "ckpt", "wb") as f:
        mg.save(checkpoint, f)
    with open(tmp_path / "ckpt", "rb") as f:
        assert mg.load(f)["step"] == 3
    assert mg.load(str(tmp_path / "ckpt"))["step"] == 3  # the path form reads the same bytes
    torch_buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, torch_buffer)
    torch_buffer.seek(0)
    np.testing.assert_array_equal(mg.load(torch_buffer)["w"], [1.0, 1.0])


def test_saving_a_whole_module_is_refused_with_a_pointer_to_state_dict(tmp_path):
    for obj in (mg.nn.Linear(2, 2), {"model": mg.nn.GRU(2, 2)}):
        with pytest.raises(TypeError, match=r"state_dict\(\)") as info:
            mg.save(obj, tmp_path / "m")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "m").exists()


def test_permute_with_the_wrong_number_of_dims_raises_like_torch():
    for L in (mg, torch):
        with pytest.raises(RuntimeError, match="number of dim"):
            L.randn(2, 3).permute(0, 1, 2)
        with pytest.raises(IndexError, match="Dimension out of range"):
            L.randn(2, 3).permute(0, 2)
